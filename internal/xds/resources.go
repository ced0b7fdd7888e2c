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
	"errors"
	"fmt"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// RBACFilterName is the HTTP filter that authorizes callers on the server side.
const RBACFilterName = "envoy.filters.http.rbac"

// newBuilder checks what every resource depends on and prepares the parts they share.
func newBuilder(in Input) (*builder, error) {
	if in.Member.Cluster == "" {
		return nil, errors.New("member cluster is required")
	}
	td, err := spiffeid.TrustDomainFromString(in.Member.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("member trust domain %q: %w", in.Member.TrustDomain, err)
	}
	f, err := in.Policy.Failover.withDefaults()
	if err != nil {
		return nil, err
	}
	rules, err := rbacRules(td, in.FederatedTrustDomains, in.Policy.Authorization)
	if err != nil {
		return nil, fmt.Errorf("authorization policy: %w", err)
	}
	instance := in.CertProviderInstance
	if instance == "" {
		instance = DefaultCertProviderInstance
	}
	return &builder{
		member:    in.Member,
		failover:  f,
		outlier:   outlierDetection(f),
		upstream:  transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: commonTLS(instance)}),
		server:    serverFilterChain(instance, rules),
		listeners: map[string]types.Resource{}, routes: map[string]types.Resource{},
		clusters: map[string]types.Resource{}, endpoints: map[string]types.Resource{},
		servers: map[netip.AddrPort]bool{},
	}, nil
}

// clientListener is what gRPC asks for when dialing xds:///<name>: an api_listener whose HTTP
// connection manager (router filter required) takes its routes from RDS.
func clientListener(name, route string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "outbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsSource(), RouteConfigName: route,
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: anyOf(hcm)}}
}

// routeConfig sends every call for the domains (the names clients dial) to the cluster of the
// same name, retrying UNAVAILABLE.
func routeConfig(name string, domains []string, retries int32) *routev3.RouteConfiguration {
	return allPaths(name, domains, &routev3.Route{Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
		RetryPolicy:      retryPolicy(retries),
	}}})
}

// allPaths is a route configuration of one virtual host for domains, whose one route takes
// every path (prefix "/") to route's action.
func allPaths(name string, domains []string, route *routev3.Route) *routev3.RouteConfiguration {
	route.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: domains, Routes: []*routev3.Route{route},
	}}}
}

// cluster is an EDS cluster over ADS with outlier detection and mTLS.
func (b *builder) cluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		OutlierDetection:     b.outlier,
		TransportSocket:      b.upstream,
	}
}

// serverListener is what an xDS gRPC server listening on addr asks for: its address (gRPC
// checks it) and the shared mTLS + RBAC filter chain.
func (b *builder) serverListener(addr netip.AddrPort) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: ServerListenerName(addr.Addr().String(), int32(addr.Port())),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: addr.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(addr.Port())},
		}}},
		FilterChains: []*listenerv3.FilterChain{b.server},
	}
}

// serverFilterChain requires a client certificate, authorizes its SPIFFE ID with RBAC, and
// hands every call to the gRPC server (NonForwardingAction).
func serverFilterChain(instance string, rules *rbacv3.RBAC) *listenerv3.FilterChain {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: allPaths("inbound", []string{"*"}, &routev3.Route{
			Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
		})},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: RBACFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(&rbacfilterv3.RBAC{Rules: rules})}},
			routerFilter(),
		},
	}
	return &listenerv3.FilterChain{
		Name:    "inbound-mtls",
		Filters: []*listenerv3.Filter{hcmFilter(hcm)},
		TransportSocket: transportSocket(&tlsv3.DownstreamTlsContext{
			CommonTlsContext:         commonTLS(instance),
			RequireClientCertificate: wrapperspb.Bool(true),
		}),
	}
}

// commonTLS takes the workload's SVID and the trust bundles from the bootstrap's certificate
// provider. With a SPIFFE bundle map there, peers are verified against their own trust
// domain's bundle. gRPC NACKs the SPIFFE custom_validator_config, so none is set.
func commonTLS(instance string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: instance},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: instance},
		}},
	}
}

func transportSocket(m proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(m)},
	}
}

// hcmFilter is the network filter of an http_connection_manager.
func hcmFilter(hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(hcm)}}
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(&routerv3.Router{})}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// anyOf packs m deterministically (the RBAC policies are a map), so versions are stable.
func anyOf(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(err) // only for a message that cannot be marshalled: a bug here
	}
	return a
}
