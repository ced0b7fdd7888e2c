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
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Envoy extension names the proxy set uses (and fleetmesh's proxy understands).
const (
	OriginalDstFilterName   = wire.OriginalDstFilterName
	TLSInspectorFilterName  = wire.TLSInspectorFilterName
	NetworkRBACFilterName   = wire.NetworkRBACFilterName
	SPIFFEValidatorName     = wire.SPIFFEValidatorName
	HTTPProtocolOptionsName = wire.HTTPProtocolOptionsName
)

// BuildProxy returns the member's proxy resource set (see the proxy resource set in
// proxynames.go): the outbound and inbound Listeners, a Cluster and ClusterLoadAssignment per
// service port, the passthrough Clusters and the SPIFFE validation Secret. Every resource passes
// its proto's Validate(), so an Envoy could take it as well.
func BuildProxy(in Input) (*Resources, error) {
	b, err := newBuilder(in)
	if err != nil {
		return nil, err
	}
	validation, err := validationSecret(in)
	if err != nil {
		return nil, err
	}
	rules, err := rbacRules(spiffeid.RequireTrustDomainFromString(in.Member.TrustDomain), in.FederatedTrustDomains, in.Policy.Authorization)
	if err != nil {
		return nil, fmt.Errorf("authorization policy: %w", err)
	}
	svcs := slices.Clone(in.Services)
	slices.SortFunc(svcs, func(x, y Service) int {
		return cmp.Or(cmp.Compare(x.Scope, y.Scope), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	chains := map[string]*listenerv3.FilterChain{}
	for i := range svcs {
		if err := b.proxyService(&svcs[i], chains); err != nil {
			return nil, err
		}
	}
	outbound := &listenerv3.Listener{
		Name:               OutboundListenerName,
		Address:            socketAddress("0.0.0.0", OutboundPort),
		UseOriginalDst:     wrapperspb.Bool(true),
		ListenerFilters:    []*listenerv3.ListenerFilter{listenerFilter(OriginalDstFilterName, &originaldstv3.OriginalDst{})},
		DefaultFilterChain: &listenerv3.FilterChain{Name: PassthroughCluster, Filters: []*listenerv3.Filter{tcpProxy("outbound_passthrough", PassthroughCluster)}},
		TrafficDirection:   corev3.TrafficDirection_OUTBOUND,
	}
	for _, name := range slices.Sorted(maps.Keys(chains)) {
		outbound.FilterChains = append(outbound.FilterChains, chains[name])
	}
	b.add(&b.listeners, outbound)
	b.add(&b.listeners, inboundListener(rules, localHTTPPorts(svcs)))
	for _, name := range []string{PassthroughCluster, InboundPassthroughCluster} {
		b.add(&b.clusters, &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		})
	}
	return b.envoyResources(map[string]types.Resource{ValidationSecretName: validation})
}

// envoyResources are the builder's resources with secrets, each checked by its proto's
// Validate() and versioned by their content.
func (b *builder) envoyResources(secrets map[string]types.Resource) (*Resources, error) {
	if b.err != nil {
		return nil, b.err
	}
	r := &Resources{
		Listeners: typed(b.listeners), Clusters: typed(b.clusters),
		Endpoints: typed(b.endpoints), Secrets: typed(secrets), Routes: typed(nil),
	}
	for _, t := range []Typed{r.Listeners, r.Clusters, r.Endpoints, r.Secrets} {
		for _, item := range t.Items {
			if v, ok := item.(interface{ ValidateAll() error }); ok {
				if err := v.ValidateAll(); err != nil {
					return nil, fmt.Errorf("resource %s: %w", nameOf(item), err)
				}
			}
		}
	}
	sum := sha256.New()
	for _, t := range []Typed{r.Listeners, r.Clusters, r.Endpoints, r.Secrets} {
		sum.Write([]byte(t.Version))
	}
	r.Version = hex.EncodeToString(sum.Sum(nil)[:8])
	return r, nil
}

func nameOf(r types.Resource) string {
	if n, ok := r.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	return fmt.Sprintf("%T", r)
}

// proxyService adds the Clusters and ClusterLoadAssignments of a service's TCP ports and an
// outbound filter chain per virtual IP and port.
func (b *builder) proxyService(s *Service, chains map[string]*listenerv3.FilterChain) error {
	if s.Namespace == "" || s.Name == "" {
		return fmt.Errorf("service %q/%q: namespace and name are required", s.Namespace, s.Name)
	}
	host := Hostname(s.Namespace, s.Name, s.Scope)
	var ips []netip.Addr
	for _, ip := range s.IPs {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Errorf("service %s: IP %q: %w", host, ip, err)
		}
		ips = append(ips, a.Unmap())
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	for _, p := range s.Ports {
		if !isTCP(p.Protocol) {
			continue
		}
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("service %s: port %q number %d is out of range", host, p.Name, p.Port)
		}
		name := ProxyClusterName(host, p.Port)
		proto := ProtocolOf(p.Name, p.AppProtocol)
		b.add(&b.clusters, b.proxyCluster(name, s.Namespace, proto, wire.GatewaySNI(host, p.Port)))
		cla, err := b.loadAssignment(name, s, p)
		if err != nil {
			return fmt.Errorf("service %s: %w", host, err)
		}
		b.add(&b.endpoints, cla)
		for _, ip := range ips {
			chain := ProxyChainName(ip.String(), p.Port)
			if _, dup := chains[chain]; dup {
				// Two services claim one virtual IP and port (a ClusterIP reused by an import
				// is not possible; this is a bad input): the first, in sorted order, keeps it.
				continue
			}
			chains[chain] = b.outboundChain(chain, []netip.Addr{ip}, p.Port, name, proto, s.RequestTimeout)
		}
		b.podChains(s, host, p, proto, chains)
	}
	return nil
}

// podChains sends what a workload opens to a pod address of a service port (its endpoints' own
// addresses and target port, in this member or another on its network) to that pod, with the
// service's mTLS, instead of the plaintext passthrough a meshed pod refuses: a headless
// service's records, a StatefulSet pod's name, an address it was given. One chain per target
// port lists the pods' addresses; its ORIGINAL_DST Cluster dials the connection's original
// destination (never balanced elsewhere, not ejected), whatever the pod's readiness says. A pod
// behind two services goes with the first (sorted); a gateway's address stands for a network,
// not a pod, and gets none.
func (b *builder) podChains(s *Service, host string, p Port, proto Protocol, chains map[string]*listenerv3.FilterChain) {
	if b.podsClaimed == nil {
		b.podsClaimed = map[netip.AddrPort]bool{}
	}
	byPort := map[uint16][]netip.Addr{}
	for _, addr := range podAddresses(s, p) {
		if !b.podsClaimed[addr] {
			b.podsClaimed[addr] = true
			byPort[addr.Port()] = append(byPort[addr.Port()], addr.Addr())
		}
	}
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		name := ProxyPodsClusterName(host, port)
		c := b.proxyCluster(name, s.Namespace, proto, "")
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.EdsClusterConfig, c.LbPolicy, c.OutlierDetection = nil, clusterv3.Cluster_CLUSTER_PROVIDED, nil
		b.add(&b.clusters, c)
		chains[name] = b.outboundChain(name, byPort[port], int32(port), name, proto, s.RequestTimeout)
	}
}

// podAddresses are the pod addresses and target ports of a service port's endpoints, sorted,
// each once, gateway addresses left out.
func podAddresses(s *Service, p Port) []netip.AddrPort {
	var out []netip.AddrPort
	for _, set := range s.Endpoints {
		pi := slices.IndexFunc(set.Ports, func(sp Port) bool { return sp.Name == p.Name && isTCP(sp.Protocol) })
		if set.Gateway || pi < 0 || set.Ports[pi].Port < 1 || set.Ports[pi].Port > 65535 {
			continue // the port's range was checked by loadAssignment already
		}
		for _, e := range set.Endpoints {
			if ip, err := netip.ParseAddr(e.Address); err == nil {
				out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(set.Ports[pi].Port)))
			}
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}

// outboundChain sends what a workload opens to port of one of ips to cluster; HTTP requests are bounded
// by timeout, retries included (0: none).
func (b *builder) outboundChain(chain string, ips []netip.Addr, port int32, cluster string, proto Protocol, timeout time.Duration) *listenerv3.FilterChain {
	fc := &listenerv3.FilterChain{
		Name:             chain,
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(port))},
	}
	for _, ip := range ips {
		fc.FilterChainMatch.PrefixRanges = append(fc.FilterChainMatch.PrefixRanges, &corev3.CidrRange{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(uint32(ip.BitLen()))})
	}
	if proto != ProtocolHTTP {
		fc.Filters = []*listenerv3.Filter{tcpProxy("outbound|"+chain, cluster)}
		return fc
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "outbound|" + chain,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: allPaths(chain, []string{"*"}, &routev3.Route{
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
				RetryPolicy:      httpRetryPolicy(b.failover.Retries),
				// Said explicitly when there is none (0), since an unset one is Envoy's 15 s.
				Timeout: durationpb.New(timeout),
			}},
		})},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
	}
	fc.Filters = []*listenerv3.Filter{hcmFilter(hcm)}
	return fc
}

