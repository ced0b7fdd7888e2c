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

package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// hitApp is an HTTP application that counts the requests it receives, by method and path.
// On b, "/reset" reads the request and drops the connection without an answer (the app crashed
// while handling it); "/slow" answers after 300 ms; "/hang" never answers.
type hitApp struct {
	name string
	l    net.Listener
	srv  *http.Server
	mu   sync.Mutex
	hits map[string]int
}

func startHitApp(t *testing.T, name string) *hitApp {
	a := &hitApp{name: name, l: listen(t), hits: map[string]int{}}
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		a.hits[r.Method+" "+r.URL.Path]++
		a.mu.Unlock()
		switch r.URL.Path {
		case "/reset":
			if name != "b" {
				break
			}
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = c.Close()
			}
			return
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/hang":
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, name)
	})}
	go func() { _ = a.srv.Serve(a.l) }()
	t.Cleanup(func() { _ = a.srv.Close() })
	return a
}

func spiffeIDOf(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (a *hitApp) addr() netip.AddrPort { return a.l.Addr().(*net.TCPAddr).AddrPort() }

func (a *hitApp) count(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits[key]
}

// serverSidecar runs member m's server sidecar in front of the application at app, with an SVID
// of namespace ns, and gives it its config. It returns once the proxy has its config (before, it
// refuses connections, and a client sidecar would fail over from it).
func (f *fixture) serverSidecar(m *member, node, ns string, app netip.AddrPort) net.Listener {
	p, _, in, _ := f.startSidecarWith(m, node, proxy.Options{SVID: staticSVID{m.svid(f.t, ns, "echo")},
		OriginalDst: func(*net.TCPConn) (netip.AddrPort, error) { return app, nil }})
	f.setSnapshot(node, xds.Input{
		Member:                xds.Member{Cluster: m.name, TrustDomain: m.ca.TrustDomain().Name()},
		FederatedTrustDomains: []string{"a.fleet", "b.fleet", "c.fleet"},
		TrustBundles:          bundles(f.a, f.b, f.c),
	})
	eventually(f.t, node+"'s server sidecar configured", func() error {
		if !p.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	return in
}

// endpointsAt is member m's endpoints of a one-port service: its server sidecar's listener.
func endpointsAt(m, region, portName string, l net.Listener) xds.EndpointSet {
	return xds.EndpointSet{Cluster: m, Region: region, Ports: []xds.Port{{Name: portName, Port: portOf(l)}},
		Endpoints: []xds.Endpoint{{Address: "127.0.0.1", Ready: true, Serving: true}}}
}

// clientInput is member a's view of echo.demo (port httpPort, named portName) served by eps.
func (f *fixture) clientInput(portName string, failover xds.Failover, eps ...xds.EndpointSet) xds.Input {
	return xds.Input{
		Member:                xds.Member{Cluster: "a", Region: "r1", TrustDomain: "a.fleet"},
		FederatedTrustDomains: []string{"a.fleet", "b.fleet", "c.fleet"},
		TrustBundles:          bundles(f.a, f.b, f.c),
		Policy:                xds.Policy{Failover: failover},
		Services: []xds.Service{{Namespace: "demo", Name: "echo", Scope: xds.ClusterSet, IPs: []string{vip},
			Ports: []xds.Port{{Name: portName, Port: httpPort}}, Endpoints: eps}},
	}
}

// clientSidecar runs member a's client sidecar with opts; every outbound connection is to the
// service's virtual IP. It returns once the proxy has its config.
func (f *fixture) clientSidecar(node string, in xds.Input, opts proxy.Options) (*proxy.Proxy, net.Listener) {
	f.setSnapshot(node, in)
	opts.SVID = staticSVID{f.a.svid(f.t, "demo", "client")}
	opts.OriginalDst = func(*net.TCPConn) (netip.AddrPort, error) {
		return netip.MustParseAddrPort(fmt.Sprintf("%s:%d", vip, httpPort)), nil
	}
	p, out, _, _ := f.startSidecarWith(f.a, node, opts)
	eventually(f.t, "client sidecar configured", func() error {
		if !p.Ready() || len(p.Config().Endpoints) == 0 {
			return errors.New("not ready")
		}
		return nil
	})
	return p, out
}

func call(t *testing.T, hc *http.Client, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("payload"))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A request that reached an application is repeated only when its method is idempotent; one
// that never reached it (the application's port refused the connection) always may be.
func TestRetriesOnlyWhatIsSafeToRepeat(t *testing.T) {
	f := newFixture(t)
	appB, appC := startHitApp(t, "b"), startHitApp(t, "c")
	inB := f.serverSidecar(f.b, "b", "demo", appB.addr())
	inC := f.serverSidecar(f.c, "c", "demo", appC.addr())
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{Retries: 2, ConsecutiveErrors: 100},
		endpointsAt("b", "r1", "http", inB), endpointsAt("c", "r2", "http", inC)), proxy.Options{})
	hc := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + out.Addr().String()
	eventually(t, "b serves", func() error {
		if code, body := call(t, hc, http.MethodGet, base+"/"); code != 200 || body != "b" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})

	// b's application takes the POST and drops the connection: it may have acted on it.
	if code, _ := call(t, hc, http.MethodPost, base+"/reset"); code != http.StatusServiceUnavailable {
		t.Errorf("POST /reset: status %d, want 503 (not repeated elsewhere)", code)
	}
	if b, c := appB.count("POST /reset"), appC.count("POST /reset"); b != 1 || c != 0 {
		t.Errorf("POST /reset reached b %d and c %d times, want once and never", b, c)
	}
	// The same for a GET is repeated on c.
	if code, body := call(t, hc, http.MethodGet, base+"/reset"); code != 200 || body != "c" {
		t.Errorf("GET /reset: %d %q, want c's answer", code, body)
	}
	// b's application is gone: its port refuses, so a POST is safe to send to c.
	_ = appB.srv.Close()
	_ = appB.l.Close()
	if code, body := call(t, hc, http.MethodPost, base+"/ok"); code != 200 || body != "c" {
		t.Errorf("POST to a refused application port: %d %q, want c's answer", code, body)
	}
}

// The client sidecar checks the server's SPIFFE ID: a workload of another namespace at an
// endpoint's address is not the service, though its trust domain is federated.
func TestClientRefusesAServerOfAnotherNamespace(t *testing.T) {
	f := newFixture(t)
	appB, appC := startHitApp(t, "b"), startHitApp(t, "c")
	impostor := f.serverSidecar(f.b, "b", "other", appB.addr())
	inC := f.serverSidecar(f.c, "c", "demo", appC.addr())
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{Retries: 2},
		endpointsAt("b", "r1", "http", impostor), endpointsAt("c", "r2", "http", inC)), proxy.Options{})
	hc := &http.Client{Timeout: 5 * time.Second}
	// A POST too: a refused handshake is a connect failure, nothing was sent.
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodGet, http.MethodPost} {
		if code, body := call(t, hc, method, "http://"+out.Addr().String()+"/"); code != 200 || body != "c" {
			t.Errorf("%s: %d %q, want c's answer", method, code, body)
		}
	}
	if n := appB.count("GET /") + appB.count("POST /"); n != 0 {
		t.Errorf("the impostor's application got %d requests", n)
	}
}

