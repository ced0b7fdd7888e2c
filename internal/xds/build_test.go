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
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestBuildValidates builds representative fleets and runs every resource, and every config
// packed inside it, through the envoy module's generated validation.
func TestBuildValidates(t *testing.T) {
	terminating := set("b", 2)
	terminating.Endpoints[0].Ready, terminating.Endpoints[0].Terminating = false, true
	terminating.Endpoints[1].Ready, terminating.Endpoints[1].Serving = false, false
	named := imported("demo", "multi", set("a", 1), set("c", 1))
	named.Ports = append(named.Ports, Port{Name: "metrics", Port: 9090}, Port{Name: "dns", Port: 53, Protocol: "UDP"})
	named.Endpoints[0].Ports = append(named.Endpoints[0].Ports, Port{Name: "metrics", Port: 9091})
	withIPs := func(s Service, ips ...string) Service { s.IPs = ips; return s }
	authz := input(imported("demo", "echo", set("a", 2), set("d", 1)))
	authz.Policy.Authorization = Authorization{AllowedTrustDomains: []string{"a.fleet", "c.fleet"}, AllowedNamespaces: []string{"demo", "ops"}}
	ipv6 := set("a", 0)
	ipv6.Endpoints = []Endpoint{{Address: "fd00::1", Ready: true, Serving: true}}

	for name, in := range map[string]Input{
		"local only":                input(Service{Namespace: "demo", Name: "echo", Scope: Local, IPs: []string{"10.96.0.10"}, Ports: []Port{{Name: "grpc", Port: 8080}}, Endpoints: []EndpointSet{set("a", 3)}}),
		"one remote":                input(imported("demo", "echo", set("a", 2), set("b", 2))),
		"three remotes, regions":    input(imported("demo", "echo", set("a", 2), set("b", 2), set("c", 2), set("d", 2))),
		"remote only":               input(imported("demo", "echo", set("c", 2), set("d", 2))),
		"headless and clustersetip": input(imported("demo", "headless", set("a", 1)), withIPs(imported("demo", "vip", set("b", 1)), "241.0.0.7")),
		"named ports":               input(named),
		"no endpoints":              input(imported("demo", "empty")),
		"terminating":               input(imported("demo", "echo", set("a", 1), terminating)),
		"authorization":             authz,
		"ipv6":                      input(Service{Namespace: "demo", Name: "v6", Scope: Local, Ports: []Port{{Name: "grpc", Port: 8080}}, Endpoints: []EndpointSet{ipv6}}),
		"no services":               input(),
	} {
		t.Run(name, func(t *testing.T) {
			r := mustBuild(t, in)
			for typ, items := range r.ByType() {
				for _, res := range items {
					if err := validateDeep(res); err != nil {
						t.Errorf("%s %s: %v", typ, cache.GetResourceName(res), err)
					}
				}
			}
			if _, err := cache.NewSnapshot(r.Version, r.ByType()); err != nil {
				t.Error(err)
			}
			s := r.Snapshot()
			if got := s.GetVersion(resource.EndpointType); got != r.Endpoints.Version {
				t.Errorf("snapshot EDS version %q, want %q", got, r.Endpoints.Version)
			}
		})
	}
}

func names(items []types.Resource) []string {
	var out []string
	for _, r := range items {
		out = append(out, cache.GetResourceName(r))
	}
	return out
}