// httpRetryPolicy retries on another host after a refused or reset connection or a 503 (what a
// server sidecar answers when its application is gone). fleetmesh's proxy narrows this to what
// is safe: a request that may have reached an application is sent again only when its method
// is idempotent; one that did not (connect failure, a 503 marked unreached) always.
func httpRetryPolicy(retries int32) *routev3.RetryPolicy {
	if retries == 0 {
		return nil
	}
	return &routev3.RetryPolicy{
		RetryOn:              "connect-failure,refused-stream,reset,retriable-status-codes",
		RetriableStatusCodes: []uint32{503},
		NumRetries:           wrapperspb.UInt32(uint32(retries)),
		// Another host each time, as the gRPC path does.
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: anyOf(&previoushostsv3.PreviousHostsPredicate{})}}},
	}
}

// proxyCluster is a service port's Cluster. Its server sidecars must present a SPIFFE ID of the
// service's namespace (in any federated trust domain): a Service's endpoints are pods of its
// own namespace, and an imported service's are those of the same namespace in every member
// (MCS namespace sameness), so another workload at an endpoint's address cannot pose as it.
//
// sni, the TLS server name (wire.GatewaySNI), routes the connection through the east-west
// gateway of a member on another network; a server sidecar ignores it.
func (b *builder) proxyCluster(name, namespace string, proto Protocol, sni string) *clusterv3.Cluster {
	alpn := InboundTCPALPN
	if proto == ProtocolHTTP {
		alpn = InboundHTTPALPN
	}
	common := sdsTLS(alpn)
	common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
		DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			// Namespace names are DNS labels: nothing to quote.
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
				Regex: "^spiffe://[^/]+/ns/" + namespace + "/sa/[^/]+$",
			}}},
		}}},
		ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: ValidationSecretName, SdsConfig: adsSource()},
	}}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		OutlierDetection:     b.outlier,
		TransportSocket:      transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: sni}),
	}
	if proto == ProtocolHTTP {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsName: anyOf(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		})}
	}
	return c
}