// A client that gives up on a slow request says nothing about the host: it is not ejected.
func TestAClientsCancelDoesNotEjectAHealthyHost(t *testing.T) {
	f := newFixture(t)
	appB, appC := startHitApp(t, "b"), startHitApp(t, "c")
	inB := f.serverSidecar(f.b, "b", "demo", appB.addr())
	inC := f.serverSidecar(f.c, "c", "demo", appC.addr())
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{ConsecutiveErrors: 1, BaseEjectionTime: time.Minute},
		endpointsAt("b", "r1", "http", inB), endpointsAt("c", "r2", "http", inC)), proxy.Options{})
	base := "http://" + out.Addr().String()
	hc := &http.Client{Timeout: 5 * time.Second}
	eventually(t, "b serves", func() error {
		if code, body := call(t, hc, http.MethodGet, base+"/"); code != 200 || body != "b" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	impatient := &http.Client{Timeout: 50 * time.Millisecond}
	if _, err := impatient.Get(base + "/slow"); err == nil {
		t.Fatal("the slow request did not time out")
	}
	time.Sleep(100 * time.Millisecond) // the sidecar sees the cancel
	if code, body := call(t, hc, http.MethodGet, base+"/"); code != 200 || body != "b" {
		t.Errorf("after a client's cancel: %d %q, want b's answer (b not ejected)", code, body)
	}
}

// A route's timeout bounds a request: an application that never answers gets a 504.
func TestRouteTimeout(t *testing.T) {
	f := newFixture(t)
	appB := startHitApp(t, "b")
	inB := f.serverSidecar(f.b, "b", "demo", appB.addr())
	in := f.clientInput("http", xds.Failover{Retries: 2}, endpointsAt("b", "r1", "http", inB))
	p, out := f.clientSidecar("a", in, proxy.Options{})
	vipPort := netip.MustParseAddrPort(fmt.Sprintf("%s:%d", vip, httpPort))
	if got := p.Config().Outbound[vipPort].Timeout; got != 0 {
		t.Errorf("the agent's route timeout is %s, want none", got)
	}

	// The same resources with a 200 ms route timeout.
	res, err := xds.BuildProxy(in)
	if err != nil {
		t.Fatal(err)
	}
	var listeners []types.Resource
	for _, item := range res.Listeners.Items {
		l := item.(*listenerv3.Listener)
		if l.GetName() == xds.OutboundListenerName {
			l = setRouteTimeout(t, l, 200*time.Millisecond)
		}
		listeners = append(listeners, l)
	}
	snap := res.Snapshot()
	snap.Resources[cachev3.GetResponseType(resourcev3.ListenerType)] = cachev3.NewResources("timeout", listeners)
	if err := f.snapshots.SetSnapshot(context.Background(), "a", snap); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the timeout in use", func() error {
		if got := p.Config().Outbound[vipPort].Timeout; got != 200*time.Millisecond {
			return fmt.Errorf("timeout %s", got)
		}
		return nil
	})
	start := time.Now()
	code, _ := call(t, &http.Client{Timeout: 5 * time.Second}, http.MethodGet, "http://"+out.Addr().String()+"/hang")
	if code != http.StatusGatewayTimeout || time.Since(start) > 2*time.Second {
		t.Errorf("GET /hang: %d after %s, want 504 after about 200ms", code, time.Since(start))
	}
}

