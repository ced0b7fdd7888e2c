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
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// A small mesh in one process, on 127.0.0.1: member a's client sidecar, the server sidecars of
// members b and c in front of one application each, and an xDS server serving BuildProxy's
// resources. Captures are stood in for by OriginalDst functions: the client's outbound listener
// maps every connection to the service's virtual IP, a server's inbound listener to its app.

const (
	vip      = "127.0.0.50" // loopback: a passthrough by mistake goes nowhere
	httpPort = 8080
	tcpPort  = 9000
)

type member struct {
	name string
	ca   *trust.CA
	iss  *trust.Issuer
}

func newMember(t testing.TB, name string) *member {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(name + ".fleet")
	key, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := trust.SelfSign(td, key, time.Now(), 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return &member{name: name, ca: ca, iss: iss}
}

func (m *member) svid(t testing.TB, ns, sa string) *x509svid.SVID {
	t.Helper()
	s, err := m.iss.NewSVID(trust.Workload{Namespace: ns, ServiceAccount: sa})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type staticSVID struct{ s *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func portOf(l net.Listener) int32 { return int32(l.Addr().(*net.TCPAddr).Port) }

// app is a plain HTTP server and TCP echo: what a user runs, knowing nothing of the mesh.
type app struct {
	name      string
	http, tcp net.Listener
	srv       *http.Server
}

func startApp(t *testing.T, name string) *app {
	a := &app{name: name, http: listen(t), tcp: listen(t)}
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Member", name)
		_ = json.NewEncoder(w).Encode(map[string]string{"member": name, "xfcc": r.Header.Get(proxy.HeaderXFCC), "traceparent": r.Header.Get(proxy.HeaderTraceparent)})
	})}
	go func() { _ = a.srv.Serve(a.http) }()
	go func() {
		for {
			c, err := a.tcp.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() { _ = a.srv.Close() })
	return a
}

func (a *app) stop() { _ = a.srv.Close(); _ = a.http.Close(); _ = a.tcp.Close() }

type fixture struct {
	t         testing.TB
	a, b, c   *member
	snapshots cachev3.SnapshotCache
	xdsAddr   string
	inbound   map[string]net.Listener // server sidecar inbound listeners by member
	// registries hold each sidecar's metrics, by node.
	registries map[string]*prometheus.Registry
	// delta makes the sidecars' ADS clients incremental.
	delta bool
	// nacks are the error details of the rejections the xDS server received, as an agent logs them.
	nacksMu sync.Mutex
	nacks   []string
}

func (f *fixture) nacked(d interface{ GetMessage() string }) {
	if d == nil {
		return
	}
	f.nacksMu.Lock()
	defer f.nacksMu.Unlock()
	f.nacks = append(f.nacks, d.GetMessage())
}

// nackReasons are the messages of the rejections the xDS server has received so far.
func (f *fixture) nackReasons() []string {
	f.nacksMu.Lock()
	defer f.nacksMu.Unlock()
	return slices.Clone(f.nacks)
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{t: t, a: newMember(t, "a"), b: newMember(t, "b"), c: newMember(t, "c"), inbound: map[string]net.Listener{}, registries: map[string]*prometheus.Registry{}}
	f.snapshots = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	srv := serverv3.NewServer(context.Background(), f.snapshots, serverv3.CallbackFuncs{
		StreamRequestFunc:      func(_ int64, r *discoveryv3.DiscoveryRequest) error { f.nacked(r.GetErrorDetail()); return nil },
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error { f.nacked(r.GetErrorDetail()); return nil },
	})
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	l := listen(t)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	f.xdsAddr = l.Addr().String()
	return f
}

// startSidecar runs a proxy of member m with the given original-destination mapping and
// returns its outbound and inbound listeners.
func (f *fixture) startSidecar(m *member, node, sa string, dst func(*net.TCPConn) (netip.AddrPort, error)) (*proxy.Proxy, net.Listener, net.Listener, *atomic.Int32) {
	return f.startSidecarWith(m, node, proxy.Options{SVID: staticSVID{m.svid(f.t, "demo", sa)}, OriginalDst: dst})
}

// startSidecarWith is startSidecar with the proxy's options given (metrics and log are set here;
// the metrics are gathered by f.registries[node]).
func (f *fixture) startSidecarWith(m *member, node string, opts proxy.Options) (*proxy.Proxy, net.Listener, net.Listener, *atomic.Int32) {
	t := f.t
	reg := prometheus.NewRegistry()
	f.registries[node] = reg
	metrics := proxy.NewMetrics(reg)
	nacks := &atomic.Int32{}
	opts.Metrics, opts.Log = metrics, logr.Discard()
	p := proxy.New(opts)
	f.follow(p, node, xds.ProxyRoleSidecar, func(typeURL string, _ error) { metrics.NACK(typeURL); nacks.Add(1) })
	out, in := listen(t), listen(t)
	go func() { _ = p.ServeOutbound(out) }()
	go func() { _ = p.ServeInbound(in) }()
	return p, out, in, nacks
}

// follow runs an ADS client of the fixture's xDS server for proxy p, as node of role.
func (f *fixture) follow(p *proxy.Proxy, node, role string, onNACK func(string, error)) {
	t := f.t
	conn, err := grpc.NewClient(f.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	md, _ := structpb.NewStruct(map[string]any{xds.ProxyMetadataKey: role})
	ads := &proxy.ADS{Conn: conn, Node: &corev3.Node{Id: node, Metadata: md}, Apply: p.SetConfig, Log: logr.Discard(), Delta: f.delta, OnNACK: onNACK}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = ads.Run(ctx) }()
}

func (f *fixture) setSnapshot(node string, in xds.Input) {
	f.t.Helper()
	f.setSnapshotOf(node, in, xds.BuildProxy)
}

// setSnapshotOf serves node the resources build makes of in.
func (f *fixture) setSnapshotOf(node string, in xds.Input, build func(xds.Input) (*xds.Resources, error)) {
	f.t.Helper()
	res, err := build(in)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.snapshots.SetSnapshot(context.Background(), node, res.Snapshot()); err != nil {
		f.t.Fatal(err)
	}
}

func bundles(ms ...*member) map[string][]*x509.Certificate {
	out := map[string][]*x509.Certificate{}
	for _, m := range ms {
		out[m.ca.TrustDomain().Name()] = m.ca.Roots()
	}
	return out
}

func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// endpointSet is member m's endpoints of the echo service: its server sidecar's inbound
// listener, on both ports.
func endpointSet(m string, l net.Listener, region string) xds.EndpointSet {
	return xds.EndpointSet{Cluster: m, Region: region,
		Ports:     []xds.Port{{Name: "http", Port: portOf(l)}, {Name: "tcp-echo", Port: portOf(l)}},
		Endpoints: []xds.Endpoint{{Address: "127.0.0.1", Ready: true, Serving: true}}}
}

func TestSidecarsCarryHTTPAndTCPWithMTLSAndFailover(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "state of the world", true: "delta"}[delta], func(t *testing.T) { sidecarsCarry(t, delta) })
	}
}

