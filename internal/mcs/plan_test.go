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
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func exported(e Export) *Export { return &e }

// slicesOf lists, per member, the source clusters of its desired slices ("-" for no import).
func slicesOf(p Plan) string {
	var out []string
	for id, d := range p.Desired {
		if d.Import == nil {
			out = append(out, id+"=-")
			continue
		}
		var src []string
		for _, s := range d.Slices {
			src = append(src, s.Labels[mcsv1beta1.LabelSourceCluster])
		}
		out = append(out, id+"="+strings.Join(src, "+"))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestPlanService(t *testing.T) {
	clusterIP := svc("10.0.0.1", port("http", 8080, "TCP"))
	headless := svc(corev1.ClusterIPNone, port("http", 8080, "TCP"))
	stale := export("b", time.Hour, clusterIP, "10.244.2.5")
	stale.Stale = true
	tests := []struct {
		name    string
		in      PlanInput
		want    string // slicesOf
		ip      string // "" none, "*" any
		creates string // members whose namespace is created
	}{
		{"an export reaches every member that has the namespace", PlanInput{Key: key, Members: []MemberView{
			{ID: "a", Reachable: true, HasNamespace: true},
			{ID: "b", Reachable: true, HasNamespace: true, Export: exported(export("b", time.Hour, clusterIP, "10.244.2.5"))},
			{ID: "c", Reachable: true, HasNamespace: false},
		}}, "a=b b=b c=-", "*", ""},
		{"createNamespaces imports into a member without the namespace", PlanInput{Key: key, CreateNamespaces: true, Members: []MemberView{
			{ID: "b", Reachable: true, HasNamespace: true, Export: exported(export("b", time.Hour, clusterIP, "10.244.2.5"))},
			{ID: "c", Reachable: true},
		}}, "b=b c=b", "*", "c"},
		{"a namespace not federated is imported nowhere", PlanInput{Key: key, Namespaces: []string{"other"}, Members: []MemberView{
			{ID: "a", Reachable: true, HasNamespace: true},
			{ID: "b", Reachable: true, HasNamespace: true, Export: exported(export("b", time.Hour, clusterIP, "10.244.2.5"))},
		}}, "a=- b=-", "*", ""},
		{"an unreachable member's recalled export still reaches the others; nothing is written to it", PlanInput{Key: key, Members: []MemberView{
			{ID: "a", Reachable: true, HasNamespace: true},
			{ID: "b", Reachable: false, Export: &stale},
		}}, "a=b", "*", ""},
		{"no valid export: every member's import goes", PlanInput{Key: key, Members: []MemberView{
			{ID: "a", Reachable: true, HasNamespace: true, IP: "240.245.0.9"},
			{ID: "b", Reachable: true, HasNamespace: true, Export: exported(export("b", time.Hour, nil))},
		}}, "a=- b=-", "", ""},
		{"a headless import has no clusterset IP", PlanInput{Key: key, Members: []MemberView{
			{ID: "a", Reachable: true, HasNamespace: true},
			{ID: "b", Reachable: true, HasNamespace: true, Export: exported(export("b", time.Hour, headless, "10.244.2.5"))},
		}}, "a=b b=b", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alloc, _ := NewAllocator("240.245.0.0/16")
			p, err := PlanService(tt.in, alloc)
			if err != nil {
				t.Fatal(err)
			}
			if got := slicesOf(p); got != tt.want {
				t.Errorf("desired = %s, want %s", got, tt.want)
			}
			if (tt.ip == "") != (p.IP == "") {
				t.Errorf("IP = %q, want %q", p.IP, tt.ip)
			}
			var creates []string
			for id := range p.CreateNamespace {
				creates = append(creates, id)
			}
			if strings.Join(creates, ",") != tt.creates {
				t.Errorf("creates namespaces in %v, want %q", creates, tt.creates)
			}
		})
	}
}

// The clusterset IP an import already shows is kept, and one held by another service (seeded
// into the allocator before any allocation) is never handed out again.
func TestPlanServiceKeepsShownIPsAndSeededOnes(t *testing.T) {
	alloc, _ := NewAllocator("240.245.0.0/16")
	other := Key{Namespace: "demo", Name: "other"}
	if !alloc.Hold(other, "240.245.0.10") {
		t.Fatal("seed")
	}
	e := exported(export("b", time.Hour, svc("10.0.0.1", port("http", 8080, "TCP"))))
	in := func(shown string) PlanInput {
		return PlanInput{Key: key, Members: []MemberView{{ID: "a", Reachable: true, HasNamespace: true, IP: shown}, {ID: "b", Reachable: true, HasNamespace: true, Export: e}}}
	}
	p, _ := PlanService(in("240.245.0.7"), alloc)
	if p.IP != "240.245.0.7" || p.Desired["a"].Import.Spec.IPs[0] != "240.245.0.7" {
		t.Errorf("the shown IP must be kept: %q", p.IP)
	}
	alloc.Release(key)
	if p, _ = PlanService(in("240.245.0.10"), alloc); p.IP == "240.245.0.10" || p.IP == "" {
		t.Errorf("an IP held by another service must not be reused: %q", p.IP)
	}
}

func TestMemoryKeepsAnUnreachableMembersExportForTheGracePeriod(t *testing.T) {
	m := NewMemory()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	grace := 20 * time.Second
	m.Seen("b", key, export("b", time.Hour, nil), true)
	steps := []struct {
		after     time.Duration
		reachable bool
		want      bool
		left      time.Duration
	}{
		{0, false, true, 20 * time.Second}, // first found unreachable: the grace starts
		{15 * time.Second, false, true, 5 * time.Second},
		{20 * time.Second, false, false, 0}, // over: forgotten
		{25 * time.Second, false, false, 0}, // and stays forgotten
	}
	for _, s := range steps {
		e, ok, left := m.Recall("b", key, t0.Add(s.after), grace)
		if ok != s.want || left != s.left || (ok && !e.Stale) {
			t.Errorf("at +%s: ok=%v left=%s stale=%v, want ok=%v left=%s", s.after, ok, left, e.Stale, s.want, s.left)
		}
	}
	// Back, and gone again later: a new grace period.
	m.Seen("b", key, export("b", time.Hour, nil), true)
	if _, ok, left := m.Recall("b", key, t0.Add(time.Hour), grace); !ok || left != grace {
		t.Errorf("a member back and gone again gets a new grace period: ok=%v left=%s", ok, left)
	}
}

func TestThrottleReportsABurstOnceAndItsLastChangeLater(t *testing.T) {
	th := &Throttle{Every: 2 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		after  time.Duration
		failed bool
		due    bool
		defers time.Duration
	}{
		{0, false, true, 0},
		{500 * time.Millisecond, false, false, 1500 * time.Millisecond}, // the first skipped is deferred
		{time.Second, false, false, 0},                                  // the deferred one carries it
		{1500 * time.Millisecond, true, true, 0},                        // a failure is always reported
		{4 * time.Second, false, true, 0},
	}
	for _, s := range steps {
		due, defers := th.Due("mesh", t0.Add(s.after), s.failed)
		if due != s.due || defers != s.defers {
			t.Errorf("at +%s: due=%v defer=%s, want %v %s", s.after, due, defers, s.due, s.defers)
		}
	}
}

func TestChangesKeepTheEarliestPendingChange(t *testing.T) {
	var c Changes[Key]
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.Note(key, t0.Add(time.Second))
	c.Note(key, t0)
	c.Note(key, t0.Add(2*time.Second))
	if at, ok := c.Take(key); !ok || !at.Equal(t0) {
		t.Errorf("take = %s %v, want the earliest", at, ok)
	}
	if _, ok := c.Take(key); ok {
		t.Error("taken once")
	}
}

// After an operator restart an unreachable member's export is rebuilt from another member's
// import and MCS slice: it resolves to the same import, with the same endpoints, and its grace
// period counts from when the member went away.
func TestReconstructedExportKeepsTheImportForTheRestOfTheGrace(t *testing.T) {
	b := export("b", time.Hour, svc("10.0.0.1", port("http", 8080, "TCP")), "10.244.2.5")
	b.ExportedLabels = map[string]string{"tier": "web"}
	imp, _ := Resolve([]Export{b})
	owned := map[string]string{"mesh.fleetmesh.io/installation": "mesh"}
	d := ForMember(imp, "a", "", "240.245.0.7", owned)
	d.Import.Annotations = map[string]string{"mesh.fleetmesh.io/applied-hash": "x"}
	rebuilt := Reconstruct("b", d.Import, d.Slices[0], []string{"mesh.fleetmesh.io/installation"}, []string{"mesh.fleetmesh.io/applied-hash"})
	again, v := Resolve([]Export{rebuilt})
	if !v["b"].Valid || v["b"].Conflict || again.Type != imp.Type || len(again.Ports) != 1 || again.Ports[0] != imp.Ports[0] || again.Labels["tier"] != "web" || len(again.Labels) != 1 {
		t.Fatalf("rebuilt import = %+v (verdict %+v), want %+v", again, v["b"], imp)
	}
	if got := ForMember(again, "a", "", "240.245.0.7", owned).Slices[0]; len(got.Endpoints) != 1 || got.Endpoints[0].Addresses[0] != "10.244.2.5" || got.Labels[StaleLabel] != "true" {
		t.Errorf("rebuilt slice = %+v", got)
	}

	m := NewMemory()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	away := t0.Add(-15 * time.Second) // the member went away 15 s before the restart
	m.Restore("b", key, rebuilt, away)
	if _, ok, left := m.Recall("b", key, t0, 20*time.Second); !ok || left != 5*time.Second {
		t.Errorf("restored: ok=%v left=%s, want the 5 s left of the grace", ok, left)
	}
	if _, ok, _ := m.Recall("b", key, t0.Add(5*time.Second), 20*time.Second); ok {
		t.Error("kept past the grace period")
	}
	m.Restore("b", key, rebuilt, t0.Add(5*time.Second))
	if _, ok, _ := m.Recall("b", key, t0.Add(6*time.Second), 20*time.Second); ok {
		t.Error("an expired export must not be restored again until the member is back")
	}
	m.Seen("b", key, Export{}, false)
	if m.Knows("b", key) {
		t.Error("a member seen again clears what was held")
	}
}

// An export limited to some members (the export-to annotation) and rebuilt after an operator
// restart from a member's slice reaches the same members, never another.
func TestReconstructedExportKeepsItsReach(t *testing.T) {
	b := export("b", time.Hour, svc("10.0.0.1", port("http", 8080, "TCP")), "10.244.2.5")
	b.ExportTo = []string{"a"}
	imp, _ := Resolve([]Export{b})
	d := ForMember(imp, "a", "", "240.245.0.7", nil)
	if d.Slices[0].Annotations[ExportToAnnotation] != "a" {
		t.Fatalf("the slice does not carry the export's reach: %v", d.Slices[0].Annotations)
	}
	rebuilt := Reconstruct("b", d.Import, d.Slices[0], nil, nil)
	again, _ := Resolve([]Export{rebuilt})
	if got := ForMember(again, "c", "", "240.245.0.7", nil); got.Import != nil {
		t.Errorf("the rebuilt export reaches c, which it was never exported to: %+v", got.Import)
	}
	if got := ForMember(again, "a", "", "240.245.0.7", nil); got.Import == nil || got.Slices[0].Annotations[ExportToAnnotation] != "a" {
		t.Errorf("the rebuilt export no longer reaches a as it did: %+v", got)
	}
	// An export to every member says nothing: its rebuilt self reaches every member.
	b.ExportTo = nil
	imp, _ = Resolve([]Export{b})
	d = ForMember(imp, "a", "", "240.245.0.7", nil)
	again, _ = Resolve([]Export{Reconstruct("b", d.Import, d.Slices[0], nil, nil)})
	if _, has := d.Slices[0].Annotations[ExportToAnnotation]; has || ForMember(again, "c", "", "240.245.0.7", nil).Import == nil {
		t.Error("an export to every member is rebuilt as one to fewer")
	}
}

// Members on one network get each other's pod endpoints; a member on another network gets the
// exporter's east-west gateway, on the gateway port, weighted by the endpoints behind it — or no
// endpoint when the exporter has no gateway address or the import is Headless.
func TestForMemberAcrossNetworks(t *testing.T) {
	withNet := func(e Export, network, gw string) Export { e.Network, e.Gateway = network, gw; return e }
	type want struct {
		addrs   string // endpoint addresses, ","-joined
		port    int32
		network string // the slice's network label
		weight  string
	}
	for _, tc := range []struct {
		name            string
		src             Export
		importerNetwork string
		want            want
	}{
		{"same network, both defaulted", export("c", time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")), "10.244.3.5", "10.244.3.6"), "",
			want{addrs: "10.244.3.5,10.244.3.6", port: 8080}},
		{"same named network", withNet(export("c", time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")), "10.244.3.5"), "vpc-2", "192.0.2.3"), "vpc-2",
			want{addrs: "10.244.3.5", port: 8080}},
		{"other network: the gateway, weighted", withNet(export("c", time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")), "10.244.3.5", "10.244.3.6"), "vpc-2", "192.0.2.3"), "",
			want{addrs: "192.0.2.3", port: wire.GatewayPort, network: "vpc-2", weight: "2"}},
		{"other network without a gateway address: no endpoint", withNet(export("c", time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")), "10.244.3.5"), "vpc-2", ""), "default",
			want{port: wire.GatewayPort, network: "vpc-2"}},
		{"other network, no ready endpoint: no gateway endpoint", withNet(export("c", time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP"))), "vpc-2", "192.0.2.3"), "",
			want{port: wire.GatewayPort, network: "vpc-2"}},
		{"other network, headless: no endpoint", withNet(export("c", time.Hour, svc(corev1.ClusterIPNone, port("grpc", 8080, "TCP")), "10.244.3.5"), "vpc-2", "192.0.2.3"), "",
			want{port: wire.GatewayPort, network: "vpc-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imp, _ := Resolve([]Export{tc.src})
			d := ForMember(imp, "a", tc.importerNetwork, "240.245.0.7", nil)
			if len(d.Slices) != 1 {
				t.Fatalf("%d slices, want 1", len(d.Slices))
			}
			s := d.Slices[0]
			var addrs []string
			for _, ep := range s.Endpoints {
				addrs = append(addrs, ep.Addresses...)
			}
			got := want{addrs: strings.Join(addrs, ","), port: *s.Ports[0].Port, network: s.Labels[wire.NetworkLabel], weight: s.Annotations[wire.EndpointWeightAnnotation]}
			if got != tc.want {
				t.Errorf("slice %+v, want %+v", got, tc.want)
			}
			if n := ptr.Deref(s.Ports[0].Name, ""); n != "grpc" {
				t.Errorf("port name %q, want the service's port name kept", n)
			}
		})
	}
}

// A mixed fleet: a and b share a network, c is on another. Each importer's slice of every
// source is what its network can reach.
func TestPlanServiceInAMixedFleet(t *testing.T) {
	src := func(id, network, gw, ip string) *Export {
		e := export(id, time.Hour, svc("10.0.0.1", port("grpc", 8080, "TCP")), ip)
		e.Network, e.Gateway = network, gw
		return &e
	}
	in := PlanInput{Key: key, Members: []MemberView{
		{ID: "a", Reachable: true, HasNamespace: true},
		{ID: "b", Reachable: true, HasNamespace: true, Network: "default", Export: src("b", "default", "192.0.2.2", "10.244.2.5")},
		{ID: "c", Reachable: true, HasNamespace: true, Network: "vpc-2", Export: src("c", "vpc-2", "192.0.2.3", "10.244.2.5")}, // overlapping pod IP
	}}
	p, err := PlanService(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for id, d := range p.Desired {
		for _, s := range d.Slices {
			got[id+"<-"+s.Labels[mcsv1beta1.LabelSourceCluster]] = s.Endpoints[0].Addresses[0]
		}
	}
	want := map[string]string{"a<-b": "10.244.2.5", "a<-c": "192.0.2.3", "b<-b": "10.244.2.5", "b<-c": "192.0.2.3", "c<-b": "192.0.2.2", "c<-c": "10.244.2.5"}
	if !maps.Equal(got, want) {
		t.Errorf("endpoints by importer<-source = %v, want %v", got, want)
	}
}
