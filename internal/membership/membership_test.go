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

package membership

import (
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mi(name string, age time.Duration, labels map[string]string) meshv1alpha1.MeshInstallation {
	return meshv1alpha1.MeshInstallation{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name), CreationTimestamp: metav1.NewTime(t0.Add(-age))},
		Spec: meshv1alpha1.MeshInstallationSpec{
			ClusterSelector: meshv1alpha1.ClusterSelector{MatchLabels: labelValues(labels)},
			Trust:           meshv1alpha1.TrustSpec{TrustDomainTemplate: "{cluster}.{namespace}.{mesh}"},
		},
	}
}

func labelValues(in map[string]string) map[string]meshv1alpha1.LabelValue {
	out := make(map[string]meshv1alpha1.LabelValue, len(in))
	for k, v := range in {
		out[k] = meshv1alpha1.LabelValue(v)
	}
	return out
}

func cluster(ns, name string, labels map[string]string) clusterv1.Cluster {
	return clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

func names(cs []*clusterv1.Cluster) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Namespace+"/"+c.Name)
	}
	return out
}

func TestSelectOldestInstallationOwnsACluster(t *testing.T) {
	old := mi("old", time.Hour, map[string]string{"env": "prod"})
	young := mi("young", time.Minute, map[string]string{"mesh": "yes"})
	clusters := []clusterv1.Cluster{
		cluster("a", "both", map[string]string{"env": "prod", "mesh": "yes"}),
		cluster("a", "young-only", map[string]string{"mesh": "yes"}),
		cluster("a", "none", map[string]string{"env": "dev"}),
	}
	deleting := cluster("a", "deleting", map[string]string{"mesh": "yes"})
	deleting.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	clusters = append(clusters, deleting)
	all := []meshv1alpha1.MeshInstallation{old, young}

	sel, err := Select(&young, all, clusters)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(sel.Members), ","); got != "a/young-only" {
		t.Errorf("young owns %q, want a/young-only", got)
	}
	if len(sel.Conflicts) != 1 || sel.Conflicts[0] != (Conflict{Cluster: "a/both", OwnedBy: "old"}) {
		t.Errorf("conflicts = %+v, want a/both owned by old", sel.Conflicts)
	}
	sel, _ = Select(&old, all, clusters)
	if got := strings.Join(names(sel.Members), ","); got != "a/both" || len(sel.Conflicts) != 0 {
		t.Errorf("old owns %q with conflicts %v, want a/both and none", got, sel.Conflicts)
	}
}

func TestPlanMembersRefusesCollidingAndOverlongTrustDomains(t *testing.T) {
	m := mi("mesh", 0, nil)
	m.Spec.Trust.TrustDomainTemplate = "{cluster}.example"
	long := strings.Repeat("x", 250)
	members := []*clusterv1.Cluster{
		ptr.To(cluster("ns1", "east", map[string]string{RegionLabel: "eu", ZoneLabel: "eu-1"})),
		ptr.To(cluster("ns1", "west", nil)),
		ptr.To(cluster("ns2", "west", nil)),
		ptr.To(cluster("ns1", long, nil)),
	}
	p := PlanMembers(&m, members, nil)
	if len(p.Specs) != 1 {
		t.Fatalf("want only ns1/east planned, got %v", p.Specs)
	}
	east := p.Specs["ns1/east"]
	if east.TrustDomain != "east.example" || east.Locality.Region != "eu" || east.Locality.Zone != "eu-1" || east.Installation != "mesh" {
		t.Errorf("east spec = %+v", east)
	}
	joined := strings.Join(p.Refused, "\n")
	for _, want := range []string{"ns1/west, ns2/west all expand to trust domain \"west.example\"", "over the SPIFFE limit of 255"} {
		if !strings.Contains(joined, want) {
			t.Errorf("refusals %q do not mention %q", joined, want)
		}
	}
}