// TestNames checks the names proxyless gRPC asks for, and which server Listeners exist.
func TestNames(t *testing.T) {
	local := Service{Namespace: "demo", Name: "echo", Scope: Local, IPs: []string{"10.96.0.10"},
		Ports: []Port{{Name: "grpc", Port: 8080}, {Name: "dns", Port: 53, Protocol: "UDP"}}, Endpoints: []EndpointSet{set("a", 1)}}
	vip := imported("demo", "echo", set("a", 1), set("b", 1))
	vip.IPs = []string{"241.0.0.7"}
	r := mustBuild(t, input(local, vip))

	wantListeners := []string{
		"10.96.0.10:8080", "241.0.0.7:8080",
		"echo.demo.svc.cluster.local:8080", "echo.demo.svc.clusterset.local:8080",
		"grpc/server?xds.resource.listening_address=10.244.0.1:9000", // a's own endpoint only
	}
	if got := names(r.Listeners.Items); !slices.Equal(got, wantListeners) {
		t.Errorf("listeners %q, want %q", got, wantListeners)
	}
	wantClusters := []string{"echo.demo.svc.cluster.local:8080", "echo.demo.svc.clusterset.local:8080"}
	for _, items := range [][]types.Resource{r.Routes.Items, r.Clusters.Items, r.Endpoints.Items} {
		if got := names(items); !slices.Equal(got, wantClusters) {
			t.Errorf("got %q, want %q", got, wantClusters)
		}
	}

	// The VIP listener shares the name's routes, whose domains include both with the port.
	ipl := byName[*listenerv3.Listener](t, r.Listeners.Items, "241.0.0.7:8080")
	hcm := &hcmv3.HttpConnectionManager{}
	if err := ipl.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if got := hcm.GetRds().GetRouteConfigName(); got != "echo.demo.svc.clusterset.local:8080" {
		t.Errorf("VIP listener routes from %q", got)
	}
	if n := len(hcm.HttpFilters); n == 0 || hcm.HttpFilters[n-1].Name != "envoy.filters.http.router" {
		t.Errorf("client HCM must end with the router filter: %v", hcm.HttpFilters)
	}
	rc := byName[*routev3.RouteConfiguration](t, r.Routes.Items, "echo.demo.svc.clusterset.local:8080")
	wantDomains := []string{"echo.demo.svc.clusterset.local:8080", "echo.demo.svc.clusterset.local", "241.0.0.7:8080"}
	if got := rc.VirtualHosts[0].Domains; !slices.Equal(got, wantDomains) {
		t.Errorf("domains %q, want %q", got, wantDomains)
	}
	if rp := rc.VirtualHosts[0].Routes[0].GetRoute().GetRetryPolicy(); rp.GetRetryOn() != "unavailable" || rp.GetNumRetries().GetValue() != 2 {
		t.Errorf("retry policy %v", rp)
	}

	c := byName[*clusterv3.Cluster](t, r.Clusters.Items, "echo.demo.svc.clusterset.local:8080")
	if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil ||
		c.GetEdsClusterConfig().GetServiceName() != c.Name {
		t.Errorf("cluster is not EDS over ADS for itself: %v", c)
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	if up.CommonTlsContext.GetTlsCertificateProviderInstance().GetInstanceName() != DefaultCertProviderInstance ||
		up.CommonTlsContext.GetValidationContext().GetCaCertificateProviderInstance().GetInstanceName() != DefaultCertProviderInstance {
		t.Errorf("upstream TLS does not use the certificate provider: %v", up)
	}
}

// TestServerListener checks the server side: its address, mTLS with a client certificate
// required, and RBAC before the router.
func TestServerListener(t *testing.T) {
	in := input(imported("demo", "echo", set("a", 1)))
	in.CertProviderInstance = "spiffe"
	r := mustBuild(t, in)
	l := byName[*listenerv3.Listener](t, r.Listeners.Items, "grpc/server?xds.resource.listening_address=10.244.0.1:9000")
	if sa := l.GetAddress().GetSocketAddress(); sa.GetAddress() != "10.244.0.1" || sa.GetPortValue() != 9000 {
		t.Errorf("address %v", sa)
	}
	fc := l.FilterChains[0]
	down := &tlsv3.DownstreamTlsContext{}
	if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(down); err != nil {
		t.Fatal(err)
	}
	if !down.GetRequireClientCertificate().GetValue() ||
		down.CommonTlsContext.GetTlsCertificateProviderInstance().GetInstanceName() != "spiffe" ||
		down.CommonTlsContext.GetValidationContext().GetCaCertificateProviderInstance().GetInstanceName() != "spiffe" {
		t.Errorf("downstream TLS %v", down)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var filters []string
	for _, f := range hcm.HttpFilters {
		filters = append(filters, f.Name)
	}
	if want := []string{"envoy.filters.http.rbac", "envoy.filters.http.router"}; !slices.Equal(filters, want) {
		t.Errorf("filters %q, want %q", filters, want)
	}
	route := hcm.GetRouteConfig().VirtualHosts[0].Routes[0]
	if route.GetNonForwardingAction() == nil || route.GetMatch().GetPrefix() != "/" {
		t.Errorf("server route %v", route)
	}
}

// rules unpacks the RBAC rules of the server Listeners (all share one chain).
func rules(t *testing.T, r *Resources) *rbacv3.RBAC {
	t.Helper()
	for _, res := range r.Listeners.Items {
		l := res.(*listenerv3.Listener)
		if !strings.HasPrefix(l.Name, "grpc/server") {
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		f := &rbacfilterv3.RBAC{}
		if err := hcm.HttpFilters[0].GetTypedConfig().UnmarshalTo(f); err != nil {
			t.Fatal(err)
		}
		return f.Rules
	}
	t.Fatal("no server listener")
	return nil
}

// allows evaluates the rules the way gRPC does for these matchers: a prefix, or a regex found
// anywhere in the ID (gRPC's regex match is unanchored: the anchors must be in the pattern).
func allows(rules *rbacv3.RBAC, id string) bool {
	for _, p := range rules.Policies {
		for _, pr := range p.Principals {
			m := pr.GetAuthenticated().GetPrincipalName()
			if pfx := m.GetPrefix(); pfx != "" && strings.HasPrefix(id, pfx) {
				return true
			}
			if re := m.GetSafeRegex().GetRegex(); re != "" && regexp.MustCompile(re).MatchString(id) {
				return true
			}
		}
	}
	return false
}

func TestAuthorization(t *testing.T) {
	for _, tc := range []struct {
		name        string
		federated   []string
		authz       Authorization
		allow, deny []string
	}{{
		name:      "federated trust domains by default",
		federated: []string{"b.fleet"},
		allow:     []string{"spiffe://a.fleet/ns/x/sa/y", "spiffe://b.fleet/ns/demo/sa/echo"},
		deny:      []string{"spiffe://c.fleet/ns/demo/sa/echo", "spiffe://a.fleetx/ns/demo/sa/echo", "spiffe://b.fleet", "https://a.fleet/ns/x"},
	}, {
		name:      "allowed trust domains replace the federated ones",
		federated: []string{"b.fleet", "c.fleet"},
		authz:     Authorization{AllowedTrustDomains: []string{"c.fleet"}},
		allow:     []string{"spiffe://c.fleet/ns/x/sa/y"},
		deny:      []string{"spiffe://a.fleet/ns/x/sa/y", "spiffe://b.fleet/ns/x/sa/y"},
	}, {
		name:      "namespaces",
		federated: []string{"b.fleet"},
		authz:     Authorization{AllowedNamespaces: []string{"demo", "ops"}},
		allow:     []string{"spiffe://a.fleet/ns/demo/sa/echo", "spiffe://b.fleet/ns/ops/sa/x"},
		deny: []string{"spiffe://a.fleet/ns/demox/sa/echo", "spiffe://a.fleet/ns/other/sa/demo",
			"spiffe://aafleet/ns/demo/sa/echo", "spiffe://x.fleet/ns/demo/sa/echo", "spiffe://evil/spiffe://a.fleet/ns/demo/"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			in := input(imported("demo", "echo", set("a", 1)))
			in.FederatedTrustDomains, in.Policy.Authorization = tc.federated, tc.authz
			rs := rules(t, mustBuild(t, in))
			if rs.Action != rbacv3.RBAC_ALLOW {
				t.Fatalf("action %v", rs.Action)
			}
			for _, id := range tc.allow {
				if !allows(rs, id) {
					t.Errorf("%s denied", id)
				}
			}
			for _, id := range tc.deny {
				if allows(rs, id) {
					t.Errorf("%s allowed", id)
				}
			}
		})
	}
}

func TestBuildRefuses(t *testing.T) {
	for name, mutate := range map[string]func(*Input){
		"no trust domain":      func(in *Input) { in.Member.TrustDomain = "" },
		"no cluster":           func(in *Input) { in.Member.Cluster = "" },
		"bad allowed TD":       func(in *Input) { in.Policy.Authorization.AllowedTrustDomains = []string{"Bad TD"} },
		"bad namespace":        func(in *Input) { in.Policy.Authorization.AllowedNamespaces = []string{"a|b"} },
		"negative retries":     func(in *Input) { in.Policy.Failover.Retries = -1 },
		"bad endpoint address": func(in *Input) { in.Services[0].Endpoints[0].Endpoints[0].Address = "pod.example" },
		"bad IP":               func(in *Input) { in.Services[0].IPs = []string{"10.0.0"} },
		"duplicate service":    func(in *Input) { in.Services = append(in.Services, in.Services[0]) },
		"port out of range":    func(in *Input) { in.Services[0].Ports[0].Port = 70000 },
		"unknown scope":        func(in *Input) { in.Services[0].Scope = "svc.local" },
	} {
		t.Run(name, func(t *testing.T) {
			in := input(imported("demo", "echo", set("a", 1)))
			mutate(&in)
			if _, err := Build(in); err == nil {
				t.Error("Build accepted it")
			}
		})
	}
}

// loc is a locality's (priority, sub-zone = cluster, weight, endpoint count) for comparisons.
type loc struct {
	priority        uint32
	cluster         string
	weight, members int
}

func localities(t *testing.T, r *Resources, name string) []loc {
	var out []loc
	for _, l := range cla(t, r, name).Endpoints {
		out = append(out, loc{l.Priority, l.Locality.SubZone, int(l.LoadBalancingWeight.GetValue()), len(l.LbEndpoints)})
	}
	return out
}

// TestPriorities checks failover order: own endpoints, then the member's region, then the
// rest, numbered without gaps.
func TestPriorities(t *testing.T) {
	const name = "echo.demo.svc.clusterset.local:8080"
	for _, tc := range []struct {
		name string
		sets []EndpointSet
		want []loc
	}{
		{"all tiers", []EndpointSet{set("d", 1), set("c", 2), set("b", 3), set("a", 2)},
			[]loc{{0, "a", 2, 2}, {1, "b", 3, 3}, {2, "c", 2, 2}, {2, "d", 1, 1}}},
		{"no same-region remote", []EndpointSet{set("a", 1), set("c", 1)}, []loc{{0, "a", 1, 1}, {1, "c", 1, 1}}},
		{"no local endpoints", []EndpointSet{set("d", 1), set("b", 1)}, []loc{{0, "b", 1, 1}, {1, "d", 1, 1}}},
		{"local only", []EndpointSet{set("a", 3)}, []loc{{0, "a", 3, 3}}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := localities(t, mustBuild(t, input(imported("demo", "echo", tc.sets...))), name)
			if !slices.Equal(got, tc.want) {
				t.Errorf("localities %v, want %v", got, tc.want)
			}
		})
	}

	// A member without a region has no "same region": every other member is one tier.
	in := input(imported("demo", "echo", set("a", 1), set("b", 1), set("c", 1)))
	in.Member.Region = ""
	if got, want := localities(t, mustBuild(t, in), name), []loc{{0, "a", 1, 1}, {1, "b", 1, 1}, {1, "c", 1, 1}}; !slices.Equal(got, want) {
		t.Errorf("regionless member: %v, want %v", got, want)
	}
}

// TestHealth maps EndpointSlice conditions and weighs localities by healthy endpoints.
func TestHealth(t *testing.T) {
	s := set("b", 4)
	s.Endpoints[1].Ready, s.Endpoints[1].Terminating = false, true                                // serving, terminating
	s.Endpoints[2].Ready, s.Endpoints[2].Serving, s.Endpoints[2].Terminating = false, false, true // gone
	s.Endpoints[3].Ready, s.Endpoints[3].Serving = false, false                                   // not ready
	draining := set("c", 1)
	draining.Endpoints[0].Ready, draining.Endpoints[0].Terminating = false, true
	r := mustBuild(t, input(imported("demo", "echo", s, draining)))
	got := map[string]corev3.HealthStatus{}
	weights := map[string]uint32{}
	for _, l := range cla(t, r, "echo.demo.svc.clusterset.local:8080").Endpoints {
		weights[l.Locality.SubZone] = l.LoadBalancingWeight.GetValue()
		for _, e := range l.LbEndpoints {
			got[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = e.HealthStatus
		}
	}
	want := map[string]corev3.HealthStatus{
		"10.244.1.1": corev3.HealthStatus_HEALTHY, "10.244.1.2": corev3.HealthStatus_DRAINING,
		"10.244.2.1": corev3.HealthStatus_DRAINING,
	}
	if len(got) != len(want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	for a, h := range want {
		if got[a] != h {
			t.Errorf("%s: %v, want %v", a, got[a], h)
		}
	}
	if weights["b"] != 1 || weights["c"] != 1 {
		t.Errorf("weights %v: want 1 healthy for b, and at least 1 for all-draining c", weights)
	}
}

// TestDuplicateAddresses keeps one entry per address (gRPC NACKs duplicates): the nearest tier,
// then the healthiest.
func TestDuplicateAddresses(t *testing.T) {
	local, remote := set("a", 1), set("b", 1)
	remote.Endpoints[0].Address = local.Endpoints[0].Address
	remote.Ports = local.Ports
	dup := set("a", 1)
	dup.Endpoints[0].Ready, dup.Endpoints[0].Terminating = false, true
	got := localities(t, mustBuild(t, input(imported("demo", "echo", remote, dup, local))), "echo.demo.svc.clusterset.local:8080")
	if want := []loc{{0, "a", 1, 1}}; !slices.Equal(got, want) {
		t.Errorf("localities %v, want %v", got, want)
	}
	if h := cla(t, mustBuild(t, input(imported("demo", "echo", dup, local))), "echo.demo.svc.clusterset.local:8080").Endpoints[0].LbEndpoints[0].HealthStatus; h != corev3.HealthStatus_HEALTHY {
		t.Errorf("kept %v, want the healthy duplicate", h)
	}
}

func TestOutlierDetection(t *testing.T) {
	in := input(imported("demo", "echo", set("a", 1)))
	in.Policy.Failover = Failover{ConsecutiveErrors: 3, Interval: 500 * time.Millisecond, BaseEjectionTime: 5 * time.Second}
	r := mustBuild(t, in)
	od := byName[*clusterv3.Cluster](t, r.Clusters.Items, "echo.demo.svc.clusterset.local:8080").OutlierDetection
	if od.FailurePercentageRequestVolume.GetValue() != 3 || od.Consecutive_5Xx.GetValue() != 3 ||
		od.Interval.AsDuration() != 500*time.Millisecond || od.BaseEjectionTime.AsDuration() != 5*time.Second ||
		od.EnforcingFailurePercentage.GetValue() != 100 || od.FailurePercentageMinimumHosts.GetValue() != 1 ||
		od.MaxEjectionPercent.GetValue() != 100 || od.EnforcingSuccessRate == nil || od.EnforcingSuccessRate.GetValue() != 0 {
		t.Errorf("outlier detection %v", od)
	}
	if rp := byName[*routev3.RouteConfiguration](t, r.Routes.Items, "echo.demo.svc.clusterset.local:8080").VirtualHosts[0].Routes[0].GetRoute().RetryPolicy; rp != nil {
		t.Errorf("retries 0 must leave the retry policy out, got %v", rp)
	}

	// Zero values are the API defaults (2 errors, 1s, 15s).
	od = byName[*clusterv3.Cluster](t, mustBuild(t, input(imported("demo", "echo"))).Clusters.Items, "echo.demo.svc.clusterset.local:8080").OutlierDetection
	if od.FailurePercentageRequestVolume.GetValue() != 2 || od.Interval.AsDuration() != time.Second || od.BaseEjectionTime.AsDuration() != 15*time.Second {
		t.Errorf("defaults %v", od)
	}
}

// shuffled returns a deep copy of in with every list in a random order.
func shuffled(in Input, rnd *rand.Rand) Input {
	out := in
	out.FederatedTrustDomains = slices.Clone(in.FederatedTrustDomains)
	rnd.Shuffle(len(out.FederatedTrustDomains), func(i, j int) {
		out.FederatedTrustDomains[i], out.FederatedTrustDomains[j] = out.FederatedTrustDomains[j], out.FederatedTrustDomains[i]
	})
	out.Services = nil
	for _, s := range in.Services {
		s.Ports = slices.Clone(s.Ports)
		rnd.Shuffle(len(s.Ports), func(i, j int) { s.Ports[i], s.Ports[j] = s.Ports[j], s.Ports[i] })
		sets := make([]EndpointSet, 0, len(s.Endpoints))
		for _, es := range s.Endpoints {
			es.Endpoints = slices.Clone(es.Endpoints)
			rnd.Shuffle(len(es.Endpoints), func(i, j int) { es.Endpoints[i], es.Endpoints[j] = es.Endpoints[j], es.Endpoints[i] })
			sets = append(sets, es)
		}
		rnd.Shuffle(len(sets), func(i, j int) { sets[i], sets[j] = sets[j], sets[i] })
		s.Endpoints = sets
		out.Services = append(out.Services, s)
	}
	rnd.Shuffle(len(out.Services), func(i, j int) { out.Services[i], out.Services[j] = out.Services[j], out.Services[i] })
	return out
}

func TestDeterminism(t *testing.T) {
	in := fleet(20, 4, 3)
	in.Policy.Authorization.AllowedNamespaces = []string{"ns-1", "ns-0"}
	first := mustBuild(t, in)
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		r := mustBuild(t, shuffled(in, rnd))
		if r.Version != first.Version {
			t.Fatalf("version %s, want %s for the same input in another order", r.Version, first.Version)
		}
		for typ, items := range r.ByType() {
			for i, res := range items {
				if !proto.Equal(res, first.ByType()[typ][i]) {
					t.Fatalf("%s %d differs", typ, i)
				}
			}
		}
	}

	// One endpoint's condition changes only the EDS version.
	changed := shuffled(in, rnd)
	changed.Services[0].Endpoints[0].Endpoints[0].Ready = false
	r := mustBuild(t, changed)
	if r.Version == first.Version || r.Endpoints.Version == first.Endpoints.Version {
		t.Error("changing an endpoint kept the version")
	}
	if r.Listeners.Version != first.Listeners.Version || r.Routes.Version != first.Routes.Version || r.Clusters.Version != first.Clusters.Version {
		t.Error("changing an endpoint changed the LDS, RDS or CDS version")
	}
	// And Build never modified its input.
	if again := mustBuild(t, in); again.Version != first.Version {
		t.Error("Build changed its input")
	}
}

// TestValidateDeepSeesInsideAny makes sure the validation above looks into packed configs.
func TestValidateDeepSeesInsideAny(t *testing.T) {
	l := clientListener("x:1", "x:1")
	if err := validateDeep(l); err != nil {
		t.Fatal(err)
	}
	l.ApiListener.ApiListener = anyOf(&hcmv3.HttpConnectionManager{}) // no stat_prefix, no routes
	if err := validateDeep(l); err == nil {
		t.Error("an invalid HttpConnectionManager inside the api_listener passed")
	} else {
		t.Log(err)
	}
}
