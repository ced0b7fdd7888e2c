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

package trust_test

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/identityclient"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// renewing is a workload running the identity client: it renews its SVID at half-life, and
// reloads it (with the bundle map) after every fetch, as gRPC's pemfile provider would.
type renewing struct {
	mu sync.Mutex
	w  *workload
}

func (r *renewing) current() *workload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.w
}

func runWorkload(m *fleet.Cluster, sa string) *renewing {
	dir := GinkgoT().TempDir()
	tok := token(m, sa, identityv1.Audience)
	Expect(f.FetchSVID(ctx, m, tok, dir)).To(Succeed())
	r := &renewing{}
	reload := func() {
		w := load(dir)
		r.mu.Lock()
		r.w = w
		r.mu.Unlock()
	}
	reload()
	addr, err := fleet.AgentAddress(ctx, m, install.IdentityPort)
	Expect(err).NotTo(HaveOccurred())
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	DeferCleanup(func() { cancel(); <-done })
	go func() {
		defer GinkgoRecover()
		defer close(done)
		// After the first fetch the agent is authenticated with the bundle map the last fetch
		// wrote (TrustFile empty): it carries the member's new root as soon as it is published.
		_ = identityclient.Run(rctx, identityclient.Options{
			Address: addr, TrustDomain: trustDomain(m), TokenFile: filepath.Join(dir, "token"), Dir: dir,
			Timeout: 10 * time.Second, RetryMin: 200 * time.Millisecond, RetryMax: 2 * time.Second,
			OnFetch: func(_ *identityclient.Result, err error) {
				if err == nil {
					reload()
				} else {
					GinkgoWriter.Printf("%s/%s: fetch failed: %v\n", m.Name, sa, err)
				}
			},
		})
	}()
	return r
}

// caRotation is the phase of m's CA rotation and its bundle's fingerprint and root count.
func caRotation(m *fleet.Cluster) (phase, fingerprint string, roots int) {
	status, bundle := &corev1.ConfigMap{}, &corev1.ConfigMap{}
	Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.StatusConfigMap}, status)).To(Succeed())
	Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.BundleConfigMap}, bundle)).To(Succeed())
	b, err := trust.ParseBundle(trustDomain(m), []byte(bundle.Data[wire.BundleKeyDocument]))
	Expect(err).NotTo(HaveOccurred())
	return status.Data[wire.StatusKeyCARotation], trust.Fingerprint(b), len(b.X509Authorities())
}

var _ = Describe("CA rotation", func() {
	It("rotates A's and B's CAs while a client in A and a server in B keep handshaking, with zero failures", func() {
		clientW, serverW := runWorkload(a, "client"), runWorkload(b, "server")
		_, fpA, _ := caRotation(a)
		_, fpB, _ := caRotation(b)

		var (
			mu                 sync.Mutex
			handshakes, failed int
			firstErr           error
		)
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(stopped)
			// At most 200 handshakes a second: each is a new TCP connection, and the ports of
			// closed ones wait a minute before reuse.
			pace := time.NewTicker(5 * time.Millisecond)
			defer pace.Stop()
			for {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				_, _, err := handshake(b, serverW.current(), clientW.current())
				mu.Lock()
				handshakes++
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					GinkgoWriter.Printf("handshake failed: %v\n", err)
				}
				mu.Unlock()
			}
		}()
		started := time.Now()

		request := time.Now().Format(time.RFC3339Nano)
		for _, m := range []*fleet.Cluster{a, b} {
			mc := meshCluster(m)
			patch := client.MergeFrom(mc.DeepCopy())
			if mc.Annotations == nil {
				mc.Annotations = map[string]string{}
			}
			mc.Annotations[meshv1alpha1.RotateCAAnnotation] = request
			Expect(f.Management.Client.Patch(ctx, mc, patch)).To(Succeed())
		}

		// The new roots are published beside the old ones first...
		for _, m := range []*fleet.Cluster{a, b} {
			Eventually(func() int { _, _, n := caRotation(m); return n }).Should(Equal(2), "%s never published its next root", m.Name)
		}
		// ... and, after the switch and the last old SVID's expiry, stand alone.
		for m, before := range map[*fleet.Cluster]string{a: fpA, b: fpB} {
			Eventually(func(g Gomega) {
				phase, fp, n := caRotation(m)
				g.Expect(phase).To(Equal(string(trust.PhaseStable)))
				g.Expect(n).To(Equal(1))
				g.Expect(fp).NotTo(Equal(before))
			}).WithTimeout(5*time.Minute).WithPolling(time.Second).Should(Succeed(), "%s's rotation never completed", m.Name)
		}
		// The workloads now hold SVIDs of the new CAs: keep handshaking until both renewed.
		Eventually(func(g Gomega) {
			for m, w := range map[*fleet.Cluster]*renewing{a: clientW, b: serverW} {
				own := mustGet(w.current().bundles, trustDomain(m))
				g.Expect(own.X509Authorities()).To(HaveLen(1))
				_, _, err := x509svid.Verify(w.current().svid.Certificates, own)
				g.Expect(err).NotTo(HaveOccurred(), "%s's SVID is not from its new CA yet", m.Name)
			}
		}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
		close(stop)
		<-stopped

		mu.Lock()
		defer mu.Unlock()
		GinkgoWriter.Printf("rotation under load: %d handshakes A->B over %s, %d failed\n", handshakes, time.Since(started).Round(time.Second), failed)
		AddReportEntry("rotation under load", map[string]int{"handshakes": handshakes, "failed": failed})
		Expect(handshakes).To(BeNumerically(">", 100))
		Expect(failed).To(BeZero(), "first failure: %v", firstErr)
	})
})
