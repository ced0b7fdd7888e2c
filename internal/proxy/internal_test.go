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
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fleetmesh/fleetmesh/internal/inject"
)

// flakyListener fails its first Accepts as a process out of file descriptors does.
type flakyListener struct {
	net.Listener
	failures int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures > 0 {
		l.failures--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// A listener error that is not its closing (EMFILE under a flood) must not end the listener:
// the pod's captured traffic would have nowhere to go.
func TestServeKeepsAcceptingAfterAcceptErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(&flakyListener{Listener: l, failures: 3}, func(c *net.TCPConn) { _ = c.Close(); handled <- struct{}{} })
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	select {
	case <-handled:
	case err := <-done:
		t.Fatalf("serve returned after accept errors: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was never handled")
	}
	_ = l.Close()
	if err := <-done; err != nil {
		t.Errorf("serve after its listener closed: %v", err)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// An upstream that resets ends the splice, though the downstream client is idle and keeps its
// connection open: else two goroutines and two sockets would wait for it forever.
func TestSpliceEndsWhenTheUpstreamResets(t *testing.T) {
	app, down := tcpPair(t)    // the application's connection to the proxy
	up, upstream := tcpPair(t) // the proxy's connection to the upstream
	done := make(chan struct{})
	go func() { splice(down, up, NewMetrics(nil).tcp("outbound", "test")); close(done) }()
	_ = upstream.SetLinger(0)
	_ = upstream.Close() // RST
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("splice still running after the upstream reset")
	}
	_ = app.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := app.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the application's connection is still open: %v", err)
	}
}

func principal(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func allow(perm *rbacv3.Permission, ps ...*rbacv3.Principal) *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{"p": {Permissions: []*rbacv3.Permission{perm}, Principals: ps}}}
}

var anyPermission = &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}

// The RBAC translation keeps Envoy's meaning: a safe_regex matches the whole ID, and a policy
// narrower than the proxy can enforce is refused rather than widened.
func TestRBACTranslationKeepsEnvoysMeaning(t *testing.T) {
	re := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `spiffe://a\.fleet/ns/demo/sa/client`}}}
	p, err := rbacPolicy(allow(anyPermission, principal(re)))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{
		"spiffe://a.fleet/ns/demo/sa/client":      true,
		"spiffe://a.fleet/ns/demo/sa/client-evil": false,
		"spiffe://a.fleet/ns/demo/sa/clientele":   false,
	} {
		if got := p.Allows(spiffeid.RequireFromString(id)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", id, got, want)
		}
	}
	port := &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: 8080}}
	if _, err := rbacPolicy(allow(port, principal(re))); err == nil {
		t.Error("a permission on a port was accepted, and would have allowed every port")
	}
	folded := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://a.fleet/"}, IgnoreCase: true}
	if _, err := rbacPolicy(allow(anyPermission, principal(folded))); err == nil {
		t.Error("ignore_case was accepted")
	}
}

// A route's timeout is Envoy's: unset is 15 s, 0 is none.
func TestRouteTimeoutTranslation(t *testing.T) {
	for _, tc := range []struct {
		timeout *durationpb.Duration
		want    time.Duration
	}{{nil, 15 * time.Second}, {durationpb.New(0), 0}, {durationpb.New(2 * time.Second), 2 * time.Second}} {
		hcm := &hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			VirtualHosts: []*routev3.VirtualHost{{Routes: []*routev3.Route{{Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}, Timeout: tc.timeout,
			}}}}}},
		}}}
		a, err := anypb.New(hcm)
		if err != nil {
			t.Fatal(err)
		}
		r, err := chainRoute(&listenerv3.FilterChain{Name: "x", Filters: []*listenerv3.Filter{{Name: wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Timeout != tc.want {
			t.Errorf("route timeout %v: got %s, want %s", tc.timeout, r.Timeout, tc.want)
		}
	}
}

// The kubelet's rewritten tcpSocket and gRPC probes are run against the application.
func TestAppProbesTCPAndGRPC(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tcp.Close() }()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	_ = closed.Close()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(gl) }()
	defer gs.Stop()

	port := func(l net.Listener) int32 { return int32(l.Addr().(*net.TCPAddr).Port) }
	h := &appProbeHandler{client: &http.Client{Timeout: 2 * time.Second}, probes: inject.AppProbers{
		"/app-health/c/livez":    {Port: port(tcp), TCP: true},
		"/app-health/c/readyz":   {Port: port(closed), TCP: true},
		"/app-health/g/livez":    {Port: port(gl), GRPC: true},
		"/app-health/g/readyz":   {Port: port(gl), GRPC: true, Service: "down"},
		"/app-health/g/startupz": {Port: port(closed), GRPC: true},
	}}
	for path, want := range map[string]int{
		"/app-health/c/livez": 200, "/app-health/c/readyz": 503,
		"/app-health/g/livez": 200, "/app-health/g/readyz": 503, "/app-health/g/startupz": 503,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, path, nil))
		if rec.Code != want {
			body, _ := io.ReadAll(rec.Body)
			t.Errorf("%s: %d %s, want %s", path, rec.Code, body, strconv.Itoa(want))
		}
	}
}

type svidOf struct{ s *x509svid.SVID }

func (s svidOf) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

// An SVID past its NotAfter (the identity API away for its whole lifetime) makes the proxy not
// ready: every peer refuses it.
func TestReadyNeedsAnUnexpiredSVID(t *testing.T) {
	cfg := &Config{Outbound: map[netip.AddrPort]*Route{}, Inbound: &Policy{}, Bundles: x509bundle.NewSet()}
	for notAfter, want := range map[time.Time]bool{time.Now().Add(time.Hour): true, time.Now().Add(-time.Minute): false} {
		p := New(Options{SVID: svidOf{&x509svid.SVID{Certificates: []*x509.Certificate{{NotAfter: notAfter}}}}})
		p.SetConfig(cfg)
		if got := p.Ready(); got != want {
			t.Errorf("SVID valid until %s: Ready() = %v, want %v", notAfter.Format(time.RFC3339), got, want)
		}
	}
}

// A started trace context is W3C's version 00: a random trace ID and parent ID, sampled.
func TestNewTraceparentIsW3C(t *testing.T) {
	shape := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)
	seen := map[string]bool{}
	for range 100 {
		tp := newTraceparent()
		if !shape.MatchString(tp) || seen[tp] {
			t.Fatalf("traceparent %q: not W3C's shape, or repeated", tp)
		}
		seen[tp] = true
	}
}
