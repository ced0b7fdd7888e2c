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

package services_test

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/install"
)

// queryAtRate sends n A queries for name at rate per second from one UDP socket (open loop: a
// slow answer does not slow the sender) and returns each answer's latency and the unanswered.
func queryAtRate(addr, name string, rate, n int) (lat []time.Duration, lost int) {
	conn, err := net.Dial("udp", addr)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close() }()
	sent := make([]time.Time, n)
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for got := 0; got < n; got++ {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:k]) != nil || int(m.Id) >= n || len(m.Answer) != 1 {
				continue
			}
			mu.Lock()
			lat = append(lat, time.Since(sent[m.Id]))
			mu.Unlock()
		}
	}()
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d) // pacing the load generator, not synchronisation
		}
		q := new(dns.Msg).SetQuestion(name, dns.TypeA)
		q.Id = uint16(i)
		wire, err := q.Pack()
		Expect(err).NotTo(HaveOccurred())
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		_, _ = conn.Write(wire)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return lat, n - len(lat)
}

// The figures of the clusterset DNS targets; `make bench` runs it (FLEETMESH_BENCH=1). It
// prints what it measures and asserts only correctness.
func dnsBench() {
	It("benchmark: DNS answers at 5,000 queries/s from one client, and a ServiceImport change -> DNS", func() {
		if os.Getenv("FLEETMESH_BENCH") == "" {
			Skip("set FLEETMESH_BENCH=1 (make bench) to run the DNS benchmark")
		}
		addr, err := fleet.AgentAddress(ctx, a, install.DNSPort)
		Expect(err).NotTo(HaveOccurred())
		// An import as service federation writes it, straight into member A.
		si := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Name: "dnsbench", Namespace: ns},
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, IPs: []string{"240.245.255.1"},
				Ports: []mcsv1beta1.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}}}}
		Expect(a.Client.Create(ctx, si)).To(Succeed())
		name := "dnsbench.demo.svc.clusterset.local."
		Eventually(resolve(a, name, dns.TypeA)).Should(Equal("NOERROR 240.245.255.1"))

		const rate, n = 5000, 25000
		lat, lost := queryAtRate(addr, name, rate, n)
		fmt.Printf("\nservices: clusterset DNS at %d queries/s from one client, %d queries: p50 %s p99 %s, %d unanswered (target p99 <= 2 ms)\n",
			rate, n, fleet.Percentile(lat, 50), fleet.Percentile(lat, 99), lost)

		var changes []time.Duration
		for i := 2; i < 52; i++ {
			ip := fmt.Sprintf("240.245.255.%d", i)
			Expect(a.Client.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			si.Spec.IPs = []string{ip}
			Expect(a.Client.Update(ctx, si)).To(Succeed())
			changed := time.Now()
			Eventually(resolveAt(addr, name, dns.TypeA)).WithPolling(time.Millisecond).Should(Equal("NOERROR " + ip))
			changes = append(changes, time.Since(changed))
		}
		fmt.Printf("services: ServiceImport change written -> answered by the agent's DNS: p50 %s p99 %s over %d changes (target p99 <= 100 ms)\n",
			fleet.Percentile(changes, 50), fleet.Percentile(changes, 99), len(changes))
		Expect(a.Client.Delete(ctx, si)).To(Succeed())
	})
}
