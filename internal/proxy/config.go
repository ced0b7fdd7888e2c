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

// Package proxy is fleetmesh's sidecar proxy: an ADS client of its member's agent that takes
// the Envoy-shaped proxy resource set (internal/xds, proxynames.go), and the listeners that carry
// a pod's captured traffic: outbound to the services of the mesh over mTLS with priority
// failover, outlier detection and retries; inbound with mTLS termination and the mesh's
// authorization policy. The translation from xDS resources to the proxy's Config is pure.
package proxy

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Route is where an outbound filter chain sends a connection.
type Route struct {
	// Chain is the filter chain's name (<ip>:<port>).
	Chain   string
	Cluster string
	HTTP    bool
	// Retries of a request (HTTP) or of a connection attempt (TCP).
	Retries int
	// Timeout bounds an HTTP request, retries included, until its response is complete (the
	// route's timeout; 0: none).
	Timeout time.Duration
}

// Cluster is an upstream service port.
type Cluster struct {
	Name string
	// EDSName is the ClusterLoadAssignment that holds its endpoints.
	EDSName string
	// ALPN offered to the server sidecar.
	ALPN    string
	Outlier Outlier
	// ServerIDs are the SPIFFE IDs a server sidecar of the cluster may present (the upstream
	// validation context's match_typed_subject_alt_names); nil: any ID of a federated trust
	// domain.
	ServerIDs *Policy
	// SNI is the TLS server name sent to the cluster's hosts (wire.GatewaySNI): an east-west
	// gateway among them routes by it; a server sidecar ignores it.
	SNI string
	// Plain is a cluster without a transport socket: a gateway's, whose hosts take the
	// client's mTLS bytes unchanged. A sidecar never sends a connection to one.
	Plain bool
	// OriginalDst is an ORIGINAL_DST cluster with mTLS (a service's pods, dialled by their own
	// addresses): its one host is each connection's original destination, no balancing.
	OriginalDst bool
}

// Outlier is the outlier detection of a cluster: ConsecutiveErrors failures in a row eject a
// host for BaseEjectionTime.
type Outlier struct {
	ConsecutiveErrors int
	BaseEjectionTime  time.Duration
}

// Priority is one priority level of a cluster's endpoints, lowest first.
type Priority struct {
	Priority uint32
	Hosts    []netip.AddrPort
	// Weights are the hosts' load-balancing weights, by index (nil or 0: 1). An east-west
	// gateway's endpoint weighs as many endpoints as it stands for.
	Weights []uint32
}

// Policy is a set of SPIFFE ID matchers: the inbound authorization (a caller is allowed when its
// ID matches one principal) or a cluster's server identities.
type Policy struct {
	prefixes []string
	exact    []string
	regexps  []*regexp.Regexp
	// httpOnly are the inbound ports that take HTTP from a client sidecar only (their filter
	// chains name the port and ALPN fleetmesh-h2): an opaque TCP connection to one is refused,
	// so no caller can hand the application a forged x-forwarded-client-cert in raw bytes.
	httpOnly map[uint16]bool
}

// HTTPOnly reports whether inbound port takes HTTP from a client sidecar only.
func (p *Policy) HTTPOnly(port uint16) bool { return p != nil && p.httpOnly[port] }