// sdsTLS is a TLS context whose certificate and validation context come by SDS over ADS.
func sdsTLS(alpn ...string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: CertSecretName, SdsConfig: adsSource()}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: ValidationSecretName, SdsConfig: adsSource()},
		},
		AlpnProtocols: alpn,
	}
}

// inboundListener terminates mTLS for every inbound connection the capture sends it and hands
// it to the application at its original destination, after the authorization policy.
// localHTTPPorts are the target ports of the member's own HTTP service ports: inbound, these
// take HTTP from a client sidecar only, so that no caller can hand the application raw bytes
// with a forged x-forwarded-client-cert over the opaque TCP chain.
func localHTTPPorts(svcs []Service) []uint32 {
	var out []uint32
	for _, s := range svcs {
		if s.Scope != Local {
			continue
		}
		for _, p := range s.Ports {
			if !isTCP(p.Protocol) || ProtocolOf(p.Name, p.AppProtocol) != ProtocolHTTP {
				continue
			}
			for _, set := range s.Endpoints {
				for _, ep := range set.Ports {
					if ep.Name == p.Name && isTCP(ep.Protocol) && ep.Port > 0 && ep.Port <= 65535 {
						out = append(out, uint32(ep.Port))
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func inboundListener(rules *rbacv3.RBAC, httpPorts []uint32) *listenerv3.Listener {
	downstream := func(alpn string) *corev3.TransportSocket {
		return transportSocket(&tlsv3.DownstreamTlsContext{
			CommonTlsContext:         sdsTLS(alpn),
			RequireClientCertificate: wrapperspb.Bool(true),
		})
	}
	rbac := &listenerv3.Filter{Name: NetworkRBACFilterName, ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: anyOf(&netrbacv3.RBAC{StatPrefix: "inbound_rbac", Rules: rules}),
	}}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:                  "inbound_http",
		CodecType:                   hcmv3.HttpConnectionManager_HTTP2,
		ForwardClientCertDetails:    hcmv3.HttpConnectionManager_SANITIZE_SET,
		SetCurrentClientCertDetails: &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true},
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: allPaths("inbound", []string{"*"}, &routev3.Route{
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: InboundPassthroughCluster},
			}},
		})},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
	}
	// Every HTTP chain shares one filter list and one TLS context: the declared HTTP ports'
	// chains (a destination port match is more specific than none, so on these ports only the
	// HTTP chain exists and any other connection matches no chain and is closed), then the
	// chain for HTTP on any other port.
	httpFilters := []*listenerv3.Filter{rbac, hcmFilter(hcm)}
	httpTLS := downstream(InboundHTTPALPN)
	httpChain := func(name string, port uint32) *listenerv3.FilterChain {
		m := &listenerv3.FilterChainMatch{TransportProtocol: "tls", ApplicationProtocols: []string{InboundHTTPALPN}}
		if port != 0 {
			m.DestinationPort = wrapperspb.UInt32(port)
		}
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: httpFilters, TransportSocket: httpTLS}
	}
	chains := make([]*listenerv3.FilterChain, 0, len(httpPorts)+2)
	for _, port := range httpPorts {
		chains = append(chains, httpChain("inbound-http-"+strconv.Itoa(int(port)), port))
	}
	chains = append(chains, httpChain("inbound-http", 0), &listenerv3.FilterChain{
		Name:             "inbound-tcp",
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
		Filters:          []*listenerv3.Filter{rbac, tcpProxy("inbound_tcp", InboundPassthroughCluster)},
		TransportSocket:  downstream(InboundTCPALPN),
	})
	return &listenerv3.Listener{
		Name:           InboundListenerName,
		Address:        socketAddress("0.0.0.0", InboundPort),
		UseOriginalDst: wrapperspb.Bool(true),
		ListenerFilters: []*listenerv3.ListenerFilter{
			listenerFilter(OriginalDstFilterName, &originaldstv3.OriginalDst{}),
			listenerFilter(TLSInspectorFilterName, &tlsinspectorv3.TlsInspector{}),
		},
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains:     chains,
	}
}

// validationSecret is the SPIFFE validator over every trust domain the member federates with
// (its own included): a peer is verified against its own trust domain's authorities.
func validationSecret(in Input) (*tlsv3.Secret, error) {
	if len(in.TrustBundles) == 0 {
		return nil, errors.New("trust bundles are required for the proxy resource set")
	}
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	for _, td := range slices.Sorted(maps.Keys(in.TrustBundles)) {
		if _, err := spiffeid.TrustDomainFromString(td); err != nil {
			return nil, fmt.Errorf("trust bundle %q: %w", td, err)
		}
		var pemData []byte
		for _, c := range in.TrustBundles[td] {
			pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		if len(pemData) == 0 {
			return nil, fmt.Errorf("trust bundle %q has no X.509 authorities", td)
		}
		cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{
			Name:        td,
			TrustBundle: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pemData}},
		})
	}
	return &tlsv3.Secret{
		Name: ValidationSecretName,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: SPIFFEValidatorName, TypedConfig: anyOf(cfg)},
		}},
	}, nil
}

func tcpProxy(stat, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(&tcpproxyv3.TcpProxy{
		StatPrefix:       stat,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	})}}
}

func listenerFilter(name string, cfg proto.Message) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: name, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: anyOf(cfg)}}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
