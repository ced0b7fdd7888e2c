/*
Copyright 2026 The fleetmesh Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package agent

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// TestALostCASecret, on a real API server: a running agent writes a deleted CA Secret again from
// memory (same CA); one lost while no agent ran gives a new CA whose bundle keeps the previous
// roots for the overlap, so that an SVID the lost CA signed keeps verifying, and drops them after;
// a replica that kept the lost CA in memory adopts the new one (one CA per member).
func TestALostCASecret(t *testing.T) {
	cfg, _ := fleet.TestAPIServer(t, runtime.NewScheme(), false)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns, svidTTL, caTTL = "default", time.Minute, 24 * time.Hour
	overlap := svidTTL + rotationMargin
	td := spiffeid.RequireTrustDomainFromString("member-1.fleet.mesh")
	now := time.Now()

	first, err := loadOrCreateCA(ctx, cs, ns, td, caTTL, overlap, false, now)
	if err != nil {
		t.Fatal(err)
	}
	if first.state.Lost != nil {
		t.Fatalf("the member's first CA keeps lost roots: %+v", first.state.Lost)
	}
	if err := publishBundle(ctx, cs, ns, first.bundle()); err != nil {
		t.Fatal(err)
	}
	issuer, err := trust.NewIssuer(first.signing(), trust.IssuerOptions{SVIDTTL: svidTTL})
	if err != nil {
		t.Fatal(err)
	}
	old, err := issuer.NewSVID(trust.Workload{Namespace: "demo", ServiceAccount: "client"})
	if err != nil {
		t.Fatal(err)
	}

	// Deleted while the agent runs: restored, same CA, the restore recorded.
	a := &Agent{client: cs, opts: Options{Namespace: ns}}
	if a.restoreCASecret(ctx, klog.Background(), first) != nil {
		t.Fatal("restored a Secret that is there")
	}
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, CASecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	restored := a.restoreCASecret(ctx, klog.Background(), first)
	if restored == nil || restored.state.RestoredAt.IsZero() || restored.rotationStatus()[wire.StatusKeyCASecretRestoredAt] == "" {
		t.Fatalf("a deleted Secret was not restored: %+v", restored)
	}
	reloaded, err := loadOrCreateCA(ctx, cs, ns, td, caTTL, overlap, false, now)
	if err != nil {
		t.Fatal(err)
	}
	if !reloaded.signing().Certificate().Equal(first.signing().Certificate()) || reloaded.state.Lost != nil {
		t.Fatal("the restored Secret does not hold the same CA")
	}

	// A replica that still signs with the CA it holds adopts what another wrote into the Secret.
	if a.checkCASecret(ctx, klog.Background(), restored, now) != nil {
		t.Fatal("the Secret this replica wrote last was adopted again")
	}

	// Lost while no agent ran: a new CA, the previous roots published beside it for the overlap.
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, CASecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Minute)
	replaced, err := loadOrCreateCA(ctx, cs, ns, td, caTTL, overlap, false, later)
	if err != nil {
		t.Fatal(err)
	}
	if replaced.signing().Certificate().Equal(first.signing().Certificate()) {
		t.Fatal("no new CA after the loss")
	}
	b := replaced.bundle()
	if len(b.X509Authorities()) != 2 || !b.HasX509Authority(first.signing().Certificate()) {
		t.Fatalf("the new bundle has %d roots, want the new and the lost one", len(b.X509Authorities()))
	}
	if seqOld, _ := first.bundle().SequenceNumber(); replaced.state.Rotation.Sequence <= seqOld {
		t.Errorf("sequence %d after the loss, want above %d", replaced.state.Rotation.Sequence, seqOld)
	}
	if _, _, err := x509svid.Verify(old.Certificates, b); err != nil {
		t.Errorf("an SVID of the lost CA no longer verifies against the new bundle: %v", err)
	}
	// The other replica, which kept the lost CA in memory, signs with the new one at its next
	// check: one CA for the member, not two.
	adopted := a.checkCASecret(ctx, klog.Background(), restored, later)
	if adopted == nil || !adopted.signing().Certificate().Equal(replaced.signing().Certificate()) {
		t.Fatalf("the replica holding the lost CA did not adopt the Secret's: %+v", adopted)
	}
	st := replaced.rotationStatus()
	if st[wire.StatusKeyCALostSince] == "" || st[wire.StatusKeyCALostUntil] != later.Add(overlap).UTC().Format(time.RFC3339) {
		t.Errorf("status after the loss: %v", st)
	}
	// What was saved is loaded back with the lost roots.
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, CASecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if back, err := parseCAStore(td, &corev1.Secret{Data: s.Data}, later); err != nil || len(back.bundle().X509Authorities()) != 2 {
		t.Fatalf("loaded back: %v", err)
	}
	// Until the overlap ends nothing changes; then the lost roots go.
	if next, err := nextRotation(replaced, rotationInput{held: replaced.state.Rotation.Sequence}, svidTTL, caTTL, false, later.Add(overlap)); err != nil || next != nil {
		t.Fatalf("changed before the overlap ended: %+v %v", next, err)
	}
	next, err := nextRotation(replaced, rotationInput{held: replaced.state.Rotation.Sequence}, svidTTL, caTTL, false, later.Add(overlap+time.Second))
	if err != nil || next == nil || next.state.Lost != nil || len(next.bundle().X509Authorities()) != 1 || next.state.Rotation.Sequence != replaced.state.Rotation.Sequence+1 {
		t.Fatalf("after the overlap: %+v %v, want the lost roots dropped at the next sequence", next, err)
	}
}