// Allows reports whether a caller's SPIFFE ID is authorized.
func (p *Policy) Allows(id spiffeid.ID) bool {
	if p == nil {
		return false
	}
	s := id.String()
	for _, pre := range p.prefixes {
		if strings.HasPrefix(s, pre) {
			return true
		}
	}
	if slices.Contains(p.exact, s) {
		return true
	}
	for _, re := range p.regexps {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// Config is everything the listeners act on, translated from one accepted set of resources.
type Config struct {
	Outbound  map[netip.AddrPort]*Route
	Clusters  map[string]*Cluster
	Endpoints map[string][]Priority
	Inbound   *Policy
	// Gateway routes a gateway's connections by TLS server name (the gateway role only).
	Gateway map[string]*Route
	// Bundles verify peers: the SPIFFE validator's trust domains.
	Bundles *x509bundle.Set
}

// Ready reports whether the config can carry traffic: for a sidecar listeners, clusters and the
// validation secret have arrived; for a gateway (which verifies no one) its listener.
func (c *Config) Ready() bool {
	if c != nil && c.Gateway != nil {
		return true
	}
	return c != nil && c.Inbound != nil && c.Bundles != nil && c.Outbound != nil
}

// ListenerSet is what a Listener response holds: a sidecar's outbound routes and inbound
// policy, or a gateway's routes by server name.
type ListenerSet struct {
	Outbound map[netip.AddrPort]*Route
	Inbound  *Policy
	Gateway  map[string]*Route
}

// Listeners translates a sidecar's outbound and inbound Listeners, or a gateway's one Listener.
// Unknown listeners are an error (the response is NACKed), so is a chain the proxy cannot carry
// out, and so is a mix of the two roles.
func Listeners(ls []*listenerv3.Listener) (ListenerSet, error) {
	var set ListenerSet
	for _, l := range ls {
		if err := l.ValidateAll(); err != nil {
			return ListenerSet{}, fmt.Errorf("listener %q: %w", l.GetName(), err)
		}
		var err error
		switch l.GetName() {
		case wire.OutboundListenerName:
			set.Outbound, err = outboundRoutes(l)
		case wire.InboundListenerName:
			set.Inbound, err = inboundPolicy(l)
		case wire.GatewayListenerName:
			set.Gateway, err = gatewayRoutes(l)
		default:
			err = fmt.Errorf("unknown to this proxy (want %q and %q, or %q)", wire.OutboundListenerName, wire.InboundListenerName, wire.GatewayListenerName)
		}
		if err != nil {
			return ListenerSet{}, fmt.Errorf("listener %q: %w", l.GetName(), err)
		}
	}
	sidecar := set.Outbound != nil && set.Inbound != nil
	switch {
	case set.Gateway != nil && (set.Outbound != nil || set.Inbound != nil):
		return ListenerSet{}, fmt.Errorf("listener %q cannot come with %q or %q: a proxy is a gateway or a sidecar", wire.GatewayListenerName, wire.OutboundListenerName, wire.InboundListenerName)
	case set.Gateway == nil && !sidecar:
		return ListenerSet{}, fmt.Errorf("listeners %q and %q are both required (or %q alone, for a gateway)", wire.OutboundListenerName, wire.InboundListenerName, wire.GatewayListenerName)
	}
	return set, nil
}

// gatewayRoutes reads a gateway's filter chains: each matches TLS with one or more server names
// and passes the connection, still encrypted, to a cluster by tcp_proxy. A chain that would
// terminate TLS (a transport socket) is refused: the gateway holds no workload's key.
func gatewayRoutes(l *listenerv3.Listener) (map[string]*Route, error) {
	if l.GetDefaultFilterChain() != nil {
		return nil, errors.New("a gateway has no default filter chain: a server name it does not serve is refused")
	}
	out := map[string]*Route{}
	for _, fc := range l.GetFilterChains() {
		m := fc.GetFilterChainMatch()
		if m.GetTransportProtocol() != "tls" || len(m.GetServerNames()) == 0 {
			return nil, fmt.Errorf("filter chain %q: a gateway chain matches transport protocol tls and at least one server name", fc.GetName())
		}
		if fc.GetTransportSocket() != nil {
			return nil, fmt.Errorf("filter chain %q: a gateway passes mTLS through; a transport socket would terminate it", fc.GetName())
		}
		r, err := chainRoute(fc)
		if err != nil {
			return nil, err
		}
		if r.HTTP {
			return nil, fmt.Errorf("filter chain %q: a gateway chain is a tcp_proxy", fc.GetName())
		}
		for _, name := range m.GetServerNames() {
			if strings.HasPrefix(name, "*") {
				return nil, fmt.Errorf("filter chain %q: server name %q: wildcards are not supported", fc.GetName(), name)
			}
			if _, dup := out[name]; dup {
				return nil, fmt.Errorf("filter chain %q: server name %q is matched by two chains", fc.GetName(), name)
			}
			out[name] = r
		}
	}
	return out, nil
}

func outboundRoutes(l *listenerv3.Listener) (map[netip.AddrPort]*Route, error) {
	out := map[netip.AddrPort]*Route{}
	for _, fc := range l.GetFilterChains() {
		m := fc.GetFilterChainMatch()
		port := m.GetDestinationPort().GetValue()
		if port == 0 || port > 65535 || len(m.GetPrefixRanges()) == 0 {
			return nil, fmt.Errorf("filter chain %q: a destination port and an address are required", fc.GetName())
		}
		r, err := chainRoute(fc)
		if err != nil {
			return nil, err
		}
		for _, pr := range m.GetPrefixRanges() {
			ip, err := netip.ParseAddr(pr.GetAddressPrefix())
			if err != nil || int(pr.GetPrefixLen().GetValue()) != ip.BitLen() {
				return nil, fmt.Errorf("filter chain %q: prefix %s/%d: only single addresses are supported", fc.GetName(), pr.GetAddressPrefix(), pr.GetPrefixLen().GetValue())
			}
			out[netip.AddrPortFrom(ip.Unmap(), uint16(port))] = r
		}
	}
	return out, nil
}

func chainRoute(fc *listenerv3.FilterChain) (*Route, error) {
	if len(fc.GetFilters()) != 1 {
		return nil, fmt.Errorf("filter chain %q: want exactly one filter, got %d", fc.GetName(), len(fc.GetFilters()))
	}
	f := fc.GetFilters()[0]
	switch f.GetName() {
	case wellknown.TCPProxy:
		tp := &tcpproxyv3.TcpProxy{}
		if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
			return nil, fmt.Errorf("filter chain %q: %w", fc.GetName(), err)
		}
		if tp.GetCluster() == "" {
			return nil, fmt.Errorf("filter chain %q: tcp_proxy without a cluster", fc.GetName())
		}
		return &Route{Chain: fc.GetName(), Cluster: tp.GetCluster(), Retries: 2}, nil
	case wellknown.HTTPConnectionManager:
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			return nil, fmt.Errorf("filter chain %q: %w", fc.GetName(), err)
		}
		vhs := hcm.GetRouteConfig().GetVirtualHosts()
		if len(vhs) != 1 || len(vhs[0].GetRoutes()) != 1 || vhs[0].GetRoutes()[0].GetRoute().GetCluster() == "" {
			return nil, fmt.Errorf("filter chain %q: want an inline route config of one route to one cluster", fc.GetName())
		}
		ra := vhs[0].GetRoutes()[0].GetRoute()
		timeout := 15 * time.Second // Envoy's when the route does not say
		if ra.GetTimeout() != nil {
			timeout = ra.GetTimeout().AsDuration()
		}
		return &Route{Chain: fc.GetName(), Cluster: ra.GetCluster(), HTTP: true, Retries: int(ra.GetRetryPolicy().GetNumRetries().GetValue()), Timeout: timeout}, nil
	}
	return nil, fmt.Errorf("filter chain %q: filter %q is not supported (want %s or %s)", fc.GetName(), f.GetName(), wellknown.TCPProxy, wellknown.HTTPConnectionManager)
}

