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

package mcs

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

var (
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key = Key{Namespace: "demo", Name: "echo"}
)

func svc(clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, Ports: ports}}
	return s
}

func port(name string, p int32, proto corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: proto}
}

func export(cluster string, age time.Duration, s *corev1.Service, readyIPs ...string) Export {
	e := Export{Cluster: cluster, Key: key, Created: t0.Add(-age), Service: s, Region: "eu"}
	es := discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(8080))}}}
	for _, ip := range readyIPs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.9.9.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}})
	e.Slices = []discoveryv1.EndpointSlice{es}
	return e
}

func TestResolveMergesPortsAndKeepsEverySource(t *testing.T) {
	b := export("b", 2*time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")), "10.244.2.5")
	c := export("c", time.Hour, svc("10.0.0.9", port("grpc", 8080, "TCP"), port("metrics", 9090, "")), "10.244.3.5")
	imp, verdicts := Resolve([]Export{c, b})
	if imp == nil || imp.Type != mcsv1beta1.ClusterSetIP {
		t.Fatalf("import = %+v", imp)
	}
	if len(imp.Ports) != 2 || imp.Ports[0].Port != 8080 || imp.Ports[1].Port != 9090 || imp.Ports[1].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports = %+v, want 8080 and 9090/TCP", imp.Ports)
	}
	if len(imp.Sources) != 2 || imp.Sources[0].Cluster != "b" {
		t.Errorf("sources = %v", imp.Sources)
	}
	for _, c := range []string{"b", "c"} {
		if v := verdicts[c]; !v.Valid || v.Conflict {
			t.Errorf("%s verdict = %+v, want valid without conflict", c, v)
		}
	}
	d := ForMember(imp, "a", "", "240.245.0.7", map[string]string{"owner": "x"})
	if d.Import.Spec.IPs[0] != "240.245.0.7" || d.Import.Labels["owner"] != "x" {
		t.Errorf("import = %+v", d.Import)
	}
	if len(d.Slices) != 2 {
		t.Fatalf("want a slice per source, got %d", len(d.Slices))
	}
	s := d.Slices[0]
	if s.Labels[mcsv1beta1.LabelSourceCluster] != "b" || s.Labels[mcsv1beta1.LabelServiceName] != "echo" ||
		s.Labels[discoveryv1.LabelManagedBy] != ManagedBy || s.Labels[RegionLabel] != "eu" {
		t.Errorf("slice labels = %v", s.Labels)
	}
	if len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != "10.244.2.5" {
		t.Errorf("only ready endpoints travel: %+v", s.Endpoints)
	}
}

func TestResolveConflictsOldestWinsAndEveryInvolvedExportSaysSo(t *testing.T) {
	tests := []struct {
		name   string
		young  *corev1.Service
		reason mcsv1beta1.ServiceExportConditionReason
		want   mcsv1beta1.ServiceImportType
	}{
		{"type", svc(corev1.ClusterIPNone, port("grpc", 8080, "TCP")), mcsv1beta1.ServiceExportReasonTypeConflict, mcsv1beta1.ClusterSetIP},
		{"port protocol", svc("10.0.0.2", port("grpc", 8080, "UDP")), mcsv1beta1.ServiceExportReasonPortConflict, mcsv1beta1.ClusterSetIP},
		{"port number under one name", svc("10.0.0.2", port("grpc", 8081, "TCP")), mcsv1beta1.ServiceExportReasonPortConflict, mcsv1beta1.ClusterSetIP},
		{"another name for one port", svc("10.0.0.2", port("rpc", 8080, "TCP")), mcsv1beta1.ServiceExportReasonPortConflict, mcsv1beta1.ClusterSetIP},
		{"appProtocol", withSpec(svc("10.0.0.2", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) { s.Ports[0].AppProtocol = ptr.To("kubernetes.io/h2c") }), mcsv1beta1.ServiceExportReasonPortConflict, mcsv1beta1.ClusterSetIP},
		{"sessionAffinity", withSpec(svc("10.0.0.2", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) { s.SessionAffinity = corev1.ServiceAffinityClientIP }), mcsv1beta1.ServiceExportReasonSessionAffinityConflict, mcsv1beta1.ClusterSetIP},
		{"sessionAffinityConfig", withSpec(svc("10.0.0.2", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) {
			s.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(60))}}
		}), mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict, mcsv1beta1.ClusterSetIP},
		{"internalTrafficPolicy", withSpec(svc("10.0.0.2", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) {
			s.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
		}), mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict, mcsv1beta1.ClusterSetIP},
		{"trafficDistribution", withSpec(svc("10.0.0.2", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) { s.TrafficDistribution = ptr.To("PreferClose") }),
			mcsv1beta1.ServiceExportReasonTrafficDistributionConflict, mcsv1beta1.ClusterSetIP},
		{"ipFamilies", withSpec(svc("10.0.0.2", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) {
			s.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		}), "", mcsv1beta1.ClusterSetIP}, // the import carries IPv4 only: both yield [IPv4], no conflict
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := export("b", time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")))
			young := export("c", time.Minute, tt.young)
			imp, v := Resolve([]Export{young, old})
			if imp.Type != tt.want || imp.Ports[0].Protocol != corev1.ProtocolTCP {
				t.Errorf("the oldest export must define the import: %+v", imp)
			}
			if tt.reason == "" {
				if v["b"].Conflict || v["c"].Conflict {
					t.Errorf("no conflict expected: %+v", v)
				}
				return
			}
			if len(imp.Ports) != 1 {
				t.Errorf("a conflicting port is not added: %+v", imp.Ports)
			}
			for _, c := range []string{"b", "c"} {
				if !v[c].Conflict || v[c].ConflictReason != string(tt.reason) {
					t.Errorf("%s: conflict=%v reason=%s, want %s", c, v[c].Conflict, v[c].ConflictReason, tt.reason)
				}
			}
			if !strings.Contains(v["b"].ConflictMessage, "this export is the oldest") || !strings.Contains(v["c"].ConflictMessage, "cluster b") {
				t.Errorf("messages must say who won: %q / %q", v["b"].ConflictMessage, v["c"].ConflictMessage)
			}
		})
	}
}

