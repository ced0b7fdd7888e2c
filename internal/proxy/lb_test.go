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
	"net/netip"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// An endpoint's load-balancing weight (an east-west gateway standing for its member's
// endpoints) is honoured within a priority, as Envoy does; ejected hosts leave the rotation.
func TestBalancerHonoursEndpointWeights(t *testing.T) {
	pod, gateway := netip.MustParseAddrPort("10.244.2.5:8080"), netip.MustParseAddrPort("10.244.103.2:15443")
	ep := func(a netip.AddrPort, weight uint32) *endpointv3.LbEndpoint {
		e := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: a.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(a.Port())}}}}}}}
		if weight > 0 {
			e.LoadBalancingWeight = wrapperspb.UInt32(weight)
		}
		return e
	}
	levels, err := Endpoints([]*endpointv3.ClusterLoadAssignment{{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{LbEndpoints: []*endpointv3.LbEndpoint{ep(pod, 0)}},
		{LbEndpoints: []*endpointv3.LbEndpoint{ep(gateway, 3)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	b := NewBalancer(func() time.Time { return now })
	b.Update(levels["c"])
	picks := map[netip.AddrPort]int{}
	for range 400 {
		h, ok := b.Pick(nil)
		if !ok {
			t.Fatal("no host")
		}
		picks[h]++
	}
	if picks[pod] != 100 || picks[gateway] != 300 {
		t.Errorf("picks %v, want the gateway of weight 3 three times as often as the pod", picks)
	}
	// The gateway ejected: the pod alone.
	b.Report(gateway, false, Outlier{ConsecutiveErrors: 1, BaseEjectionTime: time.Minute})
	for range 10 {
		if h, _ := b.Pick(nil); h != pod {
			t.Fatalf("picked %s with the gateway ejected", h)
		}
	}
}
