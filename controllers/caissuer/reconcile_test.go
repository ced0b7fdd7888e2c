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

package caissuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/status"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

// Reconcile on a real API server (management and member at once): the member's CSR becomes a
// CertificateRequest the MeshCluster controls (CAIssued=False/CAPending); once the issuer has
// signed it as asked, the intermediate is delivered into the member (CAIssued=True).
func TestReconcileIssuesTheMembersIntermediate(t *testing.T) {
	scheme := fleet.NewScheme(t, clientgoscheme.AddToScheme, clusterv1.AddToScheme, meshv1alpha1.AddToScheme, cmapi.AddToScheme)
	_, c := fleet.TestAPIServer(t, scheme, true)
	ctx := context.Background()
	now := time.Now()
	td := spiffeid.RequireTrustDomainFromString("east.default.demo")

	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"mesh": "true"}
	mi.Spec.Trust.CA = &meshv1alpha1.CASource{CertManager: &meshv1alpha1.CertManagerCA{IssuerRef: meshv1alpha1.IssuerReference{Name: "root"}}}
	if err := c.Create(ctx, mi); err != nil {
		t.Fatal(err)
	}
	mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Namespace: "default", Labels: map[string]string{meshv1alpha1.InstallationLabel: "demo"}},
		Spec: meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "east"}, Installation: "demo", TrustDomain: td.Name()}}
	if err := controllerutil.SetControllerReference(mi, mc, scheme); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	mc.Status.KubeSystemUID = fleet.KubeSystemUID(t, c)
	meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: meshv1alpha1.ConnectedCondition, Status: metav1.ConditionTrue, Reason: "Connected"})
	if err := c.Status().Update(ctx, mc); err != nil {
		t.Fatal(err)
	}
	// The member's agent has published its CSR.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := trust.IntermediateCSR(td, key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: install.Namespace}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: wire.CARequestConfigMap},
			Data: map[string]string{wire.CARequestKeyCSR: string(csr), wire.BundleKeyTrustDomain: td.Name()}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	r := &Reconciler{Client: c, APIReader: c, ClusterCache: fleet.MemberCache{Clients: map[client.ObjectKey]client.Client{{Namespace: "default", Name: "east"}: c}}, Recorder: events.NewFakeRecorder(20),
		Clock: clocktesting.NewFakePassiveClock(now), written: &status.Writer{Owner: "fleetmesh-caissuer"}}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(mc)}
	caIssued := func() string {
		t.Helper()
		got := &meshv1alpha1.MeshCluster{}
		if err := c.Get(ctx, req.NamespacedName, got); err != nil {
			t.Fatal(err)
		}
		return fleet.ConditionOf(got.Status.Conditions, meshv1alpha1.CAIssuedCondition)
	}

	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	cr := CertificateRequest(mi, mc, csr, wire.CSRDigest(csr))
	if err := c.Get(ctx, client.ObjectKeyFromObject(cr), cr); err != nil {
		t.Fatalf("the CertificateRequest: %v", err)
	}
	if !metav1.IsControlledBy(cr, mc) || !cr.Spec.IsCA || cr.Spec.IssuerRef.Kind != "ClusterIssuer" {
		t.Errorf("CertificateRequest %+v", cr.ObjectMeta)
	}
	if got := caIssued(); got != "False/"+meshv1alpha1.ReasonCAPending {
		t.Errorf("CAIssued = %s, want pending", got)
	}

	// cert-manager's CA issuer signs it as asked.
	root := newSigner(t, now)
	cr.Status.Conditions = []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: "Issued"}}
	cr.Status.Certificate, cr.Status.CA = root.sign(t, csr, td, true, now), root.pem
	if err := c.Status().Update(ctx, cr); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	issued := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.CAIssuedConfigMap}, issued); err != nil {
		t.Fatalf("the delivered intermediate: %v", err)
	}
	if issued.Data[wire.CAKeyRequest] != wire.CSRDigest(csr) || issued.Data[wire.CAIssuedKeyChain] != string(cr.Status.Certificate) {
		t.Errorf("delivered %v", issued.Data)
	}
	if got := caIssued(); got != "True/"+meshv1alpha1.ReasonCAIssued {
		t.Errorf("CAIssued = %s, want issued", got)
	}
}
