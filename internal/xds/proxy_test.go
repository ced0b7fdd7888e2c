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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func testRoot(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func proxyInput(t testing.TB, svcs ...Service) Input {
	in := input(svcs...)
	in.TrustBundles = map[string][]*x509.Certificate{}
	for _, td := range []string{"a.fleet", "b.fleet", "c.fleet"} {
		in.TrustBundles[td] = []*x509.Certificate{testRoot(t, td)}
	}
	return in
}

func TestBuildProxy(t *testing.T) {
	gw := set("d", 1) // a member on another network: its gateway's address, never a pod chain
	gw.Gateway, gw.Endpoints[0].Address, gw.Ports[0].Port = true, "10.244.103.2", 15443
	echo := imported("demo", "echo", set("a", 1), set("b", 2), set("c", 1), gw)
	echo.IPs = []string{"10.96.200.1"}
	echo.Ports = []Port{{Name: "grpc", Port: 8080}, {Name: "tcp-echo", Port: 9000}, {Name: "dns", Port: 53, Protocol: "UDP"}}
	local := Service{Namespace: "demo", Name: "web", Scope: Local, IPs: []string{"10.96.0.10"},
		Ports: []Port{{Name: "web", Port: 80, AppProtocol: "http"}}}
	local.Endpoints = []EndpointSet{{Cluster: "a", Ports: []Port{{Name: "web", Port: 8081}}, Endpoints: []Endpoint{{Address: "10.244.0.9", Ready: true}}}}
	r, err := BuildProxy(proxyInput(t, echo, local))
	if err != nil {
		t.Fatalf("BuildProxy: %v", err)
	}
	out := byName[*listenerv3.Listener](t, r.Listeners.Items, OutboundListenerName)
	if !out.GetUseOriginalDst().GetValue() {
		t.Error("outbound listener does not use the original destination")
	}
	chains := map[string]*listenerv3.FilterChain{}
	for _, fc := range out.GetFilterChains() {
		chains[fc.GetName()] = fc
	}
	// grpc and tcp-echo of echo's clusterset IP, web's ClusterIP (no UDP); echo's pods by their
	// grpc target port in members a, b and c (not d's gateway), and web's pod.
	echoPods, webPods := "outbound|%d|pods|echo.demo.svc.clusterset.local", "outbound|8081|pods|web.demo.svc.cluster.local"
	want := []string{"10.96.0.10:80", "10.96.200.1:8080", "10.96.200.1:9000", webPods, fmt.Sprintf(echoPods, 9000), fmt.Sprintf(echoPods, 9001), fmt.Sprintf(echoPods, 9002)}
	if got := keys(chains); !slices.Equal(got, want) {
		t.Fatalf("outbound chains %v, want %v", got, want)
	}
	// A pod's chain goes to that pod alone (ORIGINAL_DST), with the service's mTLS, never ejected.
	hcm := &hcmv3.HttpConnectionManager{}
	up := &tlsv3.UpstreamTlsContext{}
	podCluster := fmt.Sprintf(echoPods, 9001)
	pods := chains[podCluster]
	var addrs []string
	for _, pr := range pods.GetFilterChainMatch().GetPrefixRanges() {
		addrs = append(addrs, fmt.Sprintf("%s/%d", pr.GetAddressPrefix(), pr.GetPrefixLen().GetValue()))
	}
	if pods.GetFilterChainMatch().GetDestinationPort().GetValue() != 9001 || !slices.Equal(addrs, []string{"10.244.1.1/32", "10.244.1.2/32"}) {
		t.Errorf("b's echo pods' chain matches port %d of %v, want 9001 of b's two pods", pods.GetFilterChainMatch().GetDestinationPort().GetValue(), addrs)
	}
	if err := pods.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("echo's grpc pod port is HTTP: %v", err)
	}
	if got := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster(); got != podCluster {
		t.Errorf("pod chain's route goes to %q, want %q", got, podCluster)
	}
	pc := byName[*clusterv3.Cluster](t, r.Clusters.Items, podCluster)
	if err := pc.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil || up.GetSni() != "" ||
		up.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetSafeRegex().GetRegex() != "^spiffe://[^/]+/ns/demo/sa/[^/]+$" {
		t.Errorf("pod cluster's TLS %v %v: want the service namespace's identities, no gateway SNI", up, err)
	}
	if pc.GetType() != clusterv3.Cluster_ORIGINAL_DST || pc.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED || pc.GetOutlierDetection() != nil || pc.GetEdsClusterConfig() != nil {
		t.Errorf("pod cluster %v: want ORIGINAL_DST, no EDS, no outlier ejection", pc)
	}
	grpcChain := chains["10.96.200.1:8080"]
	if grpcChain == nil || grpcChain.GetFilterChainMatch().GetDestinationPort().GetValue() != 8080 ||
		grpcChain.GetFilterChainMatch().GetPrefixRanges()[0].GetPrefixLen().GetValue() != 32 {
		t.Fatalf("chain 10.96.200.1:8080 = %v", grpcChain)
	}
	if err := grpcChain.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("grpc port is HTTP: %v", err)
	}
	route := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute()
	if route.GetCluster() != "outbound|8080||echo.demo.svc.clusterset.local" || route.GetRetryPolicy().GetNumRetries().GetValue() != 2 {
		t.Errorf("route %v", route)
	}
	tcp := &tcpproxyv3.TcpProxy{}
	if err := chains["10.96.200.1:9000"].GetFilters()[0].GetTypedConfig().UnmarshalTo(tcp); err != nil || tcp.GetCluster() != "outbound|9000||echo.demo.svc.clusterset.local" {
		t.Errorf("tcp-echo chain: %v %v", tcp, err)
	}
	if err := chains["10.96.0.10:80"].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Errorf("appProtocol http is HTTP: %v", err)
	}
	if err := out.GetDefaultFilterChain().GetFilters()[0].GetTypedConfig().UnmarshalTo(tcp); err != nil || tcp.GetCluster() != PassthroughCluster {
		t.Errorf("default chain %v %v", tcp, err)
	}

	c := byName[*clusterv3.Cluster](t, r.Clusters.Items, "outbound|8080||echo.demo.svc.clusterset.local")
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	combined := up.GetCommonTlsContext().GetCombinedValidationContext()
	if up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName() != CertSecretName ||
		combined.GetValidationContextSdsSecretConfig().GetName() != ValidationSecretName ||
		up.GetCommonTlsContext().GetAlpnProtocols()[0] != InboundHTTPALPN ||
		up.GetSni() != "outbound_.8080_._.echo.demo.svc.clusterset.local" {
		t.Errorf("upstream TLS %v", up)
	}
	// The server sidecar must present an identity of the service's namespace.
	sans := combined.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	if len(sans) != 1 || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_URI ||
		sans[0].GetMatcher().GetSafeRegex().GetRegex() != "^spiffe://[^/]+/ns/demo/sa/[^/]+$" {
		t.Errorf("upstream server identities %v", sans)
	}
	if c.GetOutlierDetection() == nil {
		t.Error("no outlier detection")
	}
	cla := byName[*endpointv3.ClusterLoadAssignment](t, r.Endpoints.Items, "outbound|8080||echo.demo.svc.clusterset.local")
	if got := cla.GetEndpoints()[0].GetPriority(); got != 0 || cla.GetEndpoints()[0].GetLocality().GetSubZone() != "a" {
		t.Errorf("local endpoints first at priority 0: %v", cla.GetEndpoints()[0])
	}

	in := byName[*listenerv3.Listener](t, r.Listeners.Items, InboundListenerName)
	// web's target port 8081 is HTTP: its chain names the port and takes HTTP only; then the
	// generic HTTP and TCP chains.
	if len(in.GetFilterChains()) != 3 || in.GetFilterChains()[0].GetName() != "inbound-http-8081" ||
		in.GetFilterChains()[0].GetFilterChainMatch().GetDestinationPort().GetValue() != 8081 ||
		in.GetFilterChains()[0].GetFilterChainMatch().GetApplicationProtocols()[0] != InboundHTTPALPN ||
		in.GetFilterChains()[1].GetFilterChainMatch().GetApplicationProtocols()[0] != InboundHTTPALPN {
		t.Errorf("inbound chains %v", in.GetFilterChains())
	}
	for _, fc := range in.GetFilterChains() {
		if fc.GetFilters()[0].GetName() != NetworkRBACFilterName || fc.GetFilterChainMatch().GetTransportProtocol() != "tls" {
			t.Errorf("inbound chain %s: RBAC first over TLS only: %v", fc.GetName(), fc)
		}
	}

	s := byName[*tlsv3.Secret](t, r.Secrets.Items, ValidationSecretName)
	spiffe := &tlsv3.SPIFFECertValidatorConfig{}
	if err := s.GetValidationContext().GetCustomValidatorConfig().GetTypedConfig().UnmarshalTo(spiffe); err != nil {
		t.Fatal(err)
	}
	if len(spiffe.GetTrustDomains()) != 3 || !strings.Contains(string(spiffe.GetTrustDomains()[0].GetTrustBundle().GetInlineBytes()), "BEGIN CERTIFICATE") {
		t.Errorf("SPIFFE validator %v", spiffe)
	}

	// Same input, same version; a changed endpoint changes only the endpoints' version.
	again, _ := BuildProxy(proxyInput(t, echo, local))
	if again.Listeners.Version != r.Listeners.Version || again.Clusters.Version != r.Clusters.Version {
		t.Error("versions are not stable")
	}
}

