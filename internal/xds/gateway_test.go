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

package xds

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// The gateway serves the member's own exports only: one TLS chain per exported TCP port,
// matched by its server name, passed through (no transport socket) to the member's own
// endpoints; nothing for a service the member does not export or for its cluster.local ones.
func TestBuildGateway(t *testing.T) {
	echo := imported("demo", "echo", set("a", 2), set("b", 1))
	echo.Ports = []Port{{Name: "grpc", Port: 8080}, {Name: "dns", Port: 53, Protocol: "UDP"}}
	elsewhere := imported("demo", "remote-only", set("b", 3))
	local := Service{Namespace: "demo", Name: "web", Scope: Local, Ports: []Port{{Name: "web", Port: 80}},
		Endpoints: []EndpointSet{{Cluster: "a", Ports: []Port{{Name: "web", Port: 8081}}, Endpoints: []Endpoint{{Address: "10.244.0.9", Ready: true}}}}}
	r, err := BuildGateway(input(echo, elsewhere, local))
	if err != nil {
		t.Fatalf("BuildGateway: %v", err)
	}
	sni := wire.GatewaySNI("echo.demo.svc.clusterset.local", 8080)
	if sni != "outbound_.8080_._.echo.demo.svc.clusterset.local" {
		t.Errorf("server name %q, want Istio's convention", sni)
	}
	l := byName[*listenerv3.Listener](t, r.Listeners.Items, wire.GatewayListenerName)
	if len(l.GetFilterChains()) != 1 || l.GetDefaultFilterChain() != nil {
		t.Fatalf("gateway chains %v default %v, want exactly echo's TCP port and no default", l.GetFilterChains(), l.GetDefaultFilterChain())
	}
	fc := l.GetFilterChains()[0]
	if m := fc.GetFilterChainMatch(); m.GetTransportProtocol() != "tls" || !slices.Equal(m.GetServerNames(), []string{sni}) || fc.GetTransportSocket() != nil {
		t.Errorf("chain %v: want tls, server name %s, no transport socket", fc, sni)
	}
	if l.GetAddress().GetSocketAddress().GetPortValue() != wire.GatewayPort || l.GetListenerFilters()[0].GetName() != TLSInspectorFilterName {
		t.Errorf("listener %v", l)
	}
	tp := &tcpproxyv3.TcpProxy{}
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(tp); err != nil || tp.GetCluster() != sni {
		t.Errorf("chain filter %v %v", tp, err)
	}
	c := byName[*clusterv3.Cluster](t, r.Clusters.Items, sni)
	if c.GetTransportSocket() != nil || c.GetType() != clusterv3.Cluster_EDS {
		t.Errorf("cluster %v: want EDS without a transport socket", c)
	}
	eps := cla(t, r, sni)
	if len(eps.GetEndpoints()) != 1 || len(eps.GetEndpoints()[0].GetLbEndpoints()) != 2 || eps.GetEndpoints()[0].GetLocality().GetSubZone() != "a" {
		t.Errorf("gateway endpoints %v, want a's two only", eps.GetEndpoints())
	}
	if len(r.Clusters.Items) != 1 || len(r.Endpoints.Items) != 1 || len(r.Secrets.Items) != 0 {
		t.Errorf("%d clusters, %d endpoints, %d secrets: want 1, 1, 0", len(r.Clusters.Items), len(r.Endpoints.Items), len(r.Secrets.Items))
	}
}

// A gateway's endpoint stands for the endpoints behind it: weighed by them, its locality too.
func TestEndpointWeightOfAGateway(t *testing.T) {
	gw := EndpointSet{Cluster: "c", Region: "r2", Ports: []Port{{Name: "grpc", Port: wire.GatewayPort}},
		Endpoints: []Endpoint{{Address: "192.0.2.10", Ready: true, Weight: 3}}}
	r := mustBuild(t, input(imported("demo", "echo", set("b", 2), gw)))
	eps := cla(t, r, "echo.demo.svc.clusterset.local:8080")
	var remote bool
	for _, l := range eps.GetEndpoints() {
		if l.GetLocality().GetSubZone() != "c" {
			continue
		}
		remote = true
		if l.GetLoadBalancingWeight().GetValue() != 3 || l.GetLbEndpoints()[0].GetLoadBalancingWeight().GetValue() != 3 {
			t.Errorf("c's gateway locality %v: want weight 3 on it and its endpoint", l)
		}
	}
	if !remote {
		t.Fatalf("no locality for c in %v", eps.GetEndpoints())
	}
}
