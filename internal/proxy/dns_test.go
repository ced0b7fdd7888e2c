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