func sidecarsCarry(t *testing.T, delta bool) {
	f := newFixture(t)
	f.delta = delta
	appB, appC := startApp(t, "b"), startApp(t, "c")
	// Server sidecars: their inbound listener hands a connection to the app's port of the same
	// kind (the original destination a capture would have recorded).
	serverDst := func(a *app) func(*net.TCPConn) (netip.AddrPort, error) {
		return func(c *net.TCPConn) (netip.AddrPort, error) {
			// The client sidecar dials the inbound listener; which app port it meant is the
			// ALPN's business in real life (the original destination): here TCP clients use
			// their own listener, see below.
			return a.http.Addr().(*net.TCPAddr).AddrPort(), nil
		}
	}
	pB, _, inB, _ := f.startSidecar(f.b, "b-echo", "echo", serverDst(appB))
	pC, _, inC, _ := f.startSidecar(f.c, "c-echo", "echo", serverDst(appC))
	_ = inC
	// A separate pair of server sidecars stands for the TCP echo port.
	pTB, _, tinB, _ := f.startSidecar(f.b, "b-echo-tcp", "echo", func(*net.TCPConn) (netip.AddrPort, error) {
		return appB.tcp.Addr().(*net.TCPAddr).AddrPort(), nil
	})

	httpVIP := netip.MustParseAddrPort(fmt.Sprintf("%s:%d", vip, httpPort))
	tcpVIP := netip.MustParseAddrPort(fmt.Sprintf("%s:%d", vip, tcpPort))
	clientOut := listen(t)
	tcpOut := listen(t)
	clientDst := func(c *net.TCPConn) (netip.AddrPort, error) {
		if c.LocalAddr().String() == tcpOut.Addr().String() {
			return tcpVIP, nil
		}
		return httpVIP, nil
	}
	pa, out, _, _ := f.startSidecar(f.a, "a-client", "client", clientDst)
	_ = out
	go func() { _ = pa.ServeOutbound(clientOut) }()
	go func() { _ = pa.ServeOutbound(tcpOut) }()

	base := xds.Input{
		Member:                xds.Member{Cluster: "a", Region: "r1", TrustDomain: "a.fleet"},
		FederatedTrustDomains: []string{"a.fleet", "b.fleet", "c.fleet"},
		TrustBundles:          bundles(f.a, f.b, f.c),
		Policy:                xds.Policy{Failover: xds.Failover{Retries: 2, ConsecutiveErrors: 2}},
	}
	echo := xds.Service{Namespace: "demo", Name: "echo", Scope: xds.ClusterSet, IPs: []string{vip},
		Ports: []xds.Port{{Name: "http", Port: httpPort}}, Endpoints: []xds.EndpointSet{endpointSet("b", inB, "r1"), endpointSet("c", inC, "r2")}}
	echoTCP := xds.Service{Namespace: "demo", Name: "echo-tcp", Scope: xds.ClusterSet, IPs: []string{vip},
		Ports: []xds.Port{{Name: "tcp-echo", Port: tcpPort}}, Endpoints: []xds.EndpointSet{endpointSet("b", tinB, "r1")}}
	clientIn := base
	clientIn.Services = []xds.Service{echo, echoTCP}
	f.setSnapshot("a-client", clientIn)
	for _, n := range []struct{ node, cluster, td string }{{"b-echo", "b", "b.fleet"}, {"c-echo", "c", "c.fleet"}, {"b-echo-tcp", "b", "b.fleet"}} {
		in := base
		in.Member = xds.Member{Cluster: n.cluster, TrustDomain: n.td}
		f.setSnapshot(n.node, in)
	}

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func() (map[string]string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+clientOut.Addr().String()+"/", nil)
		req.Host = "echo.demo.svc.clusterset.local:8080"
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return nil, fmt.Errorf("status %d: %s %v", resp.StatusCode, b, resp.Header)
		}
		out := map[string]string{}
		return out, json.NewDecoder(resp.Body).Decode(&out)
	}
	var got map[string]string
	// Every sidecar configured first: a request before a server sidecar has its policy is
	// refused there and retried elsewhere, which is failover, not what this step checks.
	eventually(t, "every sidecar configured", func() error {
		for name, p := range map[string]*proxy.Proxy{"a": pa, "b": pB, "c": pC, "b-tcp": pTB} {
			if !p.Ready() {
				return fmt.Errorf("%s not ready", name)
			}
		}
		return nil
	})
	eventually(t, "HTTP through the sidecars", func() (err error) { got, err = get(); return err })
	if got["member"] != "b" {
		t.Errorf("served by %s, want b (priority 0: same region)", got["member"])
	}
	if !strings.Contains(got["xfcc"], "URI=spiffe://a.fleet/ns/demo/sa/client") || !strings.Contains(got["xfcc"], "By=spiffe://b.fleet/ns/demo/sa/echo") {
		t.Errorf("the app saw x-forwarded-client-cert %q", got["xfcc"])
	}
	if !strings.HasPrefix(got["traceparent"], "00-") {
		t.Errorf("no traceparent started: %q", got["traceparent"])
	}

	// TCP echo through the TCP route.
	eventually(t, "TCP through the sidecars", func() error {
		c, err := net.DialTimeout("tcp", tcpOut.Addr().String(), time.Second)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "ping\n" {
			return fmt.Errorf("echoed %q", buf)
		}
		return nil
	})

	// B's application dies: every request still succeeds, served by C.
	var (
		mu      sync.Mutex
		failed  int
		members = map[string]int{}
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			r, err := get()
			mu.Lock()
			if err != nil {
				failed++
				t.Logf("failed request: %v", err)
			} else {
				members[r["member"]]++
			}
			mu.Unlock()
		}
	})
	eventually(t, "requests flowing", func() error {
		mu.Lock()
		defer mu.Unlock()
		if members["b"] < 10 {
			return fmt.Errorf("%d answers from b", members["b"])
		}
		return nil
	})
	appB.stop()
	eventually(t, "failover to c", func() error {
		mu.Lock()
		defer mu.Unlock()
		if members["c"] < 50 {
			return fmt.Errorf("%d answers from c", members["c"])
		}
		return nil
	})
	close(done)
	wg.Wait()
	if failed != 0 {
		t.Errorf("%d requests failed across the failover, want 0", failed)
	}
	t.Logf("answers %v, failed %d", members, failed)
}