// inboundPolicy reads the network RBAC filter of the inbound chains (they all carry the same).
func inboundPolicy(l *listenerv3.Listener) (*Policy, error) {
	var policy *Policy
	for _, fc := range l.GetFilterChains() {
		if fc.GetFilterChainMatch().GetTransportProtocol() != "tls" || fc.GetTransportSocket() == nil {
			return nil, fmt.Errorf("filter chain %q: inbound chains must require TLS", fc.GetName())
		}
		for _, f := range fc.GetFilters() {
			if f.GetName() != wire.NetworkRBACFilterName {
				continue
			}
			rb := &netrbacv3.RBAC{}
			if err := f.GetTypedConfig().UnmarshalTo(rb); err != nil {
				return nil, fmt.Errorf("filter chain %q: %w", fc.GetName(), err)
			}
			p, err := rbacPolicy(rb.GetRules())
			if err != nil {
				return nil, fmt.Errorf("filter chain %q: %w", fc.GetName(), err)
			}
			policy = p
		}
	}
	if policy == nil {
		return nil, fmt.Errorf("no %s filter: refusing to accept inbound traffic without an authorization policy", wire.NetworkRBACFilterName)
	}
	for _, fc := range l.GetFilterChains() {
		m := fc.GetFilterChainMatch()
		port := m.GetDestinationPort().GetValue()
		if port == 0 {
			continue
		}
		if port > 65535 || !slices.Equal(m.GetApplicationProtocols(), []string{wire.InboundHTTPALPN}) {
			return nil, fmt.Errorf("filter chain %q: a port-specific inbound chain must be HTTP only (port 1-65535, ALPN %s)", fc.GetName(), wire.InboundHTTPALPN)
		}
		if policy.httpOnly == nil {
			policy.httpOnly = map[uint16]bool{}
		}
		policy.httpOnly[uint16(port)] = true
	}
	return policy, nil
}