func TestValidity(t *testing.T) {
	ext := svc("")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	imp, v := Resolve([]Export{export("b", 0, nil), export("c", 0, ext)})
	if imp != nil {
		t.Errorf("nothing valid, nothing imported: %+v", imp)
	}
	if v["b"].Valid || v["b"].ValidReason != string(mcsv1beta1.ServiceExportReasonNoService) {
		t.Errorf("missing service: %+v", v["b"])
	}
	if v["c"].Valid || v["c"].ValidReason != string(mcsv1beta1.ServiceExportReasonInvalidServiceType) {
		t.Errorf("ExternalName: %+v", v["c"])
	}
}

func TestHeadlessImportHasNoIP(t *testing.T) {
	imp, _ := Resolve([]Export{export("b", 0, svc(corev1.ClusterIPNone, port("grpc", 8080, "TCP")))})
	if d := ForMember(imp, "a", "", "240.245.0.7", nil); d.Import.Spec.Type != mcsv1beta1.Headless || len(d.Import.Spec.IPs) != 0 {
		t.Errorf("headless import = %+v", d.Import.Spec)
	}
}

func TestStaleSourcesAreMarked(t *testing.T) {
	e := export("b", 0, svc("10.0.0.1", port("grpc", 8080, "TCP")), "10.244.2.5")
	e.Stale = true
	imp, _ := Resolve([]Export{e})
	if d := ForMember(imp, "a", "", "", nil); d.Slices[0].Labels[StaleLabel] != "true" {
		t.Errorf("stale slice labels = %v", d.Slices[0].Labels)
	}
}

func TestAllocatorIsStableAndUnique(t *testing.T) {
	a, err := NewAllocator("240.245.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]Key{}
	for i := 0; i < 200; i++ {
		k := Key{Namespace: "ns", Name: strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26))}
		ip, err := a.Allocate(k, "")
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s given to %s and %s", ip, other, k)
		}
		seen[ip] = k
		if again, _ := a.Allocate(k, ""); again != ip {
			t.Errorf("%s moved from %s to %s", k, ip, again)
		}
	}
	// A restarted operator keeps what members show.
	b, _ := NewAllocator("240.245.0.0/24")
	if ip, _ := b.Allocate(key, "240.245.0.77"); ip != "240.245.0.77" {
		t.Errorf("current IP not kept: %s", ip)
	}
	if _, err := NewAllocator("2001:db8::/64"); err == nil {
		t.Error("IPv6 range accepted")
	}
	if _, err := a.Allocate(Key{Namespace: "x", Name: "full"}, ""); err != nil {
		t.Errorf("range with room refused: %v", err)
	}
}

// After a restart, a new service whose hash points at an address an existing import shows must
// not take it: the allocator holds every shown address first (Hold), then allocates.
func TestAllocatorSeededBeforeAllocatingKeepsEveryShownIP(t *testing.T) {
	fresh, _ := NewAllocator("240.245.0.0/28")
	newcomer := Key{Namespace: "ns", Name: "new"}
	hashIP, _ := fresh.Allocate(newcomer, "") // where the newcomer's hash lands first
	existing := Key{Namespace: "ns", Name: "old"}

	a, _ := NewAllocator("240.245.0.0/28")
	if !a.Hold(existing, hashIP) {
		t.Fatalf("Hold(%s) of a free address refused", hashIP)
	}
	if ip, _ := a.Allocate(newcomer, ""); ip == hashIP {
		t.Fatalf("newcomer took %s, which %s shows", ip, existing)
	}
	if ip, _ := a.Allocate(existing, hashIP); ip != hashIP {
		t.Errorf("existing import moved from %s to %s", hashIP, ip)
	}
	// Hold never takes another's address, an address out of range, or a second one for a key.
	if a.Hold(Key{Namespace: "ns", Name: "third"}, hashIP) || a.Hold(existing, "10.0.0.1") || a.Hold(existing, "not an IP") {
		t.Error("Hold took what it must not")
	}
	other, _ := a.Allocate(Key{Namespace: "ns", Name: "fourth"}, "")
	if a.Hold(existing, other) {
		t.Errorf("Hold gave %s a second address", existing)
	}
}