func TestBuildProxyRefusesBadInput(t *testing.T) {
	in := proxyInput(t)
	in.TrustBundles = nil
	if _, err := BuildProxy(in); err == nil || !strings.Contains(err.Error(), "trust bundles") {
		t.Errorf("no bundles: %v", err)
	}
	in = proxyInput(t, Service{Namespace: "demo", Name: "x", Scope: ClusterSet, IPs: []string{"not-an-ip"}, Ports: []Port{{Port: 80}}})
	if _, err := BuildProxy(in); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Errorf("bad IP: %v", err)
	}
}

func TestProtocolOf(t *testing.T) {
	for _, tc := range []struct {
		name, app string
		want      Protocol
	}{
		{"http", "", ProtocolHTTP}, {"http-web", "", ProtocolHTTP}, {"grpc", "", ProtocolHTTP}, {"http2", "", ProtocolHTTP},
		{"tcp", "", ProtocolTCP}, {"", "", ProtocolTCP}, {"httpx", "", ProtocolTCP}, {"web", "http", ProtocolHTTP},
		{"http", "tcp", ProtocolTCP}, {"x", "kubernetes.io/h2c", ProtocolHTTP}, {"postgres", "", ProtocolTCP},
	} {
		if got := ProtocolOf(tc.name, tc.app); got != tc.want {
			t.Errorf("ProtocolOf(%q, %q) = %s, want %s", tc.name, tc.app, got, tc.want)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// wire.RequestTimeoutAnnotation on a Service (its member's calls) or on a ServiceImport (from
// the export's exportedAnnotations) becomes the route timeout of the service's chains, its pods'
// included; a value that does not parse gives none and says why.
func TestRequestTimeoutAnnotation(t *testing.T) {
	routeTimeout := func(r *Resources, chain string) time.Duration {
		t.Helper()
		out := byName[*listenerv3.Listener](t, r.Listeners.Items, OutboundListenerName)
		for _, fc := range out.GetFilterChains() {
			if fc.GetName() != chain {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatalf("chain %s is not HTTP: %v", chain, err)
			}
			return hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetTimeout().AsDuration()
		}
		t.Fatalf("no chain %s", chain)
		return 0
	}
	eps := []*discoveryv1.EndpointSlice{slice("web", map[string]string{discoveryv1.LabelServiceName: "web"}, discoveryv1.Endpoint{Addresses: []string{"10.244.0.9"}})}
	eps[0].Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8081)}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web", Annotations: map[string]string{wire.RequestTimeoutAnnotation: "2500ms"}},
		Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.10"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	local := LocalService(svc, eps, memberA)
	si := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo", Annotations: map[string]string{wire.RequestTimeoutAnnotation: "1m"}},
		Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, IPs: []string{"241.0.0.7"}, Ports: []mcsv1beta1.ServicePort{{Name: "http", Port: 8080}}}}
	imported := ImportedService(si, nil, memberA)
	r, err := BuildProxy(proxyInput(t, local, imported))
	if err != nil {
		t.Fatal(err)
	}
	for chain, want := range map[string]time.Duration{"10.96.0.10:80": 2500 * time.Millisecond, "outbound|8081|pods|web.demo.svc.cluster.local": 2500 * time.Millisecond, "241.0.0.7:8080": time.Minute} {
		if got := routeTimeout(r, chain); got != want {
			t.Errorf("chain %s: route timeout %s, want %s", chain, got, want)
		}
	}
	for _, bad := range []string{"soon", "0s", "-1s", "25h"} {
		svc.Annotations[wire.RequestTimeoutAnnotation] = bad
		s := LocalService(svc, eps, memberA)
		if s.RequestTimeout != 0 || s.InvalidTimeout == nil || !strings.Contains(s.InvalidTimeout.Error(), wire.RequestTimeoutAnnotation) {
			t.Errorf("%q: timeout %s, error %v; want none, and an error naming the annotation", bad, s.RequestTimeout, s.InvalidTimeout)
		}
		if r, err := BuildProxy(proxyInput(t, s)); err != nil || routeTimeout(r, "10.96.0.10:80") != 0 {
			t.Errorf("%q: the service should build without a timeout: %v", bad, err)
		}
	}
}