// A newcomer that collides with a joined member's trust domain is refused alone: the member
// keeps working (before, both were refused and the member was uninstalled as "no longer selected").
func TestPlanMembersKeepsTheJoinedHolderOfATrustDomain(t *testing.T) {
	m := mi("mesh", 0, nil)
	m.Spec.Trust.TrustDomainTemplate = "{cluster}.example"
	members := []*clusterv1.Cluster{ptr.To(cluster("ns1", "west", nil)), ptr.To(cluster("ns2", "west", nil)), ptr.To(cluster("ns3", "west", nil))}
	joined := meshv1alpha1.MeshCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns2", Name: "west"},
		Spec:       meshv1alpha1.MeshClusterSpec{Installation: "mesh", TrustDomain: "west.example"},
	}
	p := PlanMembers(&m, members, []meshv1alpha1.MeshCluster{joined})
	if _, ok := p.Specs["ns2/west"]; !ok || len(p.Specs) != 1 {
		t.Fatalf("want only the joined ns2/west planned, got %v", p.Specs)
	}
	got := strings.Join(p.Refused, "\n")
	for _, want := range []string{"cluster ns1/west expands to trust domain \"west.example\", which member ns2/west already holds", "cluster ns3/west"} {
		if !strings.Contains(got, want) {
			t.Errorf("refusals %q do not mention %q", got, want)
		}
	}
	// A member of another installation, or one being deleted, holds nothing.
	joined.Spec.Installation = "other"
	if p := PlanMembers(&m, members, []meshv1alpha1.MeshCluster{joined}); len(p.Specs) != 0 {
		t.Errorf("another installation's member kept %v", p.Specs)
	}
}

func memberWith(name string, conds ...metav1.Condition) meshv1alpha1.MeshCluster {
	return meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name}, Status: meshv1alpha1.MeshClusterStatus{Conditions: conds}}
}

func cond(t string, s metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: reason}
}

func TestSummarize(t *testing.T) {
	ready := memberWith("a", cond("Ready", "True", "Reconciled"))
	down := memberWith("b", cond("Connected", "False", "Unreachable"), cond("Ready", "False", "Unreachable"))
	rolling := memberWith("c", cond("Connected", "True", "Connected"), cond("Ready", "False", "RollingOut"))
	tests := []struct {
		name                         string
		selected                     int
		members                      []meshv1alpha1.MeshCluster
		conflicts                    []Conflict
		ready, progressing, degraded string
		messageHas                   string
	}{
		{"all ready", 1, []meshv1alpha1.MeshCluster{ready}, nil, "True/Reconciled", "False/Reconciled", "False/Reconciled", "1/1 members ready"},
		{"nothing selected", 0, nil, nil, "False/NoClustersSelected", "False/NoClustersSelected", "False/Reconciled", "matches no Cluster"},
		{"one unreachable", 2, []meshv1alpha1.MeshCluster{ready, down}, nil, "False/MembersNotReady", "False/RollingOut", "True/Unreachable", "fleet/b (Unreachable)"},
		{"rolling out", 2, []meshv1alpha1.MeshCluster{ready, rolling}, nil, "False/MembersNotReady", "True/RollingOut", "False/Reconciled", "fleet/c (RollingOut)"},
		{"member not created yet", 2, []meshv1alpha1.MeshCluster{ready}, nil, "False/MembersNotReady", "True/RollingOut", "False/Reconciled", "1 members without a MeshCluster yet"},
		{"conflict", 1, []meshv1alpha1.MeshCluster{ready}, []Conflict{{Cluster: "fleet/x", OwnedBy: "old"}}, "True/Reconciled", "False/Reconciled", "True/Conflict", "fleet/x is owned by the older MeshInstallation \"old\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarize(7, tt.selected, tt.members, tt.conflicts, nil)
			got := func(ty string) string {
				c := meta.FindStatusCondition(s.Conditions, ty)
				if c == nil {
					return ""
				}
				if c.ObservedGeneration != 7 {
					t.Errorf("%s observedGeneration = %d", ty, c.ObservedGeneration)
				}
				return string(c.Status) + "/" + c.Reason
			}
			if g := got("Ready"); g != tt.ready {
				t.Errorf("Ready = %s, want %s", g, tt.ready)
			}
			if g := got("Progressing"); g != tt.progressing {
				t.Errorf("Progressing = %s, want %s", g, tt.progressing)
			}
			if g := got("Degraded"); g != tt.degraded {
				t.Errorf("Degraded = %s, want %s", g, tt.degraded)
			}
			all := ""
			for _, c := range s.Conditions {
				all += c.Message + "\n"
			}
			if !strings.Contains(all, tt.messageHas) {
				t.Errorf("messages %q lack %q", all, tt.messageHas)
			}
		})
	}
}