func rbacPolicy(rules *rbacv3.RBAC) (*Policy, error) {
	if rules.GetAction() != rbacv3.RBAC_ALLOW {
		return nil, fmt.Errorf("RBAC action %s is not supported (want ALLOW)", rules.GetAction())
	}
	p := &Policy{}
	memo := regexpMemo{}
	for name, pol := range rules.GetPolicies() {
		// The proxy matches principals only: a permission narrower than "any" (a port, a
		// destination) would be silently widened, so it is refused.
		for _, perm := range pol.GetPermissions() {
			if !perm.GetAny() {
				return nil, fmt.Errorf("RBAC policy %q: only the permission \"any\" is supported, got %v", name, perm)
			}
		}
		for _, pr := range pol.GetPrincipals() {
			m := pr.GetAuthenticated().GetPrincipalName()
			if m == nil {
				return nil, fmt.Errorf("RBAC policy %q: only authenticated principal names are supported", name)
			}
			if err := p.add(m, memo); err != nil {
				return nil, fmt.Errorf("RBAC policy %q: %w", name, err)
			}
		}
	}
	return p, nil
}

// regexpMemo compiles each expression of one translation once: the clusters of one namespace
// all carry the same server identity expression, and a compiled one is safe to share.
type regexpMemo map[string]*regexp.Regexp

func (c regexpMemo) compile(expr string) (*regexp.Regexp, error) {
	if re := c[expr]; re != nil {
		return re, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	c[expr] = re
	return re, nil
}

// add adds a string matcher with Envoy's meaning: a safe_regex must match the whole string, an
// exact one is the whole string.
func (p *Policy) add(m *matcherv3.StringMatcher, memo regexpMemo) error {
	switch {
	case m.GetIgnoreCase():
		return fmt.Errorf("matcher %v: ignore_case is not supported", m)
	case m.GetPrefix() != "":
		p.prefixes = append(p.prefixes, m.GetPrefix())
	case m.GetSafeRegex().GetRegex() != "":
		re, err := memo.compile("^(?:" + m.GetSafeRegex().GetRegex() + ")$")
		if err != nil {
			return err
		}
		p.regexps = append(p.regexps, re)
	case m.GetExact() != "":
		p.exact = append(p.exact, m.GetExact())
	default:
		return fmt.Errorf("matcher %v is not supported", m)
	}
	return nil
}

// serverIDs reads the SPIFFE IDs an upstream TLS context accepts from its server (nil: any).
func serverIDs(tc *tlsv3.CommonTlsContext, memo regexpMemo) (*Policy, error) {
	sans := tc.GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	if len(sans) == 0 {
		return nil, nil
	}
	p := &Policy{}
	for _, san := range sans {
		if san.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			return nil, fmt.Errorf("subject alt name type %s is not supported (want URI)", san.GetSanType())
		}
		if err := p.add(san.GetMatcher(), memo); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Clusters translates Clusters: EDS clusters with SDS mTLS, ORIGINAL_DST clusters with it (a
// service's pods) and the ORIGINAL_DST passthroughs (no transport socket: left out).
func Clusters(cs []*clusterv3.Cluster) (map[string]*Cluster, error) {
	out := map[string]*Cluster{}
	memo := regexpMemo{}
	for _, c := range cs {
		if err := c.ValidateAll(); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
		}
		originalDst := false
		switch c.GetType() {
		case clusterv3.Cluster_ORIGINAL_DST:
			if c.GetTransportSocket() == nil {
				continue // the passthroughs: dialled at the original destination, unchanged
			}
			originalDst = true // a service's pods, with its mTLS
		case clusterv3.Cluster_EDS:
		default:
			return nil, fmt.Errorf("cluster %q: type %s is not supported", c.GetName(), c.GetType())
		}
		eds := c.GetEdsClusterConfig().GetServiceName()
		if eds == "" {
			eds = c.GetName()
		}
		outlier := outlierOf(c.GetOutlierDetection())
		if c.GetTransportSocket() == nil {
			out[c.GetName()] = &Cluster{Name: c.GetName(), EDSName: eds, Outlier: outlier, Plain: true}
			continue
		}
		up := &tlsv3.UpstreamTlsContext{}
		if c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up) != nil {
			return nil, fmt.Errorf("cluster %q: the transport socket must be an upstream TLS context", c.GetName())
		}
		alpn := ""
		if ps := up.GetCommonTlsContext().GetAlpnProtocols(); len(ps) > 0 {
			alpn = ps[0]
		}
		ids, err := serverIDs(up.GetCommonTlsContext(), memo)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
		}
		out[c.GetName()] = &Cluster{Name: c.GetName(), EDSName: eds, ALPN: alpn, Outlier: outlier, ServerIDs: ids, SNI: up.GetSni(), OriginalDst: originalDst}
	}
	return out, nil
}

