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
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ClusterSetDomain is the zone the sidecar answers itself (the MCS DNS specification's).
const ClusterSetDomain = "svc.clusterset.local."

// NameTable maps service host names to their virtual IPs. It is derived from the outbound
// filter chains (a chain's address is the virtual IP of the service its cluster names:
// outbound|<port>||<host>), so it needs no resource beyond the Envoy-shaped set.
func NameTable(c *Config) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	if c == nil {
		return out
	}
	seen := map[string]map[netip.Addr]bool{}
	for ap, r := range c.Outbound {
		_, host, ok := strings.Cut(r.Cluster, "||")
		if !ok {
			continue
		}
		host = strings.ToLower(host) + "."
		if seen[host] == nil {
			seen[host] = map[netip.Addr]bool{}
		}
		if !seen[host][ap.Addr()] {
			seen[host][ap.Addr()] = true
			out[host] = append(out[host], ap.Addr())
		}
	}
	return out
}

// DNS answers A and AAAA queries for the ClusterSetIP names in ClusterSetDomain from the
// proxy's config and forwards every other query, unchanged, to Upstream, as Istio's DNS proxy
// does: the member's DNS, which forwards the rest of clusterset.local to the agent. With no
// Upstream, a clusterset name it does not know is NXDOMAIN.
type DNS struct {
	Proxy *Proxy
	// Upstream is the resolver of everything else (host:53), from the pod's resolv.conf.
	Upstream string
}

// ServeUDP answers queries on pc until it closes.
func (d *DNS) ServeUDP(pc net.PacketConn) error {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			if resp := d.answer(q); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}()
	}
}

// ServeTCP answers queries over TCP (RFC 7766: each message prefixed by its length) until l
// closes. Forwarded queries still go upstream over UDP.
func (d *DNS) ServeTCP(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer func() { _ = c.Close() }()
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var n [2]byte
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(n[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp := d.answer(q)
				if resp == nil {
					return
				}
				if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...)); err != nil {
					return
				}
			}
		}()
	}
}

// answer returns the response to one query message (nil: drop it).
func (d *DNS) answer(q []byte) []byte {
	var msg dnsmessage.Message
	if err := msg.Unpack(q); err != nil || len(msg.Questions) != 1 {
		return nil
	}
	question := msg.Questions[0]
	name := strings.ToLower(question.Name.String())
	if !strings.HasSuffix(name, "."+ClusterSetDomain) {
		return d.forward(q)
	}
	addrs, known := NameTable(d.Proxy.Config())[name]
	addressQuery := question.Type == dnsmessage.TypeA || question.Type == dnsmessage.TypeAAAA
	if (!known || !addressQuery) && d.Upstream != "" {
		// Headless services, per-pod names, SRV and the rest of the zone: the member's DNS
		// forwards clusterset.local to its agent, which serves the whole zone (internal/mcsdns)
		// from the same imports this table comes from.
		return d.forward(q)
	}
	resp := dnsmessage.Message{Header: dnsmessage.Header{ID: msg.ID, Response: true, Authoritative: true, RecursionDesired: msg.RecursionDesired},
		Questions: msg.Questions}
	if !known {
		resp.RCode = dnsmessage.RCodeNameError
	}
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 5}
		switch {
		case a.Is4() && question.Type == dnsmessage.TypeA:
			resp.Answers = append(resp.Answers, dnsmessage.Resource{Header: hdr, Body: &dnsmessage.AResource{A: a.As4()}})
		case a.Is6() && question.Type == dnsmessage.TypeAAAA:
			resp.Answers = append(resp.Answers, dnsmessage.Resource{Header: hdr, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
		}
	}
	out, err := resp.Pack()
	if err != nil {
		return nil
	}
	return out
}

func (d *DNS) forward(q []byte) []byte {
	if d.Upstream == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.Proxy.opts.Dial(ctx, "udp", d.Upstream)
	if err != nil {
		return nil
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(q); err != nil {
		return nil
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// UpstreamFromResolvConf is the first nameserver of a resolv.conf, host:53.
func UpstreamFromResolvConf(data string) string {
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			return net.JoinHostPort(f[1], "53")
		}
	}
	return ""
}