func setRouteTimeout(t *testing.T, l *listenerv3.Listener, d time.Duration) *listenerv3.Listener {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		f := fc.GetFilters()[0]
		if f.GetName() != "envoy.filters.network.http_connection_manager" {
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().Timeout = durationpb.New(d)
		a, err := anypb.New(hcm)
		if err != nil {
			t.Fatal(err)
		}
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
	return l
}

// gRPC (a port named grpc: HTTP) goes through both sidecars: unary, and a bidirectional stream
// whose client keeps its side open while it waits for the answer.
func TestGRPCThroughTheSidecars(t *testing.T) {
	f := newFixture(t)
	gl := listen(t)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	reflection.Register(gs)
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	inB := f.serverSidecar(f.b, "b", "demo", gl.Addr().(*net.TCPAddr).AddrPort())
	_, out := f.clientSidecar("a", f.clientInput("grpc", xds.Failover{Retries: 2}, endpointsAt("b", "r1", "grpc", inB)), proxy.Options{})

	conn, err := grpc.NewClient(out.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("unary health check through the sidecars: %v %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	got, err := stream.Recv() // the request stream is still open
	if err != nil || len(got.GetListServicesResponse().GetService()) == 0 {
		t.Fatalf("bidirectional stream through the sidecars: %v %v", got, err)
	}
}

// A flood of connections toward an upstream that never answers holds at most MaxConnecting
// connection attempts; the others are closed at once, and everything ends.
func TestFloodToADeadUpstreamIsBounded(t *testing.T) {
	f := newFixture(t)
	var inFlight, peak atomic.Int32
	blackhole := func(ctx context.Context, _, _ string) (net.Conn, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-ctx.Done() // SYNs into the void
		return nil, ctx.Err()
	}
	dead := xds.EndpointSet{Cluster: "b", Region: "r1", Ports: []xds.Port{{Name: "tcp", Port: 1}},
		Endpoints: []xds.Endpoint{{Address: "127.0.0.1", Ready: true, Serving: true}}}
	_, out := f.clientSidecar("a", f.clientInput("tcp", xds.Failover{Retries: 2}, dead),
		proxy.Options{Dial: blackhole, MaxConnecting: 4, ConnectTimeout: 300 * time.Millisecond})

	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	var ended atomic.Int32
	for range 64 {
		wg.Go(func() {
			c, err := net.Dial("tcp", out.Addr().String())
			if err != nil {
				return
			}
			defer func() { _ = c.Close() }()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
				ended.Add(1)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 4 {
		t.Errorf("%d connection attempts in flight at once, want at most MaxConnecting 4", p)
	}
	if n := ended.Load(); n != 64 {
		t.Errorf("%d of 64 connections closed by the proxy", n)
	}
	eventually(t, "the flood's goroutines gone", func() error {
		if n := runtime.NumGoroutine(); n > before+10 {
			return fmt.Errorf("%d goroutines, %d before the flood", n, before)
		}
		return nil
	})
}

// A connection sent straight to the inbound listener's own port (which the capture leaves
// alone) is closed at once rather than looped back into the listener.
func TestInboundRefusesItsOwnAddress(t *testing.T) {
	f := newFixture(t)
	var self atomic.Pointer[netip.AddrPort]
	p, _, in, _ := f.startSidecarWith(f.b, "b", proxy.Options{SVID: staticSVID{f.b.svid(t, "demo", "echo")},
		OriginalDst: func(c *net.TCPConn) (netip.AddrPort, error) { return *self.Load(), nil }})
	ap := in.Addr().(*net.TCPAddr).AddrPort()
	self.Store(&ap)
	f.setSnapshot("b", xds.Input{Member: xds.Member{Cluster: "b", TrustDomain: "b.fleet"},
		FederatedTrustDomains: []string{"b.fleet"}, TrustBundles: bundles(f.b)})
	eventually(t, "b's sidecar configured", func() error {
		if !p.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	c, err := net.Dial("tcp", in.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetReadDeadline(time.Now().Add(time.Second)) // well before the 10 s handshake timeout
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read: %v, want EOF (closed at once)", err)
	}
}

// A policy change applies to the next request, also on a client sidecar's pooled connection.
func TestInboundAuthorizesEveryRequest(t *testing.T) {
	f := newFixture(t)
	appB := startHitApp(t, "b")
	pb, _, inB, _ := f.startSidecarWith(f.b, "b", proxy.Options{SVID: staticSVID{f.b.svid(t, "demo", "echo")},
		OriginalDst: func(*net.TCPConn) (netip.AddrPort, error) { return appB.addr(), nil }})
	serverIn := xds.Input{Member: xds.Member{Cluster: "b", TrustDomain: "b.fleet"},
		FederatedTrustDomains: []string{"a.fleet", "b.fleet", "c.fleet"}, TrustBundles: bundles(f.a, f.b, f.c)}
	f.setSnapshot("b", serverIn)
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{}, endpointsAt("b", "r1", "http", inB)), proxy.Options{})
	hc := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + out.Addr().String()
	eventually(t, "b serves a", func() error {
		if code, body := call(t, hc, http.MethodGet, base+"/"); code != 200 || body != "b" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	served := appB.count("GET /")

	serverIn.Policy.Authorization.AllowedTrustDomains = []string{"c.fleet"}
	f.setSnapshot("b", serverIn)
	client := spiffeIDOf(t, "spiffe://a.fleet/ns/demo/sa/client")
	eventually(t, "b's new policy", func() error {
		if pb.Config().Inbound.Allows(client) {
			return errors.New("a is still allowed")
		}
		return nil
	})
	if code, _ := call(t, hc, http.MethodGet, base+"/"); code != http.StatusForbidden {
		t.Errorf("after a's authorization was withdrawn: status %d, want 403", code)
	}
	if n := appB.count("GET /"); n != served {
		t.Errorf("the application served %d more requests after a's authorization was withdrawn", n-served)
	}
}

func TestAnHTTPOnlyInboundPortRefusesOpaqueTCP(t *testing.T) {
	f := newFixture(t)
	appB := startApp(t, "b")
	appAddr := appB.http.Addr().(*net.TCPAddr).AddrPort()
	pb, _, inB, _ := f.startSidecar(f.b, "b-echo", "echo", func(*net.TCPConn) (netip.AddrPort, error) { return appAddr, nil })
	// b's own Service declares the app's port HTTP: inbound, only HTTP from a sidecar may reach it.
	f.setSnapshot("b-echo", xds.Input{
		Member: xds.Member{Cluster: "b", TrustDomain: "b.fleet"}, FederatedTrustDomains: []string{"a.fleet", "b.fleet"},
		TrustBundles: bundles(f.a, f.b),
		Services: []xds.Service{{Namespace: "demo", Name: "echo", Scope: xds.Local, Ports: []xds.Port{{Name: "http", Port: 80}},
			Endpoints: []xds.EndpointSet{{Cluster: "b", Ports: []xds.Port{{Name: "http", Port: int32(appAddr.Port())}},
				Endpoints: []xds.Endpoint{{Address: "127.0.0.1", Ready: true}}}}}},
	})
	svid := f.a.svid(t, "demo", "client")
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	// An authorized caller over the opaque TCP ALPN, trying to hand the app a forged identity.
	forged := func() (string, error) {
		conn, err := tls.Dial("tcp", inB.Addr().String(), &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, //nolint:gosec // the server's verdict is what is tested
			NextProtos: []string{xds.InboundTCPALPN}})
		if err != nil {
			return "", err
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n" + proxy.HeaderXFCC + ": URI=spiffe://b.fleet/ns/admin/sa/root\r\n\r\n")); err != nil {
			return "", err
		}
		b, err := io.ReadAll(conn)
		return string(b), err
	}
	eventually(t, "b's sidecar configured", func() error {
		if c := pb.Config(); c == nil || !c.Inbound.HTTPOnly(appAddr.Port()) {
			return fmt.Errorf("port %d not HTTP-only yet", appAddr.Port())
		}
		return nil
	})
	eventually(t, "b's sidecar refuses opaque TCP to the HTTP port", func() error {
		got, err := forged()
		if err == nil && got == "" {
			return nil // closed without an answer
		}
		return fmt.Errorf("answer %q, error %v", got, err)
	})
}

// lockedBuffer is an access log a test reads while the proxy writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAccessLogWritesAJSONLinePerRequest(t *testing.T) {
	f := newFixture(t)
	app := startHitApp(t, "b")
	in := f.serverSidecar(f.b, "b-echo", "demo", app.addr())
	log := &lockedBuffer{}
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{Retries: 1}, endpointsAt("b", "r1", "http", in)), proxy.Options{AccessLog: log})
	if code, _ := call(t, &http.Client{Timeout: 5 * time.Second}, http.MethodGet, "http://"+out.Addr().String()+"/hello"); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	// The line is written once the response is sent: the client may have it first.
	var entry map[string]any
	eventually(t, "the access log line", func() error {
		return json.Unmarshal([]byte(strings.TrimSpace(log.String())), &entry)
	})
	if entry["direction"] != "outbound" || entry["method"] != "GET" || entry["path"] != "/hello" || entry["status"] != float64(200) ||
		!strings.HasPrefix(fmt.Sprint(entry["traceparent"]), "00-") || entry["destination"] != "outbound|8080||echo.demo.svc.clusterset.local" {
		t.Errorf("access log entry %v", entry)
	}
}

func TestInboundRefusesAnExpiredSVID(t *testing.T) {
	f := newFixture(t)
	// Member a's CA, whose issuer signed an SVID valid from 2 h ago until 1 h ago.
	td := spiffeid.RequireTrustDomainFromString("a.fleet")
	key, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := trust.SelfSign(td, key, time.Now().Add(-3*time.Hour), 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: time.Hour, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	old := &member{name: "a", ca: ca, iss: iss}
	expired := old.svid(t, "demo", "client")
	if !expired.Certificates[0].NotAfter.Before(time.Now()) {
		t.Fatalf("the SVID is not expired: %s", expired.Certificates[0].NotAfter)
	}
	app := startHitApp(t, "b")
	pb, _, in, _ := f.startSidecarWith(f.b, "b-echo", proxy.Options{SVID: staticSVID{f.b.svid(t, "demo", "echo")},
		OriginalDst: func(*net.TCPConn) (netip.AddrPort, error) { return app.addr(), nil }})
	f.setSnapshot("b-echo", xds.Input{Member: xds.Member{Cluster: "b", TrustDomain: "b.fleet"}, FederatedTrustDomains: []string{"a.fleet", "b.fleet"},
		TrustBundles: bundles(old, f.b)})
	eventually(t, "b's sidecar configured", func() error {
		if !pb.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	cert := tls.Certificate{PrivateKey: expired.PrivateKey}
	for _, c := range expired.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	conn, err := tls.Dial("tcp", in.Addr().String(), &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, //nolint:gosec // the server's verdict is what is tested
		NextProtos: []string{xds.InboundTCPALPN}})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Read(make([]byte, 1)) // TLS 1.3: the server's refusal arrives with the first read
		_ = conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("an expired SVID got through: %v", err)
	}
}

// A response of declared length that the application sends in parts reaches the client part by
// part through both sidecars: only the part that completes it waits for the response's end.
func TestAResponseOfKnownLengthIsNotHeldBack(t *testing.T) {
	f := newFixture(t)
	second := make(chan struct{})
	l := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "hello")
		http.NewResponseController(w).Flush() //nolint:errcheck // the client's read is the check
		select {
		case <-second: // the client has read the first part
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "world")
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	in := f.serverSidecar(f.b, "b", "demo", l.Addr().(*net.TCPAddr).AddrPort())
	_, out := f.clientSidecar("a", f.clientInput("http", xds.Failover{}, endpointsAt("b", "r1", "http", in)), proxy.Options{})

	resp, err := (&http.Client{Timeout: 15 * time.Second}).Get("http://" + out.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.ContentLength != 10 {
		t.Errorf("content length %d, want 10", resp.ContentLength)
	}
	first := make([]byte, 5)
	start := time.Now()
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "hello" {
		t.Fatalf("first part: %q, %v", first, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the first part arrived after %s: held back until the application's timeout", d)
	}
	close(second)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "world" {
		t.Errorf("second part: %q, %v", rest, err)
	}
}