// outlierOf reads a cluster's outlier detection, Envoy's defaults where a field is unset.
func outlierOf(od *clusterv3.OutlierDetection) Outlier {
	n := int(od.GetConsecutive_5Xx().GetValue())
	if od != nil && od.GetConsecutive_5Xx() == nil {
		n = 5 // Envoy's default
	}
	base := od.GetBaseEjectionTime().AsDuration()
	if od != nil && od.GetBaseEjectionTime() == nil {
		base = 30 * time.Second
	}
	return Outlier{ConsecutiveErrors: n, BaseEjectionTime: base}
}

// Endpoints translates ClusterLoadAssignments into priority levels of healthy hosts (draining
// hosts only when a level has no healthy one).
func Endpoints(clas []*endpointv3.ClusterLoadAssignment) (map[string][]Priority, error) {
	out := map[string][]Priority{}
	for _, cla := range clas {
		if err := cla.ValidateAll(); err != nil {
			return nil, fmt.Errorf("endpoints %q: %w", cla.GetClusterName(), err)
		}
		levels := map[uint32]*Priority{}
		for _, l := range cla.GetEndpoints() {
			lv := levels[l.GetPriority()]
			if lv == nil {
				lv = &Priority{Priority: l.GetPriority()}
				levels[l.GetPriority()] = lv
			}
			for _, e := range l.GetLbEndpoints() {
				switch e.GetHealthStatus() {
				case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
				default:
					continue
				}
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				ip, err := netip.ParseAddr(sa.GetAddress())
				if err != nil || sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
					return nil, fmt.Errorf("endpoints %q: address %s:%d is not an IP and port", cla.GetClusterName(), sa.GetAddress(), sa.GetPortValue())
				}
				lv.Hosts = append(lv.Hosts, netip.AddrPortFrom(ip.Unmap(), uint16(sa.GetPortValue())))
				lv.Weights = append(lv.Weights, max(e.GetLoadBalancingWeight().GetValue(), 1))
			}
		}
		var ps []Priority
		for _, lv := range levels {
			if len(lv.Hosts) > 0 {
				ps = append(ps, *lv)
			}
		}
		slices.SortFunc(ps, func(a, b Priority) int { return int(a.Priority) - int(b.Priority) })
		out[cla.GetClusterName()] = ps
	}
	return out, nil
}

// Bundles translates the validation Secret's SPIFFE validator into a bundle set.
func Bundles(secrets []*tlsv3.Secret) (*x509bundle.Set, error) {
	for _, s := range secrets {
		if s.GetName() != wire.ValidationSecretName {
			continue
		}
		if err := s.ValidateAll(); err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.GetName(), err)
		}
		cv := s.GetValidationContext().GetCustomValidatorConfig()
		if cv.GetName() != wire.SPIFFEValidatorName {
			return nil, fmt.Errorf("secret %q: want the %s validator", s.GetName(), wire.SPIFFEValidatorName)
		}
		cfg := &tlsv3.SPIFFECertValidatorConfig{}
		if err := cv.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.GetName(), err)
		}
		set := x509bundle.NewSet()
		for _, td := range cfg.GetTrustDomains() {
			id, err := spiffeid.TrustDomainFromString(td.GetName())
			if err != nil {
				return nil, fmt.Errorf("secret %q: trust domain %q: %w", s.GetName(), td.GetName(), err)
			}
			certs, err := parsePEM(td.GetTrustBundle().GetInlineBytes())
			if err != nil || len(certs) == 0 {
				return nil, fmt.Errorf("secret %q: trust domain %s: no X.509 authorities (%v)", s.GetName(), id, err)
			}
			set.Add(x509bundle.FromX509Authorities(id, certs))
		}
		return set, nil
	}
	return nil, fmt.Errorf("secret %q is missing", wire.ValidationSecretName)
}

func parsePEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