func TestInboundRefusesPlaintextForeignAndUnauthorizedPeers(t *testing.T) {
	f := newFixture(t)
	appB := startApp(t, "b")
	_, _, inB, _ := f.startSidecar(f.b, "b-echo", "echo", func(*net.TCPConn) (netip.AddrPort, error) {
		return appB.http.Addr().(*net.TCPAddr).AddrPort(), nil
	})
	in := xds.Input{
		Member: xds.Member{Cluster: "b", TrustDomain: "b.fleet"}, FederatedTrustDomains: []string{"a.fleet", "b.fleet", "c.fleet"},
		TrustBundles: bundles(f.a, f.b, f.c),
		// Only a's workloads may call b.
		Policy: xds.Policy{Authorization: xds.Authorization{AllowedTrustDomains: []string{"a.fleet"}}},
	}
	f.setSnapshot("b-echo", in)

	// Plaintext HTTP is refused: the connection is closed without an answer.
	eventually(t, "b's sidecar configured", func() error {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + inB.Addr().String() + "/")
		if err == nil {
			_ = resp.Body.Close()
			return fmt.Errorf("plaintext got status %d", resp.StatusCode)
		}
		return nil
	})
	// c is federated but not authorized; a rogue trust domain is not even federated.
	for _, caller := range []*member{f.c, newMember(t, "rogue")} {
		cIn := in
		cIn.Member = xds.Member{Cluster: caller.name, TrustDomain: caller.ca.TrustDomain().Name()}
		cIn.TrustBundles = bundles(f.a, f.b, f.c, caller)
		cIn.Services = []xds.Service{{Namespace: "demo", Name: "echo", Scope: xds.ClusterSet, IPs: []string{vip}, Ports: []xds.Port{{Name: "http", Port: httpPort}},
			Endpoints: []xds.EndpointSet{endpointSet("b", inB, "")}}}
		node := "client-" + caller.name
		f.setSnapshot(node, cIn)
		p, out, _, _ := f.startSidecar(caller, node, "client", func(*net.TCPConn) (netip.AddrPort, error) {
			return netip.MustParseAddrPort(fmt.Sprintf("%s:%d", vip, httpPort)), nil
		})
		eventually(t, "client sidecar configured", func() error {
			if !p.Ready() {
				return fmt.Errorf("not ready")
			}
			return nil
		})
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + out.Addr().String() + "/")
		if err != nil {
			t.Fatalf("%s: the client sidecar answers itself: %v", caller.name, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s: status %d, want 503 (refused by b's sidecar)", caller.name, resp.StatusCode)
		}
	}
}

