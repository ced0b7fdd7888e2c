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

package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestWorkloadOfASPIFFEID(t *testing.T) {
	for id, want := range map[string]workload{
		"spiffe://a.fleet/ns/demo/sa/client":   {"client", "demo", "a.fleet"},
		"spiffe://b.fleet/ns/fleetmesh/sa/x-y": {"x-y", "fleetmesh", "b.fleet"},
		// Not a Kubernetes workload's path: the trust domain only.
		"spiffe://a.fleet/agent":               {unknown, unknown, "a.fleet"},
		"spiffe://a.fleet/ns/demo":             {unknown, unknown, "a.fleet"},
		"spiffe://a.fleet/ns/demo/sa/echo/sub": {unknown, unknown, "a.fleet"},
		"spiffe://a.fleet/ns//sa/echo":         {unknown, unknown, "a.fleet"},
		"spiffe://a.fleet":                     {unknown, unknown, "a.fleet"},
	} {
		parsed, err := spiffeid.FromString(id)
		if err != nil {
			// An ID go-spiffe refuses never passes a handshake: nothing to label.
			continue
		}
		if got := workloadOf(parsed); got != want {
			t.Errorf("workloadOf(%s) = %+v, want %+v", id, got, want)
		}
	}
	if got := workloadOf(spiffeid.ID{}); got != unknownWorkload {
		t.Errorf("workloadOf(zero ID) = %+v", got)
	}
	if got := peerWorkload(nil); got != unknownWorkload {
		t.Errorf("peerWorkload(no TLS) = %+v", got)
	}
}

// peerState is the TLS state of a connection whose peer presented the SVID of id.
func peerState(t *testing.T, id string) *tls.ConnectionState {
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}}}
}

// An outbound connection's requests find their upstream peer's series without a lookup in the
// proxy's series map, nor an allocation, once it has been seen.
func TestUpstreamSeriesByPeer(t *testing.T) {
	m := NewMetrics(nil)
	u := m.upstreamSeries("outbound", "outbound|80||echo", workload{"client", "demo", "a.fleet"})
	b1, b2, c := peerState(t, "spiffe://b.fleet/ns/demo/sa/echo"), peerState(t, "spiffe://b.fleet/ns/demo/sa/echo"), peerState(t, "spiffe://c.fleet/ns/demo/sa/echo")
	sb, sc, none := u.of(b1), u.of(c), u.of(nil)
	if sb.key.destination != (workload{"echo", "demo", "b.fleet"}) || sc.key.destination.trustDomain != "c.fleet" || none.key.destination != unknownWorkload {
		t.Fatalf("series %+v %+v %+v", sb.key, sc.key, none.key)
	}
	if sb.key.source != (workload{"client", "demo", "a.fleet"}) || sb.key.service != "outbound|80||echo" {
		t.Fatalf("series %+v", sb.key)
	}
	// Another connection to a host of the same identity: the same series.
	if u.of(b2) != sb || u.of(c) != sc || u.of(nil) != none {
		t.Error("a peer seen before got another series")
	}
	if n := testing.AllocsPerRun(100, func() { _ = u.of(b2); _ = u.of(c); _ = u.of(nil) }); n != 0 {
		t.Errorf("%v allocations per lookup of known peers, want 0", n)
	}
	// Another downstream connection shares the series of the same labels.
	if m.upstreamSeries("outbound", "outbound|80||echo", workload{"client", "demo", "a.fleet"}).of(c) != sc {
		t.Error("the same labels got another series")
	}
}

// A pod's own cluster counts under its service's name: pods called by address add no series.
func TestServiceOfAPodCluster(t *testing.T) {
	for cluster, want := range map[string]string{
		"outbound|9001|10.244.1.2|echo.demo.svc.clusterset.local": "outbound|9001||echo.demo.svc.clusterset.local",
		"outbound|8080||echo.demo.svc.clusterset.local":           "outbound|8080||echo.demo.svc.clusterset.local",
		"PassthroughCluster": "PassthroughCluster",
	} {
		if got := serviceOf(cluster); got != want {
			t.Errorf("serviceOf(%q) = %q, want %q", cluster, got, want)
		}
	}
}
