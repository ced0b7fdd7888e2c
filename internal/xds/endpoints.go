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
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Failover tiers, nearest first. Each tier present becomes one priority, numbered from 0
// without gaps (gRPC NACKs a gap): the member's own endpoints, then other members in its
// region, then members in other regions.
const (
	tierLocal = iota
	tierRegion
	tierRemote
)

// locality is where an endpoint runs; the source cluster is the sub-zone, so every member's
// endpoints form localities of their own.
type locality struct{ region, zone, cluster string }

func (l locality) compare(o locality) int {
	return cmp.Or(cmp.Compare(l.region, o.region), cmp.Compare(l.zone, o.zone), cmp.Compare(l.cluster, o.cluster))
}

type candidate struct {
	addr   netip.AddrPort
	tier   int
	health corev3.HealthStatus
	loc    locality
	weight uint32
}

// healthOf maps EndpointSlice conditions: ready is HEALTHY, serving while terminating is
// DRAINING (kept for Envoy's connection draining; gRPC sends it nothing new), anything else
// is left out.
func healthOf(e Endpoint) (corev3.HealthStatus, bool) {
	switch {
	case e.Ready:
		return corev3.HealthStatus_HEALTHY, true
	case e.Serving && e.Terminating:
		return corev3.HealthStatus_DRAINING, true
	}
	return corev3.HealthStatus_UNKNOWN, false
}

func (b *builder) tier(set *EndpointSet) int {
	switch {
	case set.Cluster == b.member.Cluster:
		return tierLocal
	case b.member.Region != "" && set.Region == b.member.Region:
		return tierRegion
	}
	return tierRemote
}

// loadAssignment is the service port's ClusterLoadAssignment; it also records the member's own
// endpoint addresses for their server Listeners.
func (b *builder) loadAssignment(name string, s *Service, p Port) (*endpointv3.ClusterLoadAssignment, error) {
	var cands []candidate
	for i := range s.Endpoints {
		set := &s.Endpoints[i]
		pi := slices.IndexFunc(set.Ports, func(sp Port) bool { return sp.Name == p.Name && isTCP(sp.Protocol) })
		if pi < 0 {
			continue
		}
		port := set.Ports[pi].Port
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("cluster %s: endpoint port %q number %d is out of range", set.Cluster, p.Name, port)
		}
		t := b.tier(set)
		for _, e := range set.Endpoints {
			ip, err := netip.ParseAddr(e.Address)
			if err != nil {
				return nil, fmt.Errorf("cluster %s: endpoint address: %w", set.Cluster, err)
			}
			addr := netip.AddrPortFrom(ip.Unmap(), uint16(port))
			if t == tierLocal {
				b.servers[addr] = true // a server needs its Listener to start, ready or not
			}
			if h, ok := healthOf(e); ok {
				cands = append(cands, candidate{addr: addr, tier: t, health: h, loc: locality{set.Region, e.Zone, set.Cluster}, weight: max(e.Weight, 1)})
			}
		}
	}

	// One entry per address (gRPC NACKs duplicates): the nearest, then the healthiest.
	slices.SortFunc(cands, func(x, y candidate) int {
		return cmp.Or(x.addr.Compare(y.addr), cmp.Compare(x.tier, y.tier), cmp.Compare(x.health, y.health), x.loc.compare(y.loc))
	})
	cands = slices.CompactFunc(cands, func(x, y candidate) bool { return x.addr == y.addr })
	slices.SortStableFunc(cands, func(x, y candidate) int {
		return cmp.Or(cmp.Compare(x.tier, y.tier), x.loc.compare(y.loc))
	})

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	priority, lastTier := uint32(0), -1
	var cur *endpointv3.LocalityLbEndpoints
	var healthy uint32
	flush := func() {
		if cur != nil {
			// gRPC silently drops a locality without a weight: weigh by healthy endpoints (a
			// gateway's counting as the endpoints behind it), at least 1.
			cur.LoadBalancingWeight = wrapperspb.UInt32(max(healthy, 1))
			cla.Endpoints = append(cla.Endpoints, cur)
		}
	}
	var curLoc locality
	for _, c := range cands {
		if cur == nil || c.tier != lastTier || c.loc != curLoc {
			flush()
			if lastTier >= 0 && c.tier != lastTier {
				priority++
			}
			lastTier, curLoc, healthy = c.tier, c.loc, 0
			cur = &endpointv3.LocalityLbEndpoints{
				Locality: &corev3.Locality{Region: c.loc.region, Zone: c.loc.zone, SubZone: c.loc.cluster},
				Priority: priority,
			}
		}
		if c.health == corev3.HealthStatus_HEALTHY {
			healthy += c.weight
		}
		cur.LbEndpoints = append(cur.LbEndpoints, lbEndpoint(c))
	}
	flush()
	return cla, nil
}

func lbEndpoint(c candidate) *endpointv3.LbEndpoint {
	var weight *wrapperspb.UInt32Value
	if c.weight > 1 {
		weight = wrapperspb.UInt32(c.weight)
	}
	return &endpointv3.LbEndpoint{
		LoadBalancingWeight: weight,
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: c.addr.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(c.addr.Port())},
			}}},
		}},
		HealthStatus: c.health,
	}
}
