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
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// echoCluster is the client sidecar's cluster of echo.demo's port httpPort (clientInput's).
var echoCluster = fmt.Sprintf("outbound|%d||echo.demo.svc.clusterset.local", httpPort)

// labelled is a series written as Gather sorts its labels: name=value, by name, comma-separated.
func labelled(labels map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		kv = append(kv, k+"="+labels[k])
	}
	return strings.Join(kv, ",")
}

// with is labels and more, a copy.
func with(labels map[string]string, kv ...string) map[string]string {
	out := maps.Clone(labels)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// gathered is reg's series of metric name, by labelled: a counter's value, a histogram's sample
// count.
func gathered(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			out[labelled(labels)] = v
		}
	}
	return out
}

// wantSeries waits until reg's series of name are want (a sidecar counts a request once its
// response is sent, which its client may have read first).
func wantSeries(t *testing.T, what string, reg *prometheus.Registry, name string, want map[string]float64) {
	t.Helper()
	eventually(t, what+" "+name, func() error {
		if got := gathered(t, reg, name); !maps.Equal(got, want) {
			return fmt.Errorf("series\n%v\nwant\n%v", got, want)
		}
		return nil
	})
}

// workloads are the labels of a request from a's client (spiffe://a.fleet/ns/demo/sa/client)
// to the echo server sidecar of member td (spiffe://<td>/ns/demo/sa/echo).
func workloads(direction, service, td string) map[string]string {
	return map[string]string{"direction": direction, "destination_service": service,
		"source_workload": "client", "source_namespace": "demo", "source_trust_domain": "a.fleet",
		"destination_workload": "echo", "destination_namespace": "demo", "destination_trust_domain": td}
}

// The golden request metrics carry both ends' workload, namespace and trust domain, from the
// SPIFFE IDs of the mTLS handshake: the client sidecar labels each request by the server
// sidecar that answered it (requests of one connection balanced over two members), the server
// sidecar by its caller.
func TestRequestMetricsCarryTheWorkloadsOfBothEnds(t *testing.T) {
	f := newFixture(t)
	appB, appC := startHitApp(t, "b"), startHitApp(t, "c")
	inB := f.serverSidecar(f.b, "b", "demo", appB.addr())
	inC := f.serverSidecar(f.c, "c", "demo", appC.addr())
	// One priority level: the client balances over b and c round robin.
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{},
		endpointsAt("b", "r1", "http", inB), endpointsAt("c", "r1", "http", inC)), proxy.Options{})
	// One connection to the client sidecar, kept alive: its requests go to both members.
	tr := &http.Transport{MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	served := map[string]float64{}
	for range 4 {
		code, body := call(t, hc, http.MethodGet, "http://"+out.Addr().String()+"/")
		if code != http.StatusOK {
			t.Fatalf("status %d %q", code, body)
		}
		served[body]++
	}
	if served["b"] == 0 || served["c"] == 0 {
		t.Fatalf("served %v, want both b and c", served)
	}

	outB, outC := workloads("outbound", echoCluster, "b.fleet"), workloads("outbound", echoCluster, "c.fleet")
	wantSeries(t, "client sidecar", f.registries["a"], "fleetmesh_proxy_requests_total", map[string]float64{
		labelled(with(outB, "response_class", "2xx")): served["b"],
		labelled(with(outC, "response_class", "2xx")): served["c"],
	})
	wantSeries(t, "client sidecar", f.registries["a"], "fleetmesh_proxy_request_duration_seconds", map[string]float64{
		labelled(outB): served["b"], labelled(outC): served["c"],
	})
	for _, s := range []struct {
		node, td string
		app      netip.AddrPort
	}{{"b", "b.fleet", appB.addr()}, {"c", "c.fleet", appC.addr()}} {
		in := workloads("inbound", ":"+strconv.Itoa(int(s.app.Port())), s.td)
		wantSeries(t, s.node+"'s server sidecar", f.registries[s.node], "fleetmesh_proxy_requests_total", map[string]float64{
			labelled(with(in, "response_class", "2xx")): served[s.node],
		})
		wantSeries(t, s.node+"'s server sidecar", f.registries[s.node], "fleetmesh_proxy_request_duration_seconds", map[string]float64{
			labelled(in): served[s.node],
		})
	}
}

// A request no server sidecar answered has an unknown destination workload: nothing verified
// one.
func TestRequestMetricsOfAnUnansweredRequestHaveAnUnknownDestination(t *testing.T) {
	f := newFixture(t)
	gone := listen(t)
	_ = gone.Close() // its port refuses connections
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{}, endpointsAt("b", "r1", "http", gone)), proxy.Options{})
	if code, body := call(t, &http.Client{Timeout: 5 * time.Second}, http.MethodGet, "http://"+out.Addr().String()+"/"); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d %q, want 503", code, body)
	}
	labels := with(workloads("outbound", echoCluster, "unknown"), "destination_workload", "unknown", "destination_namespace", "unknown")
	wantSeries(t, "client sidecar", f.registries["a"], "fleetmesh_proxy_requests_total", map[string]float64{
		labelled(with(labels, "response_class", "5xx")): 1,
	})
}

// TCP series carry both ends' workloads too.
func TestTCPMetricsCarryTheWorkloadsOfBothEnds(t *testing.T) {
	f := newFixture(t)
	appB := startApp(t, "b")
	tcpApp := appB.tcp.Addr().(*net.TCPAddr).AddrPort()
	inB := f.serverSidecar(f.b, "b", "demo", tcpApp)
	_, out := f.clientSidecar("a", f.clientInput("tcp-echo", xds.Failover{}, endpointsAt("b", "r1", "tcp-echo", inB)), proxy.Options{})
	c, err := net.DialTimeout("tcp", out.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echoed %q: %v", buf, err)
	}
	_ = c.Close()
	for _, s := range []struct {
		what   string
		reg    *prometheus.Registry
		labels map[string]string
	}{
		{"client sidecar", f.registries["a"], workloads("outbound", echoCluster, "b.fleet")},
		{"b's server sidecar", f.registries["b"], workloads("inbound", ":"+strconv.Itoa(int(tcpApp.Port())), "b.fleet")},
	} {
		for _, name := range []string{"fleetmesh_proxy_tcp_connections_opened_total", "fleetmesh_proxy_tcp_connections_closed_total"} {
			wantSeries(t, s.what, s.reg, name, map[string]float64{labelled(s.labels): 1})
		}
		wantSeries(t, s.what, s.reg, "fleetmesh_proxy_tcp_bytes_total", map[string]float64{
			labelled(with(s.labels, "flow", "sent")): 5, labelled(with(s.labels, "flow", "received")): 5,
		})
	}
}
