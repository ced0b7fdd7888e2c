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

// Package mcsdns is the clusterset DNS zone of a member: the records the Multi-Cluster Services
// DNS specification (KEP-1645, keps/sig-multicluster/1645-multi-cluster-services-api/
// specification.md, schema version 1.0.0) derives from the member's ServiceImports and MCS
// EndpointSlices. Pure: Build makes an immutable Zone, Answer answers one question from it.
package mcsdns

import (
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

const (
	// Origin is the clusterset zone (specification 2.2: "must be clusterset.local").
	Origin = "clusterset.local."
	// SchemaVersion is the specification's schema version, served at dns-version.<zone> (2.2).
	SchemaVersion = "1.0.0"
	// TTL of every record but the version's: short, so a change of an import is seen soon
	// (the specification prescribes none; CoreDNS's kubernetes plugin uses 5 s too).
	TTL = 5
	// versionTTL is the specification's example TTL of the version record.
	versionTTL = 28800
)

// Table is what Build needs of a member: its ServiceImports and the MCS EndpointSlices of each
// (labelled multicluster.kubernetes.io/service-name and source-cluster), by namespace/name.
type Table struct {
	Imports []*mcsv1beta1.ServiceImport
	Slices  map[string][]*discoveryv1.EndpointSlice
}

// Zone holds every record of the clusterset zone by owner name (lower case, fully qualified).
type Zone struct {
	names map[string]*rrset
	// interior are the names with records below them but none of their own (empty
	// non-terminals such as <ns>.svc.<zone>): NODATA, not NXDOMAIN (RFC 8020).
	interior map[string]bool
}

type rrset struct {
	a   []dns.RR
	srv []dns.RR
	txt []dns.RR
}

func (z *Zone) set(name string) *rrset {
	if z.names == nil {
		z.names = map[string]*rrset{}
	}
	s := z.names[name]
	if s == nil {
		s = &rrset{}
		z.names[name] = s
	}
	return s
}

func header(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// ServiceName is <svc>.<ns>.svc.<zone>.
func ServiceName(namespace, name string) string {
	return strings.ToLower(name + "." + namespace + ".svc." + Origin)
}

// endpoint is one ready address of a headless import, from one source cluster.
type endpoint struct {
	ip   netip.Addr
	host string // <hostname>.<clusterid>.<svc>.<ns>.svc.<zone>
}

// Build derives the zone from a member's imports and their MCS slices.
func Build(t Table) *Zone {
	z := &Zone{names: map[string]*rrset{}, interior: map[string]bool{}}
	version := "dns-version." + Origin
	z.set(version).txt = []dns.RR{&dns.TXT{Hdr: header(version, dns.TypeTXT, versionTTL), Txt: []string{SchemaVersion}}}
	for _, si := range t.Imports {
		svc := ServiceName(si.Namespace, si.Name)
		ports := namedPorts(si)
		switch si.Spec.Type {
		case mcsv1beta1.ClusterSetIP:
			// 2.3.1: <service>.<ns>.svc.<zone>. IN A <clusterset-ip>.
			var ips []netip.Addr
			for _, s := range si.Spec.IPs {
				if ip, err := netip.ParseAddr(s); err == nil {
					ips = append(ips, ip)
				}
			}
			if len(ips) == 0 {
				continue // not allocated yet: the name does not exist
			}
			set := z.set(svc)
			set.a = addresses(svc, ips)
			// 2.3.2: _<port>._<proto>.<service>.<ns>.svc.<zone>. IN SRV <weight> <priority>
			// <port-number> <service>.<ns>.svc.<zone>. "Unnamed ports do not have an SRV record."
			for _, p := range ports {
				name := srvName(p, svc)
				srv := &dns.SRV{Hdr: header(name, dns.TypeSRV, TTL), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: svc}
				z.set(name).srv = append(z.set(name).srv, srv)
				set.srv = append(set.srv, srv) // the bare name answers SRV too, as cluster.local's does
			}
		case mcsv1beta1.Headless:
			eps := readyEndpoints(si, t.Slices[si.Namespace+"/"+si.Name])
			if len(eps) == 0 {
				continue // 2.4.1: no ready endpoints, NXDOMAIN
			}
			set := z.set(svc)
			var ips []netip.Addr
			for _, e := range eps {
				ips = append(ips, e.ip)
				// 2.4.1: <hostname>.<clusterid>.<service>.<ns>.svc.<zone>. IN A <endpoint-ip>.
				z.set(e.host).a = append(z.set(e.host).a, addresses(e.host, []netip.Addr{e.ip})...)
			}
			set.a = addresses(svc, ips)
			// 2.4.2: one SRV per ready endpoint and named port, targeting the endpoint's name.
			for _, p := range ports {
				name := srvName(p, svc)
				for _, e := range eps {
					srv := &dns.SRV{Hdr: header(name, dns.TypeSRV, TTL), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: e.host}
					z.set(name).srv = append(z.set(name).srv, srv)
					set.srv = append(set.srv, srv)
				}
			}
		}
	}
	for n := range z.names {
		for p := n; dns.IsSubDomain(Origin, p) && p != Origin; {
			_, rest, _ := strings.Cut(p, ".")
			p = rest
			if _, own := z.names[p]; !own {
				z.interior[p] = true
			}
		}
	}
	z.interior[Origin] = true
	return z
}

func namedPorts(si *mcsv1beta1.ServiceImport) []mcsv1beta1.ServicePort {
	var out []mcsv1beta1.ServicePort
	for _, p := range si.Spec.Ports {
		if p.Name != "" {
			out = append(out, p)
		}
	}
	return out
}

// srvName is _<port>._<proto>.<service>... with the protocol in lower case (RFC 2782).
func srvName(p mcsv1beta1.ServicePort, svc string) string {
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return strings.ToLower("_" + p.Name + "._" + string(proto) + "." + svc)
}

func addresses(name string, ips []netip.Addr) []dns.RR {
	out := make([]dns.RR, 0, len(ips))
	for _, ip := range ips {
		if ip.Is4() {
			out = append(out, &dns.A{Hdr: header(name, dns.TypeA, TTL), A: ip.AsSlice()})
		} else {
			out = append(out, &dns.AAAA{Hdr: header(name, dns.TypeAAAA, TTL), AAAA: ip.AsSlice()})
		}
	}
	return out
}

// readyEndpoints are a headless import's ready addresses across its source clusters, each named
// by its hostname, or (2.1: "a unique, system-assigned identifier") its address with '-' for
// '.' and ':', under its source cluster's ID.
func readyEndpoints(si *mcsv1beta1.ServiceImport, slices []*discoveryv1.EndpointSlice) []endpoint {
	svc := ServiceName(si.Namespace, si.Name)
	var out []endpoint
	seen := map[string]bool{}
	for _, s := range slices {
		cluster := s.Labels[mcsv1beta1.LabelSourceCluster]
		if cluster == "" || s.Labels[mcsv1beta1.LabelServiceName] != si.Name {
			continue
		}
		for _, ep := range s.Endpoints {
			if !ptr.Deref(ep.Conditions.Ready, true) {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				label := strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
				if h := ptr.Deref(ep.Hostname, ""); h != "" {
					label = h
				}
				host := strings.ToLower(label + "." + cluster + "." + svc)
				if key := host + "|" + ip.String(); !seen[key] {
					seen[key] = true
					out = append(out, endpoint{ip: ip, host: host})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].host != out[j].host {
			return out[i].host < out[j].host
		}
		return out[i].ip.Less(out[j].ip)
	})
	return out
}

// Answer answers one question: the records of the name and type, NODATA (success, no records)
// for a name that exists without that type, NXDOMAIN for a name in the zone that does not
// exist, and REFUSED outside the zone (CoreDNS forwards only the zone here).
func (z *Zone) Answer(q dns.Question) (rcode int, answer []dns.RR) {
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(Origin, name) {
		return dns.RcodeRefused, nil
	}
	set, ok := z.names[name]
	if !ok {
		if z.interior[name] {
			return dns.RcodeSuccess, nil // an empty non-terminal (RFC 8020): NODATA
		}
		return dns.RcodeNameError, nil
	}
	switch q.Qtype {
	case dns.TypeA:
		return dns.RcodeSuccess, only(set.a, dns.TypeA)
	case dns.TypeAAAA:
		return dns.RcodeSuccess, only(set.a, dns.TypeAAAA)
	case dns.TypeSRV:
		return dns.RcodeSuccess, set.srv
	case dns.TypeTXT:
		return dns.RcodeSuccess, set.txt
	case dns.TypeANY:
		return dns.RcodeSuccess, append(append(append([]dns.RR{}, set.a...), set.srv...), set.txt...)
	}
	return dns.RcodeSuccess, nil
}

func only(rrs []dns.RR, t uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			out = append(out, rr)
		}
	}
	return out
}

// Names is the number of owner names in the zone (a metric, and for tests).
func (z *Zone) Names() int { return len(z.names) }

// Additional are the address records of SRV targets the zone holds, for the additional section.
func (z *Zone) Additional(answer []dns.RR) []dns.RR {
	var out []dns.RR
	seen := map[string]bool{}
	for _, rr := range answer {
		srv, ok := rr.(*dns.SRV)
		if !ok || seen[srv.Target] {
			continue
		}
		seen[srv.Target] = true
		if set := z.names[srv.Target]; set != nil {
			out = append(out, set.a...)
		}
	}
	return out
}

// Reply builds the response to req from the zone: authoritative, one question.
func (z *Zone) Reply(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeFormatError
		if req.Opcode != dns.OpcodeQuery {
			m.Rcode = dns.RcodeNotImplemented
		}
		return m
	}
	rcode, answer := z.Answer(req.Question[0])
	m.Rcode, m.Answer = rcode, answer
	if rcode == dns.RcodeRefused {
		m.Authoritative = false
	}
	if rcode == dns.RcodeSuccess && len(answer) == 0 || rcode == dns.RcodeNameError {
		m.Ns = []dns.RR{z.soa()}
	}
	m.Extra = z.Additional(answer)
	return m
}

// soa is the zone's SOA, for negative answers (RFC 2308): its minimum is the negative TTL.
func (z *Zone) soa() dns.RR {
	return &dns.SOA{Hdr: header(Origin, dns.TypeSOA, TTL), Ns: "ns.dns." + Origin, Mbox: "hostmaster." + Origin,
		Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: TTL}
}
