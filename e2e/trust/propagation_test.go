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
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// holds tells whether m's agent has loaded a federated set carrying td's bundle at seq.
func holds(m *fleet.Cluster, bundleOf *fleet.Cluster, seq uint64) bool {
	fed, status := &corev1.ConfigMap{}, &corev1.ConfigMap{}
	if m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.FederatedConfigMap}, fed) != nil ||
		m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.StatusConfigMap}, status) != nil {
		return false
	}
	doc := fed.Data[wire.FederatedKeyBundleMap]
	if status.Data[wire.StatusKeyFederated] != wire.Digest([]byte(doc)) {
		return false // written, not loaded yet
	}
	set, err := trust.ParseBundleMap([]byte(doc))
	if err != nil {
		return false
	}
	b, ok := set.Get(trustDomain(bundleOf))
	if !ok {
		return false
	}
	got, _ := b.SequenceNumber()
	return got == seq
}

var _ = Describe("bundle propagation", func() {
	// Issue 4's target; `make bench` runs it (FLEETMESH_BENCH=1). It publishes A's bundle anew
	// (a higher sequence, as a rotation does) and measures until every other member's agent has
	// loaded it.
	It("benchmark: a member's new bundle reaches every other member", func() {
		if os.Getenv("FLEETMESH_BENCH") == "" {
			Skip("set FLEETMESH_BENCH=1 (make bench) to run the trust benchmark")
		}
		key := client.ObjectKey{Namespace: install.Namespace, Name: wire.BundleConfigMap}
		original := &corev1.ConfigMap{}
		Expect(a.Client.Get(ctx, key, original)).To(Succeed())
		own, err := trust.ParseBundle(trustDomain(a), []byte(original.Data[wire.BundleKeyDocument]))
		Expect(err).NotTo(HaveOccurred())
		base, _ := own.SequenceNumber()
		publish := func(seq uint64) {
			b := own.Clone()
			b.SetSequenceNumber(seq)
			doc, err := trust.MarshalBundle(b)
			Expect(err).NotTo(HaveOccurred())
			cm := &corev1.ConfigMap{}
			Expect(a.Client.Get(ctx, key, cm)).To(Succeed())
			cm.Data = maps.Clone(cm.Data)
			cm.Data[wire.BundleKeyDocument] = string(doc)
			Expect(a.Client.Update(ctx, cm)).To(Succeed())
		}
		// Put the agent's own bundle back, and wait until every member holds it again, so no
		// later spec sees the benchmark's sequence numbers.
		DeferCleanup(func() {
			publish(base)
			Eventually(func() bool { return holds(b, a, base) && holds(c, a, base) }).Should(BeTrue())
		})

		var out []time.Duration
		for i := range 20 {
			seq := base + 1000 + uint64(i)
			start := time.Now()
			publish(seq)
			Eventually(func() bool {
				if holds(b, a, seq) && holds(c, a, seq) {
					return true
				}
				// The agent re-publishes its bundle every 30 s: if it just did, publish again.
				cm := &corev1.ConfigMap{}
				if a.Client.Get(ctx, key, cm) == nil {
					if cur, err := trust.ParseBundle(trustDomain(a), []byte(cm.Data[wire.BundleKeyDocument])); err == nil {
						if s, _ := cur.SequenceNumber(); s != seq {
							start = time.Now()
							publish(seq)
						}
					}
				}
				return false
			}).WithTimeout(30*time.Second).WithPolling(5*time.Millisecond).Should(BeTrue(), "change %d never reached B and C", i)
			out = append(out, time.Since(start))
		}
		slices.Sort(out)
		fmt.Printf("\ntrust: new bundle in %s -> loaded by the agents of %s and %s: p50 %s p99 %s over %d changes (target <= 2 s)\n",
			a.Name, b.Name, c.Name, out[len(out)/2], out[(len(out)-1)*99/100], len(out))
	})
})