func TestADSNACKsABadResponseAndKeepsTheLastGoodConfig(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "state of the world", true: "delta"}[delta], func(t *testing.T) { nacksBadResponse(t, delta) })
	}
}

func nacksBadResponse(t *testing.T, delta bool) {
	f := newFixture(t)
	f.delta = delta
	in := xds.Input{
		Member: xds.Member{Cluster: "a", TrustDomain: "a.fleet"}, FederatedTrustDomains: []string{"a.fleet"},
		TrustBundles: bundles(f.a),
		Services: []xds.Service{{Namespace: "demo", Name: "echo", Scope: xds.ClusterSet, IPs: []string{vip}, Ports: []xds.Port{{Name: "http", Port: httpPort}},
			Endpoints: []xds.EndpointSet{{Cluster: "a", Ports: []xds.Port{{Name: "http", Port: 1234}}, Endpoints: []xds.Endpoint{{Address: "10.0.0.1", Ready: true}}}}}},
	}
	f.setSnapshot("a", in)
	p, _, _, m := f.startSidecar(f.a, "a", "client", func(*net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, fmt.Errorf("unused") })
	// The whole first config: Ready does not wait for EDS, whose later arrival makes a new Config.
	eventually(t, "first config", func() error {
		if !p.Ready() || len(p.Config().Endpoints) == 0 {
			return fmt.Errorf("not ready, or no endpoints yet")
		}
		return nil
	})
	good := p.Config()

	// A malformed Listener set: an unknown listener with a chain the proxy cannot carry out.
	res, err := xds.BuildProxy(in)
	if err != nil {
		t.Fatal(err)
	}
	bad := &listenerv3.Listener{Name: "surprise"}
	snap := res.Snapshot()
	snap.Resources[cachev3.GetResponseType(resourcev3.ListenerType)] = cachev3.NewResources("bad-1", append(append([]types.Resource{}, res.Listeners.Items...), bad))
	if err := f.snapshots.SetSnapshot(context.Background(), "a", snap); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the NACK", func() error {
		if got := m.Load(); got < 1 {
			return fmt.Errorf("%d NACKs", got)
		}
		return nil
	})
	// The agent is told why: the rejection names the resource it could not take.
	eventually(t, "the NACK's reason at the xDS server", func() error {
		for _, reason := range f.nackReasons() {
			if strings.Contains(reason, `"surprise"`) {
				return nil
			}
		}
		return fmt.Errorf("reasons %q name no listener \"surprise\"", f.nackReasons())
	})
	if p.Config().Outbound[netip.MustParseAddrPort(fmt.Sprintf("%s:%d", vip, httpPort))] == nil || p.Config() != good {
		t.Error("the last good config was not kept")
	}
}
