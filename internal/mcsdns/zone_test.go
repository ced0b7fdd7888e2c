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

package mcsdns

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

func imported(name string, t mcsv1beta1.ServiceImportType, ips []string, ports ...mcsv1beta1.ServicePort) *mcsv1beta1.ServiceImport {
	return &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name},
		Spec: mcsv1beta1.ServiceImportSpec{Type: t, IPs: ips, Ports: ports}}
}

type ep struct {
	ip, host string
	ready    bool
}

func mcsSlice(svc, cluster string, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Labels: map[string]string{
		mcsv1beta1.LabelServiceName: svc, mcsv1beta1.LabelSourceCluster: cluster}}, AddressType: discoveryv1.AddressTypeIPv4}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.ready)}}
		if e.host != "" {
			d.Hostname = ptr.To(e.host)
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

func fleetZone() *Zone {
	return Build(Table{
		Imports: []*mcsv1beta1.ServiceImport{
			imported("echo", mcsv1beta1.ClusterSetIP, []string{"240.245.0.7"},
				mcsv1beta1.ServicePort{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP},
				mcsv1beta1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
			imported("pending", mcsv1beta1.ClusterSetIP, nil, mcsv1beta1.ServicePort{Port: 80}),
			imported("db", mcsv1beta1.Headless, nil, mcsv1beta1.ServicePort{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}),
			imported("drained", mcsv1beta1.Headless, nil, mcsv1beta1.ServicePort{Name: "pg", Port: 5432}),
		},
		Slices: map[string][]*discoveryv1.EndpointSlice{
			"demo/db": {
				mcsSlice("db", "member-1-fleet", ep{"10.244.1.5", "db-0", true}, ep{"10.244.1.6", "db-1", true}, ep{"10.244.1.7", "db-2", false}),
				mcsSlice("db", "member-2-fleet", ep{"10.244.2.5", "db-0", true}, ep{"10.244.2.9", "", true}),
			},
			"demo/drained": {mcsSlice("drained", "member-1-fleet", ep{"10.244.1.8", "x", false})},
		},
	})
}

func ask(z *Zone, name string, t uint16) (int, []string) {
	rcode, rrs := z.Answer(dns.Question{Name: name, Qtype: t, Qclass: dns.ClassINET})
	var out []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %s", r.Port, r.Target))
		case *dns.TXT:
			out = append(out, strings.Join(r.Txt, ""))
		}
	}
	sort.Strings(out)
	return rcode, out
}

func TestZoneFollowsTheMCSDNSSpecification(t *testing.T) {
	z := fleetZone()
	const svc = ".demo.svc.clusterset.local."
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"dns-version.clusterset.local.", dns.TypeTXT, dns.RcodeSuccess, []string{"1.0.0"}},
		// 2.3: ClusterSetIP services.
		{"echo" + svc, dns.TypeA, dns.RcodeSuccess, []string{"240.245.0.7"}},
		{"ECHO" + strings.ToUpper(svc), dns.TypeA, dns.RcodeSuccess, []string{"240.245.0.7"}},
		{"echo" + svc, dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"_http._tcp.echo" + svc, dns.TypeSRV, dns.RcodeSuccess, []string{"8080 echo" + svc}},
		{"_dns._udp.echo" + svc, dns.TypeSRV, dns.RcodeSuccess, []string{"53 echo" + svc}},
		{"echo" + svc, dns.TypeSRV, dns.RcodeSuccess, []string{"53 echo" + svc, "8080 echo" + svc}},
		// 2.3.4: no record disambiguating a ClusterSetIP service to one cluster.
		{"member-1-fleet.echo" + svc, dns.TypeA, dns.RcodeNameError, nil},
		{"pending" + svc, dns.TypeA, dns.RcodeNameError, nil},
		// 2.4: headless services: every ready endpoint, per-pod names under the cluster ID.
		{"db" + svc, dns.TypeA, dns.RcodeSuccess, []string{"10.244.1.5", "10.244.1.6", "10.244.2.5", "10.244.2.9"}},
		{"db-0.member-1-fleet.db" + svc, dns.TypeA, dns.RcodeSuccess, []string{"10.244.1.5"}},
		{"db-0.member-2-fleet.db" + svc, dns.TypeA, dns.RcodeSuccess, []string{"10.244.2.5"}},
		{"10-244-2-9.member-2-fleet.db" + svc, dns.TypeA, dns.RcodeSuccess, []string{"10.244.2.9"}},
		{"db-2.member-1-fleet.db" + svc, dns.TypeA, dns.RcodeNameError, nil}, // not ready
		{"_pg._tcp.db" + svc, dns.TypeSRV, dns.RcodeSuccess, []string{
			"5432 10-244-2-9.member-2-fleet.db" + svc, "5432 db-0.member-1-fleet.db" + svc,
			"5432 db-0.member-2-fleet.db" + svc, "5432 db-1.member-1-fleet.db" + svc}},
		{"member-1-fleet.db" + svc, dns.TypeA, dns.RcodeSuccess, nil}, // an empty non-terminal
		{"drained" + svc, dns.TypeA, dns.RcodeNameError, nil},         // 2.4.1: no ready endpoint
		{"gone" + svc, dns.TypeA, dns.RcodeNameError, nil},
		{"demo.svc.clusterset.local.", dns.TypeA, dns.RcodeSuccess, nil},
		{"echo.demo.svc.cluster.local.", dns.TypeA, dns.RcodeRefused, nil},
	}
	for _, tt := range tests {
		rcode, got := ask(z, tt.name, tt.qtype)
		if rcode != tt.rcode || strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s %s: %s %v, want %s %v", tt.name, dns.TypeToString[tt.qtype], dns.RcodeToString[rcode], got, dns.RcodeToString[tt.rcode], tt.want)
		}
	}
}

func TestReplyIsAuthoritativeWithSOAOnNegativeAnswers(t *testing.T) {
	z := fleetZone()
	q := new(dns.Msg).SetQuestion("gone.demo.svc.clusterset.local.", dns.TypeA)
	r := z.Reply(q)
	if r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("NXDOMAIN reply = %v", r)
	}
	q = new(dns.Msg).SetQuestion("_pg._tcp.db.demo.svc.clusterset.local.", dns.TypeSRV)
	if r = z.Reply(q); len(r.Answer) != 4 || len(r.Extra) != 4 {
		t.Errorf("SRV reply carries the targets' addresses: %v", r)
	}
}
