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
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// The gateway resource set: what the agent serves an east-west gateway (node metadata
// ProxyMetadataKey = wire.ProxyRoleGateway), Envoy-shaped as Istio's AUTO_PASSTHROUGH gateway
// is, with the server names spelled out:
//
//   - Listener wire.GatewayListenerName on 0.0.0.0:wire.GatewayPort with the tls_inspector
//     listener filter. One filter chain per TCP port of every ServiceImport the member itself
//     exports (it has endpoints of its own), matching transport protocol tls and server name
//     wire.GatewaySNI(host, port), with a tcp_proxy to the cluster of the same name and no
//     transport socket: the client sidecar's mTLS passes through to a server sidecar. No
//     default chain: a server name the member does not serve, or plaintext, is closed.
//   - Cluster per chain, named as its server name: EDS, round robin, the mesh's outlier
//     detection, no transport socket.
//   - ClusterLoadAssignment per cluster: the member's own endpoints only (priority 0); a
//     gateway never sends a connection on to another member.

// BuildGateway returns the member's gateway resource set.
func BuildGateway(in Input) (*Resources, error) {
	b, err := newBuilder(in)
	if err != nil {
		return nil, err
	}
	svcs := slices.Clone(in.Services)
	slices.SortFunc(svcs, func(x, y Service) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	l := &listenerv3.Listener{
		Name:             wire.GatewayListenerName,
		Address:          socketAddress("0.0.0.0", wire.GatewayPort),
		ListenerFilters:  []*listenerv3.ListenerFilter{listenerFilter(TLSInspectorFilterName, &tlsinspectorv3.TlsInspector{})},
		TrafficDirection: corev3.TrafficDirection_INBOUND,
	}
	for i := range svcs {
		s := &svcs[i]
		if s.Scope != ClusterSet {
			continue // a gateway carries exported services only
		}
		own := *s
		own.Endpoints = slices.DeleteFunc(slices.Clone(s.Endpoints), func(set EndpointSet) bool { return set.Cluster != in.Member.Cluster })
		if len(own.Endpoints) == 0 {
			continue
		}
		host := Hostname(s.Namespace, s.Name, s.Scope)
		for _, p := range s.Ports {
			if !isTCP(p.Protocol) || p.Port < 1 || p.Port > 65535 {
				continue
			}
			sni := wire.GatewaySNI(host, p.Port)
			cla, err := b.loadAssignment(sni, &own, p)
			if err != nil {
				return nil, err
			}
			b.add(&b.endpoints, cla)
			b.add(&b.clusters, &clusterv3.Cluster{
				Name:                 sni,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: sni},
				LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
				OutlierDetection:     b.outlier,
			})
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
				Name:             sni,
				FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls", ServerNames: []string{sni}},
				Filters:          []*listenerv3.Filter{tcpProxy(sni, sni)},
			})
		}
	}
	b.add(&b.listeners, l)
	return b.envoyResources(nil)
}