func TestControlPlaneReady(t *testing.T) {
	dep := func(gen, observed int64, replicas, updated, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(int32(2))},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available},
		}
	}
	tests := []struct {
		name    string
		dep     *appsv1.Deployment
		version string
		ready   bool
		reason  string
	}{
		{"ready", dep(2, 2, 2, 2, 2), "v1", true, "AgentReady"},
		{"not observed", dep(3, 2, 2, 2, 2), "v1", false, "RollingOut"},
		{"updating", dep(2, 2, 3, 1, 2), "v1", false, "RollingOut"},
		{"old pod still there", dep(2, 2, 3, 2, 2), "v1", false, "RollingOut"},
		{"silent agent", dep(2, 2, 2, 2, 2), "", false, "AgentVersionMismatch"},
		{"old agent", dep(2, 2, 2, 2, 2), "v0", false, "AgentVersionMismatch"},
	}
	for _, tt := range tests {
		ready, reason, msg := ControlPlaneReady(tt.dep, tt.version, "v1")
		if ready != tt.ready || reason != tt.reason || msg == "" {
			t.Errorf("%s: got %v %s %q, want %v %s", tt.name, ready, reason, msg, tt.ready, tt.reason)
		}
	}
}

func TestOnlyServiceCountsChanged(t *testing.T) {
	synced := func(st metav1.ConditionStatus, msg string) metav1.Condition {
		return metav1.Condition{Type: meshv1alpha1.ServicesSyncedCondition, Status: st, Reason: "Synced", Message: msg}
	}
	base := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: "m", ResourceVersion: "1", Generation: 1}}
	base.Status.ExportedServices, base.Status.ImportedServices = 1, 2
	base.Status.Conditions = []metav1.Condition{synced(metav1.ConditionTrue, "1 services exported here, 2 imported")}

	counts := base.DeepCopy()
	counts.ResourceVersion = "2"
	counts.Status.ExportedServices, counts.Status.ImportedServices = 5, 7
	counts.Status.Conditions[0].Message = "5 services exported here, 7 imported"
	if !OnlyServiceCountsChanged(base, counts) {
		t.Error("a counts-only update must be recognised as one")
	}
	retrying := base.DeepCopy()
	retrying.Status.Conditions[0] = synced(metav1.ConditionFalse, "service federation is retrying")
	if OnlyServiceCountsChanged(retrying, counts) {
		t.Error("ServicesSynced turning true again must wake the controllers")
	}

	for name, change := range map[string]func(mc *meshv1alpha1.MeshCluster){
		"ServicesSynced turns false": func(mc *meshv1alpha1.MeshCluster) {
			mc.Status.Conditions[0] = synced(metav1.ConditionFalse, "service federation is retrying")
		},
		"ServicesSynced observed at a new generation": func(mc *meshv1alpha1.MeshCluster) {
			mc.Status.Conditions[0].ObservedGeneration = 2
		},
		"another condition": func(mc *meshv1alpha1.MeshCluster) {
			meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: meshv1alpha1.TrustFederatedCondition, Status: metav1.ConditionFalse, Reason: "Propagating"})
		},
		"the spec":      func(mc *meshv1alpha1.MeshCluster) { mc.Generation++; mc.Spec.TrustDomain = "b.example" },
		"a label":       func(mc *meshv1alpha1.MeshCluster) { mc.Labels = map[string]string{"x": "y"} },
		"deletion":      func(mc *meshv1alpha1.MeshCluster) { mc.DeletionTimestamp = &metav1.Time{Time: time.Now()} },
		"agent version": func(mc *meshv1alpha1.MeshCluster) { mc.Status.AgentVersion = "v2" },
	} {
		changed := counts.DeepCopy()
		change(changed)
		if OnlyServiceCountsChanged(base, changed) {
			t.Errorf("%s: an update that changes %s must wake the controllers", name, name)
		}
	}
}

