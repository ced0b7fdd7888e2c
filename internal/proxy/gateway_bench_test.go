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

package proxy_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// TestBenchmarkGatewayHop is `make bench`'s figure for the east-west gateway (FLEETMESH_BENCH=1):
// the latency a gateway adds to the two-sidecar hop (client -> sidecar -> gateway -> sidecar ->
// server vs client -> sidecar -> sidecar -> server), at 1,000 HTTP/1.1 requests/s over 16
// connections with 1 KB bodies, open loop (latency from each request's scheduled time). Every
// proxy, the server and the generator share this process and the machine's cores. Then the heap
// a gateway's config takes with 100 exported services.
func TestBenchmarkGatewayHop(t *testing.T) {
	if os.Getenv("FLEETMESH_BENCH") == "" {
		t.Skip("set FLEETMESH_BENCH=1 (make bench) to run the gateway benchmark")
	}
	const (
		rate     = 1000
		conns    = 16
		duration = 10 * time.Second
	)
	body := bytes.Repeat([]byte("x"), 1024)
	f := newFixture(t)
	srv := serveBody(t, body)
	in := f.serverSidecar(f.b, "b", "demo", srv.Addr().(*net.TCPAddr).AddrPort())
	gw, gwL := f.startGateway("b-gateway", 16384)
	bView := f.clientInput("http", xds.Failover{}, endpointsAt("b", "r1", "http", in))
	bView.Member = xds.Member{Cluster: "b", Region: "r1", TrustDomain: "b.fleet"}
	f.setSnapshotOf("b-gateway", bView, xds.BuildGateway)
	eventually(t, "gateway configured", func() error {
		if !gw.Ready() || len(gw.Config().Gateway) != 1 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	_, flat := f.clientSidecar("a-flat", f.clientInput("http", xds.Failover{Retries: 2}, endpointsAt("b", "r1", "http", in)), proxy.Options{})
	_, viaGW := f.clientSidecar("a-gw", f.clientInput("http", xds.Failover{Retries: 2}, endpointsAt("b", "r1", "http", gwL)), proxy.Options{})

	direct := openLoop(t, "http://"+flat.Addr().String()+"/", body, rate, conns, duration)
	through := openLoop(t, "http://"+viaGW.Addr().String()+"/", body, rate, conns, duration)
	added := func(q float64) time.Duration { return pctl(through, q) - pctl(direct, q) }
	fmt.Printf("\nproxy: east-west gateway at %d req/s, %d connections, 1 KB bodies, mTLS passed through, %s, %d cores (sidecars, gateway, server and generator in one process):\n",
		rate, conns, duration, runtime.NumCPU())
	fmt.Printf("proxy:   flat (sidecar pair)   p50 %s p90 %s p99 %s (%d requests)\n", pctl(direct, 50), pctl(direct, 90), pctl(direct, 99), len(direct))
	fmt.Printf("proxy:   through the gateway   p50 %s p90 %s p99 %s (%d requests)\n", pctl(through, 50), pctl(through, 90), pctl(through, 99), len(through))
	fmt.Printf("proxy:   added by the gateway  p50 %s p90 %s p99 %s (target p99 <= 1 ms)\n", added(50), added(90), added(99))

	// A gateway's config with 100 exported services of 3 endpoints each.
	many := bView
	many.Services = nil
	for i := range 100 {
		set := xds.EndpointSet{Cluster: "b", Ports: []xds.Port{{Name: "http", Port: 8080}}}
		for e := range 3 {
			set.Endpoints = append(set.Endpoints, xds.Endpoint{Address: fmt.Sprintf("10.244.2.%d", (i*3+e)%250+1), Ready: true})
		}
		many.Services = append(many.Services, xds.Service{Namespace: "demo", Name: fmt.Sprintf("svc-%d", i), Scope: xds.ClusterSet,
			IPs: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)}, Ports: []xds.Port{{Name: "http", Port: 8080}}, Endpoints: []xds.EndpointSet{set}})
	}
	before := heapInUse()
	big, _ := f.startGateway("b-gateway-100", 16384)
	f.setSnapshotOf("b-gateway-100", many, xds.BuildGateway)
	eventually(t, "100 services configured", func() error {
		if c := big.Config(); c == nil || len(c.Gateway) != 100 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	fmt.Printf("proxy:   one gateway's config with 100 exported services (3 endpoints each): %.1f MiB of heap above the baseline (the xDS server's snapshot included; target RSS <= 30 MB, the proxy binary's idle RSS is in the sidecar figures)\n",
		float64(heapInUse()-before)/(1<<20))
}