func TestSliceNameIsAValidBoundedName(t *testing.T) {
	n := SliceName(Key{Namespace: "ns", Name: strings.Repeat("a", 100)}, "member-1.fleet")
	if len(n) > 63 || n != SliceName(Key{Namespace: "ns", Name: strings.Repeat("a", 100)}, "member-1.fleet") {
		t.Errorf("slice name %q", n)
	}
	if SliceName(key, "a") == SliceName(key, "b") {
		t.Error("slices of two sources collide")
	}
}

func withSpec(s *corev1.Service, edit func(*corev1.ServiceSpec)) *corev1.Service {
	edit(&s.Spec)
	return s
}

// KEP-1645 "Service Port": ports are merged by name, then by (protocol, port); a TCP and a UDP
// port of one number are two ports.
func TestResolveIdentifiesPortsByNameProtocolAndNumber(t *testing.T) {
	b := export("b", time.Hour, svc("10.0.0.1", port("dns-tcp", 53, "TCP"), port("dns", 53, "UDP")))
	c := export("c", time.Minute, svc("10.0.0.2", port("dns", 53, "UDP"), port("metrics", 9153, "TCP")))
	imp, v := Resolve([]Export{c, b})
	var got []string
	for _, p := range imp.Ports {
		got = append(got, describePort(p))
	}
	want := []string{`"dns-tcp" 53/TCP`, `"dns" 53/UDP`, `"metrics" 9153/TCP`}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("ports = %v, want %v", got, want)
	}
	if v["b"].Conflict || v["c"].Conflict {
		t.Errorf("a union is no conflict: %+v", v)
	}
}

func TestImportCarriesEveryServiceProperty(t *testing.T) {
	s := withSpec(svc("10.0.0.1", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) {
		s.SessionAffinity = corev1.ServiceAffinityClientIP
		s.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(600))}}
		s.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
		s.TrafficDistribution = ptr.To("PreferClose")
		s.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	})
	imp, _ := Resolve([]Export{export("b", 0, s, "10.244.2.5"), export("c", 0, svc("10.0.0.2", port("grpc", 8080, "TCP")))})
	d := ForMember(imp, "a", "", "240.245.0.7", nil)
	spec := d.Import.Spec
	if spec.SessionAffinity != corev1.ServiceAffinityClientIP || *spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 600 ||
		*spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal || *spec.TrafficDistribution != "PreferClose" ||
		len(spec.IPFamilies) != 1 || spec.IPFamilies[0] != corev1.IPv4Protocol || len(spec.IPs) != 1 {
		t.Errorf("import spec = %+v", spec)
	}
	if got := d.Import.Status.Clusters; len(got) != 2 || got[0].Cluster != "b" || got[1].Cluster != "c" {
		t.Errorf("status.clusters = %+v, want b and c", got)
	}
}

func TestIPv6OnlyExportIsInvalid(t *testing.T) {
	s := withSpec(svc("fd00::1", port("grpc", 8080, "TCP")), func(s *corev1.ServiceSpec) { s.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
	imp, v := Resolve([]Export{export("b", 0, s)})
	if imp != nil || v["b"].Valid || !strings.Contains(v["b"].ValidMessage, "IPv4") {
		t.Errorf("import = %+v, verdict = %+v", imp, v["b"])
	}
}

func TestExportToLimitsWhichMembersImport(t *testing.T) {
	b := export("b", time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")), "10.244.2.5")
	b.ExportTo = ParseExportTo(map[string]string{ExportToAnnotation: " a , "})
	c := export("c", time.Minute, svc("10.0.0.2", port("grpc", 8080, "TCP")), "10.244.3.5")
	c.ExportTo = []string{}
	imp, _ := Resolve([]Export{b, c})
	sourcesOf := func(member string) []string {
		var out []string
		for _, s := range ForMember(imp, member, "", "240.245.0.7", nil).Slices {
			out = append(out, s.Labels[mcsv1beta1.LabelSourceCluster])
		}
		return out
	}
	for member, want := range map[string][]string{"a": {"b"}, "b": {"b"}, "c": {"c"}, "d": nil} {
		if got := sourcesOf(member); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("member %s gets slices of %v, want %v", member, got, want)
		}
	}
	if d := ForMember(imp, "d", "", "240.245.0.7", nil); d.Import != nil {
		t.Errorf("a member no export reaches imports nothing: %+v", d.Import)
	}
	if ParseExportTo(nil) != nil {
		t.Error("no annotation: every member")
	}
}