func TestClusterIDIsAUniqueDNSLabel(t *testing.T) {
	long := strings.Repeat("c", 60)
	for _, tc := range []struct{ cluster, namespace, want string }{
		{"member-1", "fleet", "member-1-fleet"},
		{"prod.eu", "capi", "prod-eu-capi"},
	} {
		if got := ClusterID(tc.cluster, tc.namespace); got != tc.want {
			t.Errorf("ClusterID(%s, %s) = %s, want %s", tc.cluster, tc.namespace, got, tc.want)
		}
	}
	a, b := ClusterID(long, "ns-a"), ClusterID(long, "ns-b")
	label := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	if a == b || !label.MatchString(a) || !label.MatchString(b) {
		t.Errorf("long IDs %q and %q must be distinct DNS labels", a, b)
	}
}

func TestPlanMembersRefusesANewcomerWithAHeldClusterID(t *testing.T) {
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "mesh"}}
	mi.Spec.Trust.TrustDomainTemplate = "{cluster}.{namespace}.{mesh}"
	held := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "a-b", Namespace: "c"}}
	newcomer := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "b-c"}}
	existing := []meshv1alpha1.MeshCluster{{ObjectMeta: metav1.ObjectMeta{Name: "a-b", Namespace: "c"},
		Spec: meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "a-b"}, Installation: "mesh"}}}
	p := PlanMembers(mi, []*clusterv1.Cluster{held, newcomer}, existing)
	if _, ok := p.Specs["c/a-b"]; !ok || len(p.Specs) != 1 {
		t.Fatalf("the joined member keeps its cluster ID: specs %v", p.Specs)
	}
	if len(p.Refused) != 1 || !strings.Contains(p.Refused[0], `cluster b-c/a expands to cluster ID "a-b-c", which member c/a-b already holds`) {
		t.Errorf("refused = %q", p.Refused)
	}
}

// A member's network is its Cluster's label (the default network without one), its gateway
// address the Cluster's annotation; a value the API could not hold refuses that member alone,
// naming the label or annotation.
func TestDesiredMemberNetworkAndGateway(t *testing.T) {
	m := mi("mesh", 0, nil)
	withGateway := func(c clusterv1.Cluster, addr string) *clusterv1.Cluster {
		c.Annotations = map[string]string{GatewayAddressAnnotation: addr}
		return &c
	}
	for _, tc := range []struct {
		name             string
		c                *clusterv1.Cluster
		network, gateway string
		err              string
	}{
		{name: "no label", c: ptr.To(cluster("ns", "a", nil)), network: "default"},
		{name: "label", c: ptr.To(cluster("ns", "a", map[string]string{NetworkLabel: "vpc-2"})), network: "vpc-2"},
		{name: "gateway", c: withGateway(cluster("ns", "a", map[string]string{NetworkLabel: "vpc-2"}), "192.0.2.7"), network: "vpc-2", gateway: "192.0.2.7"},
		{name: "label not a DNS label", c: ptr.To(cluster("ns", "a", map[string]string{NetworkLabel: "VPC_2"})), err: `label mesh.fleetmesh.io/network of ns/a is "VPC_2"`},
		{name: "gateway not IPv4", c: withGateway(cluster("ns", "a", nil), "2001:db8::1"), err: "annotation mesh.fleetmesh.io/gateway-address of ns/a is \"2001:db8::1\": an IPv4 address is allowed"},
		{name: "gateway with a port", c: withGateway(cluster("ns", "a", nil), "192.0.2.7:15443"), err: "an IPv4 address is allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := DesiredMember(&m, tc.c)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one containing %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case spec.Network != tc.network || spec.GatewayAddress != tc.gateway:
				t.Errorf("network %q gateway %q, want %q %q", spec.Network, spec.GatewayAddress, tc.network, tc.gateway)
			}
		})
	}
}

