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
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"

	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/wire"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// startGateway runs an east-west gateway of the fixture's xDS server (node named node) with no
// SVID at all: it cannot terminate the mTLS it carries.
func (f *fixture) startGateway(node string, maxConns int) (*proxy.Proxy, net.Listener) {
	// A minute for a ClientHello: the connection flood below holds its places however slowly a
	// loaded machine runs the test.
	p := proxy.New(proxy.Options{Log: logr.Discard(), MaxConnections: maxConns, ConnectTimeout: time.Second, HelloTimeout: time.Minute})
	f.follow(p, node, wire.ProxyRoleGateway, nil)
	l := listen(f.t)
	go func() { _ = p.ServeGateway(l) }()
	return p, l
}

// Member a's client sidecar reaches c's service through c's gateway, as a member on another
// network would: its EDS holds only the gateway's address. The mTLS session is a's and c's
// sidecars' own (c's application sees a's SPIFFE ID); the gateway, which has no key, refuses
// plaintext, server names it does not serve and connections beyond its limit.
func TestGatewayPassesMTLSThroughBySNIAndRefusesTheRest(t *testing.T) {
	f := newFixture(t)
	appC := startApp(t, "c")
	pC, _, inC, _ := f.startSidecar(f.c, "c-echo", "echo", func(*net.TCPConn) (netip.AddrPort, error) {
		return appC.http.Addr().(*net.TCPAddr).AddrPort(), nil
	})
	const maxConns = 8
	gw, gwL := f.startGateway("c-gateway", maxConns)
	pa, out, _, _ := f.startSidecar(f.a, "a-client", "client", func(*net.TCPConn) (netip.AddrPort, error) {
		return netip.MustParseAddrPort(fmt.Sprintf("%s:%d", vip, httpPort)), nil
	})

	base := xds.Input{FederatedTrustDomains: []string{"a.fleet", "c.fleet"}, TrustBundles: bundles(f.a, f.c)}
	echo := func(sets ...xds.EndpointSet) xds.Service {
		return xds.Service{Namespace: "demo", Name: "echo", Scope: xds.ClusterSet, IPs: []string{vip}, Ports: []xds.Port{{Name: "http", Port: httpPort}}, Endpoints: sets}
	}
	// c's own view: its endpoint (the server sidecar) and one of a's it must never route to.
	cIn := base
	cIn.Member = xds.Member{Cluster: "c", TrustDomain: "c.fleet"}
	cIn.Services = []xds.Service{echo(endpointSet("c", inC, ""), xds.EndpointSet{Cluster: "a", Ports: []xds.Port{{Name: "http", Port: 1}},
		Endpoints: []xds.Endpoint{{Address: "127.0.0.99", Ready: true}}})}
	f.setSnapshot("c-echo", cIn)
	f.setSnapshotOf("c-gateway", cIn, xds.BuildGateway)
	// a's view: c's endpoints are its gateway, weighted by the endpoints behind it.
	aIn := base
	aIn.Member = xds.Member{Cluster: "a", TrustDomain: "a.fleet"}
	aIn.Services = []xds.Service{echo(xds.EndpointSet{Cluster: "c", Ports: []xds.Port{{Name: "http", Port: portOf(gwL)}},
		Endpoints: []xds.Endpoint{{Address: "127.0.0.1", Ready: true, Serving: true, Weight: 3}}})}
	f.setSnapshot("a-client", aIn)
	eventually(t, "every proxy configured", func() error {
		for name, p := range map[string]*proxy.Proxy{"a": pa, "c": pC, "gateway": gw} {
			if !p.Ready() {
				return fmt.Errorf("%s not ready", name)
			}
		}
		return nil
	})
	if got := gw.Config().Gateway; len(got) != 1 || got[wire.GatewaySNI("echo.demo.svc.clusterset.local", httpPort)] == nil {
		t.Fatalf("gateway routes %v, want only %s", got, wire.GatewaySNI("echo.demo.svc.clusterset.local", httpPort))
	}

	var body map[string]string
	get := func() error {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + out.Addr().String() + "/")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(&body)
	}
	eventually(t, "HTTP through c's gateway", get)
	if body["member"] != "c" || !strings.Contains(body["xfcc"], "URI=spiffe://a.fleet/ns/demo/sa/client") || !strings.Contains(body["xfcc"], "By=spiffe://c.fleet/ns/demo/sa/echo") {
		t.Errorf("c's application saw %v: want member c and a's client identity, end to end", body)
	}

	closedAtOnce := func(c net.Conn) error {
		_ = c.SetReadDeadline(time.Now().Add(7 * time.Second)) // a refusal is at once; a wait for more would hold it
		n, err := c.Read(make([]byte, 1))
		if err == nil || n > 0 {
			return fmt.Errorf("the gateway answered %d bytes", n)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fmt.Errorf("the gateway kept the connection open: %w", err)
		}
		return nil
	}
	// Plaintext: closed.
	c, err := net.Dial("tcp", gwL.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: echo\r\n\r\n"))
	if err := closedAtOnce(c); err != nil {
		t.Errorf("plaintext: %v", err)
	}
	_ = c.Close()
	// A server name the gateway does not serve (a's, or an unknown port): the handshake fails.
	for _, sni := range []string{wire.GatewaySNI("echo.demo.svc.clusterset.local", 9999), wire.GatewaySNI("other.demo.svc.clusterset.local", httpPort), ""} {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", gwL.Addr().String(), &tls.Config{ServerName: sni, InsecureSkipVerify: true}) //nolint:gosec // the handshake must fail before any verification
		if err == nil {
			_ = tc.Close()
			t.Errorf("server name %q: the handshake through the gateway succeeded", sni)
		}
	}
	// A flood of idle connections holding the gateway's every place: the next is closed at
	// accept; once they go, calls pass again.
	var idle []net.Conn
	for range maxConns {
		c, err := net.Dial("tcp", gwL.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	eventually(t, "a connection beyond the limit closed at accept", func() error {
		c, err := net.Dial("tcp", gwL.Addr().String())
		if err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			// Taken in before the flood's last connection, which was refused in its place: it
			// holds that place now, and the next dial is beyond the limit.
			idle = append(idle, c)
			return fmt.Errorf("read %v, want EOF", err)
		}
		_ = c.Close()
		return nil
	})
	for _, c := range idle {
		_ = c.Close()
	}
	eventually(t, "HTTP through c's gateway after the flood", get)
}

// A gateway listener that would terminate TLS, route every name or come with a sidecar's
// listeners is NACKed.
func TestGatewayListenerTranslationRefusesWhatIsNotPassthrough(t *testing.T) {
	in := xds.Input{Member: xds.Member{Cluster: "c", TrustDomain: "c.fleet"}, FederatedTrustDomains: []string{"c.fleet"},
		TrustBundles: bundles(newMember(t, "c")),
		Services: []xds.Service{{Namespace: "demo", Name: "echo", Scope: xds.ClusterSet, Ports: []xds.Port{{Name: "http", Port: httpPort}},
			Endpoints: []xds.EndpointSet{{Cluster: "c", Ports: []xds.Port{{Name: "http", Port: 8080}}, Endpoints: []xds.Endpoint{{Address: "10.244.3.1", Ready: true}}}}}}}
	gwRes, err := xds.BuildGateway(in)
	if err != nil {
		t.Fatal(err)
	}
	sidecarRes, err := xds.BuildProxy(in)
	if err != nil {
		t.Fatal(err)
	}
	gateway := func() *listenerv3.Listener {
		return proto.Clone(gwRes.Listeners.Items[0].(*listenerv3.Listener)).(*listenerv3.Listener)
	}
	if set, err := proxy.Listeners([]*listenerv3.Listener{gateway()}); err != nil || len(set.Gateway) != 1 {
		t.Fatalf("the agent's gateway listener: %v %v", set, err)
	}
	terminating := gateway()
	terminating.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls"}
	catchAll := gateway()
	catchAll.DefaultFilterChain = catchAll.FilterChains[0]
	noName := gateway()
	noName.FilterChains[0].FilterChainMatch.ServerNames = nil
	var sidecarLs []*listenerv3.Listener
	for _, l := range sidecarRes.Listeners.Items {
		sidecarLs = append(sidecarLs, l.(*listenerv3.Listener))
	}
	for name, ls := range map[string][]*listenerv3.Listener{
		"terminating chain": {terminating}, "default chain": {catchAll}, "chain without a server name": {noName},
		"gateway and sidecar listeners": append([]*listenerv3.Listener{gateway()}, sidecarLs...),
	} {
		if _, err := proxy.Listeners(ls); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
