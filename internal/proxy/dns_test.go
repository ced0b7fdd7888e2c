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
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestDNSAnswersClusterSetNames(t *testing.T) {
	p := New(Options{SVID: nil})
	p.SetConfig(&Config{Outbound: map[netip.AddrPort]*Route{
		netip.MustParseAddrPort("10.96.200.1:8080"): {Cluster: "outbound|8080||echo.demo.svc.clusterset.local"},
		netip.MustParseAddrPort("10.96.200.1:9000"): {Cluster: "outbound|9000||echo.demo.svc.clusterset.local"},
		netip.MustParseAddrPort("10.96.0.10:80"):    {Cluster: "outbound|80||web.demo.svc.cluster.local"},
	}})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	go func() { _ = (&DNS{Proxy: p}).ServeUDP(pc) }()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "echo.demo.svc.clusterset.local")
	if err != nil || len(addrs) != 1 || addrs[0] != "10.96.200.1" {
		t.Errorf("echo: %v %v, want [10.96.200.1]", addrs, err)
	}
	if _, err := r.LookupHost(ctx, "gone.demo.svc.clusterset.local"); err == nil {
		t.Error("an unknown clusterset name resolved; want NXDOMAIN")
	} else if de, ok := err.(*net.DNSError); !ok || !de.IsNotFound {
		t.Errorf("unknown name: %v, want not found", err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tl.Close() }()
	go func() { _ = (&DNS{Proxy: p}).ServeTCP(tl) }()
	rt := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", tl.Addr().String())
	}}
	if addrs, err := rt.LookupHost(ctx, "echo.demo.svc.clusterset.local"); err != nil || len(addrs) != 1 {
		t.Errorf("over TCP: %v %v", addrs, err)
	}
	if got := UpstreamFromResolvConf("# x\nsearch a\nnameserver 10.255.255.53\nnameserver 1.1.1.1\n"); got != "10.255.255.53:53" {
		t.Errorf("upstream %q", got)
	}
}

// A clusterset name the proxy's table does not hold (a headless service's per-pod name) and a
// query type other than A/AAAA go upstream, where the member's DNS forwards them to the agent.
func TestDNSForwardsTheRestOfTheClusterSetZoneUpstream(t *testing.T) {
	p := New(Options{SVID: nil})
	p.SetConfig(&Config{Outbound: map[netip.AddrPort]*Route{
		netip.MustParseAddrPort("10.96.200.1:8080"): {Cluster: "outbound|8080||echo.demo.svc.clusterset.local"},
	}})
	upstream, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = upstream.Close() }()
	asked := make(chan string, 4)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := upstream.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil {
				continue
			}
			asked <- m.Questions[0].Name.String()
			m.Response, m.Authoritative = true, true
			m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
				Body: &dnsmessage.AResource{A: [4]byte{10, 244, 1, 5}}}}
			out, _ := m.Pack()
			_, _ = upstream.WriteTo(out, from)
		}
	}()
	d := &DNS{Proxy: p, Upstream: upstream.LocalAddr().String()}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	go func() { _ = d.ServeUDP(pc) }()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupIPAddr(ctx, "db-0.member-1-fleet.db.demo.svc.clusterset.local")
	if err != nil || len(addrs) == 0 || addrs[0].IP.String() != "10.244.1.5" {
		t.Errorf("per-pod name: %v %v, want the upstream's 10.244.1.5", addrs, err)
	}
	if got := <-asked; got != "db-0.member-1-fleet.db.demo.svc.clusterset.local." {
		t.Errorf("upstream asked %q", got)
	}
	if addrs, err := r.LookupHost(ctx, "echo.demo.svc.clusterset.local"); err != nil || len(addrs) != 1 || addrs[0] != "10.96.200.1" {
		t.Errorf("a name the proxy holds is answered by it: %v %v", addrs, err)
	}
}