// A joined member whose network label or gateway annotation turns invalid keeps its network and
// address (a typo must not uninstall it); a newcomer with one is refused.
func TestPlanMembersKeepsAJoinedMemberOnItsNetwork(t *testing.T) {
	m := mi("mesh", 0, nil)
	bad := cluster("ns", "a", map[string]string{NetworkLabel: "VPC_2"})
	newcomer := cluster("ns", "b", map[string]string{NetworkLabel: "VPC_2"})
	joined := meshv1alpha1.MeshCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"},
		Spec: meshv1alpha1.MeshClusterSpec{Installation: "mesh", ClusterRef: meshv1alpha1.ClusterReference{Name: "a"},
			TrustDomain: "a.ns.mesh.fleetmesh.local", Network: "vpc-1", GatewayAddress: "192.0.2.7"},
	}
	p := PlanMembers(&m, []*clusterv1.Cluster{&bad, &newcomer}, []meshv1alpha1.MeshCluster{joined})
	spec, ok := p.Specs["ns/a"]
	if !ok || spec.Network != "vpc-1" || spec.GatewayAddress != "192.0.2.7" {
		t.Fatalf("joined member planned as %+v (planned %v), want it kept on vpc-1 via 192.0.2.7", spec, ok)
	}
	if _, ok := p.Specs["ns/b"]; ok {
		t.Error("the newcomer with an invalid network label was planned")
	}
	got := strings.Join(p.Refused, "\n")
	for _, want := range []string{`label mesh.fleetmesh.io/network of ns/a is "VPC_2"`, `member ns/a stays on network "vpc-1"`, "of ns/b is"} {
		if !strings.Contains(got, want) {
			t.Errorf("refusals %q do not mention %q", got, want)
		}
	}
}

func TestGatewayReady(t *testing.T) {
	available := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)}, Status: appsv1.DeploymentStatus{UpdatedReplicas: 1, AvailableReplicas: 1}}
	for _, tc := range []struct {
		name        string
		dep         *appsv1.Deployment
		address, lb string
		ready       bool
		reason, msg string
	}{
		{"not observed", nil, "192.0.2.7", "", false, meshv1alpha1.ReasonRollingOut, "not observed yet"},
		{"not available", &appsv1.Deployment{Status: appsv1.DeploymentStatus{UpdatedReplicas: 1}}, "192.0.2.7", "", false, meshv1alpha1.ReasonRollingOut, "0 of 1 replicas available"},
		{"no address", available, "", "", false, meshv1alpha1.ReasonGatewayNoAddress, "annotate Cluster fleet/c with mesh.fleetmesh.io/gateway-address="},
		{"no address, the LoadBalancer shows one", available, "", "203.0.113.9", false, meshv1alpha1.ReasonGatewayNoAddress, "its LoadBalancer shows 203.0.113.9"},
		{"ready", available, "192.0.2.7", "", true, meshv1alpha1.ReasonGatewayReady, "at 192.0.2.7:15443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready, reason, msg := GatewayReady(tc.dep, tc.address, tc.lb, "fleet/c")
			if ready != tc.ready || reason != tc.reason || !strings.Contains(msg, tc.msg) {
				t.Errorf("GatewayReady = %v %s %q, want %v %s containing %q", ready, reason, msg, tc.ready, tc.reason, tc.msg)
			}
		})
	}
}
