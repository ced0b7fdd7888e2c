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

// Package membership decides which Cluster API clusters are members of which MeshInstallation,
// what each member's MeshCluster says, and how members' state sums up into the installation's
// status. Pure functions: the controllers gather the inputs and apply the outputs.
package membership

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Locality labels read from a Cluster.
const (
	RegionLabel = "topology.kubernetes.io/region"
	ZoneLabel   = "topology.kubernetes.io/zone"
)

// Network of a Cluster: its label (wire.NetworkLabel, wire.DefaultNetwork without it) and the
// address of its east-west gateway, given by the GatewayAddressAnnotation.
const (
	NetworkLabel             = wire.NetworkLabel
	GatewayAddressAnnotation = "mesh.fleetmesh.io/gateway-address"
)

// MaxTrustDomainLength is the SPIFFE limit on a trust domain.
const MaxTrustDomainLength = 255

// ExpandTrustDomain fills the template's tokens.
func ExpandTrustDomain(template, cluster, namespace, mesh string) string {
	return strings.NewReplacer("{cluster}", cluster, "{namespace}", namespace, "{mesh}", mesh).Replace(template)
}

// Older reports whether a was created before b; the name breaks ties so the order is total.
func Older(a, b metav1.Object) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.GetName() < b.GetName()
}

// Conflict is a Cluster that the installation selects but an older installation owns.
type Conflict struct {
	Cluster string // namespace/name
	OwnedBy string
}

// Selection is the outcome of matching an installation's selector against every Cluster.
type Selection struct {
	// Members are the Clusters this installation owns, sorted by namespace/name.
	Members []*clusterv1.Cluster
	// Conflicts are selected Clusters that an older installation owns.
	Conflicts []Conflict
}

// Select returns the Clusters mi owns: those its selector matches, unless an older installation
// (among all) also matches them. Clusters being deleted are not members.
func Select(mi *meshv1alpha1.MeshInstallation, all []meshv1alpha1.MeshInstallation, clusters []clusterv1.Cluster) (Selection, error) {
	if invalid := mi.Spec.InvalidDurations(); len(invalid) > 0 {
		return Selection{}, errors.New(strings.Join(invalid, "; ") + "; fix the spec: no member is joined or removed until then")
	}
	own, err := metav1.LabelSelectorAsSelector(mi.Spec.ClusterSelector.LabelSelector())
	if err != nil {
		return Selection{}, fmt.Errorf("spec.clusterSelector: %w", err)
	}
	type rival struct {
		mi  *meshv1alpha1.MeshInstallation
		sel labels.Selector
	}
	var older []rival
	for i := range all {
		o := &all[i]
		if o.UID == mi.UID || o.Name == mi.Name || !Older(o, mi) || !o.DeletionTimestamp.IsZero() {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(o.Spec.ClusterSelector.LabelSelector())
		if err != nil {
			continue // its own status reports it
		}
		older = append(older, rival{o, sel})
	}
	var out Selection
	for i := range clusters {
		c := &clusters[i]
		if !c.DeletionTimestamp.IsZero() || !own.Matches(labels.Set(c.Labels)) {
			continue
		}
		owner := ""
		for _, r := range older {
			if r.sel.Matches(labels.Set(c.Labels)) {
				owner = r.mi.Name
				break
			}
		}
		if owner != "" {
			out.Conflicts = append(out.Conflicts, Conflict{Cluster: c.Namespace + "/" + c.Name, OwnedBy: owner})
			continue
		}
		out.Members = append(out.Members, c)
	}
	sort.Slice(out.Members, func(i, j int) bool {
		return out.Members[i].Namespace+"/"+out.Members[i].Name < out.Members[j].Namespace+"/"+out.Members[j].Name
	})
	sort.Slice(out.Conflicts, func(i, j int) bool { return out.Conflicts[i].Cluster < out.Conflicts[j].Cluster })
	return out, nil
}

// DesiredMember is the spec of the MeshCluster for a member, or an error naming why the member
// cannot have one (an invalid trust domain).
func DesiredMember(mi *meshv1alpha1.MeshInstallation, c *clusterv1.Cluster) (meshv1alpha1.MeshClusterSpec, error) {
	td := ExpandTrustDomain(mi.Spec.Trust.TrustDomainTemplate, c.Name, c.Namespace, mi.Name)
	if len(td) > MaxTrustDomainLength {
		return meshv1alpha1.MeshClusterSpec{}, fmt.Errorf("trust domain of %s/%s expands to %d characters, over the SPIFFE limit of %d: shorten spec.trust.trustDomainTemplate", c.Namespace, c.Name, len(td), MaxTrustDomainLength)
	}
	spec := meshv1alpha1.MeshClusterSpec{
		ClusterRef:   meshv1alpha1.ClusterReference{Name: c.Name},
		Installation: mi.Name,
		TrustDomain:  td,
		Locality:     meshv1alpha1.Locality{Region: c.Labels[RegionLabel], Zone: c.Labels[ZoneLabel]},
	}
	network := c.Labels[NetworkLabel]
	if network == "" {
		network = wire.DefaultNetwork
	}
	if errs := validation.IsDNS1123Label(network); len(errs) > 0 {
		return spec, &NetworkError{fmt.Sprintf("label %s of %s/%s is %q: %s", NetworkLabel, c.Namespace, c.Name, network, strings.Join(errs, "; "))}
	}
	gw := c.Annotations[GatewayAddressAnnotation]
	if a, err := netip.ParseAddr(gw); gw != "" && (err != nil || !a.Is4()) {
		return spec, &NetworkError{fmt.Sprintf("annotation %s of %s/%s is %q: an IPv4 address is allowed", GatewayAddressAnnotation, c.Namespace, c.Name, gw)}
	}
	spec.Network, spec.GatewayAddress = network, gw
	return spec, nil
}

// NetworkError is DesiredMember's error for a Cluster whose network label or gateway address
// annotation is invalid; the spec it returns with one is complete but for those two fields.
type NetworkError struct{ msg string }

func (e *NetworkError) Error() string { return e.msg }

// Plan is every member's desired MeshCluster spec plus the members refused and why.
type Plan struct {
	Specs   map[string]meshv1alpha1.MeshClusterSpec // by namespace/name
	Refused []string                                // human-readable reasons
}

// PlanMembers expands every member's spec and refuses members whose trust domain is invalid or
// equal to another member's (two members may never share a trust domain), or whose cluster ID
// (ClusterID) is another member's. existing are the installation's MeshClusters: when clusters
// collide on a trust domain or cluster ID that one of them already holds as a joined member,
// that member keeps it and only the newcomers are refused; with no such holder, every colliding
// cluster is refused.
func PlanMembers(mi *meshv1alpha1.MeshInstallation, members []*clusterv1.Cluster, existing []meshv1alpha1.MeshCluster) Plan {
	tdHolder := map[string]string{}                  // trust domain -> namespace/name of the member that holds it
	idHolder := map[string]string{}                  // cluster ID -> namespace/name
	joined := map[string]*meshv1alpha1.MeshCluster{} // namespace/name of the Cluster -> its MeshCluster
	for i := range existing {
		if mc := &existing[i]; mc.DeletionTimestamp.IsZero() && mc.Spec.Installation == mi.Name {
			tdHolder[mc.Spec.TrustDomain] = mc.Namespace + "/" + mc.Name
			idHolder[ClusterID(mc.Spec.ClusterRef.Name, mc.Namespace)] = mc.Namespace + "/" + mc.Name
			joined[mc.Namespace+"/"+mc.Spec.ClusterRef.Name] = mc
		}
	}
	p := Plan{Specs: map[string]meshv1alpha1.MeshClusterSpec{}}
	byTD := map[string][]string{}
	byID := map[string][]string{}
	for _, c := range members {
		key := c.Namespace + "/" + c.Name
		spec, err := DesiredMember(mi, c)
		var nerr *NetworkError
		if mc, ok := joined[key]; ok && errors.As(err, &nerr) {
			// A typo in a joined member's label must not uninstall it: it stays on its network.
			spec.Network, spec.GatewayAddress = mc.Spec.Network, mc.Spec.GatewayAddress
			p.Refused = append(p.Refused, fmt.Sprintf("%s; member %s stays on network %q", err, key, spec.Network))
			err = nil
		}
		if err != nil {
			p.Refused = append(p.Refused, err.Error())
			continue
		}
		p.Specs[key] = spec
		byTD[spec.TrustDomain] = append(byTD[spec.TrustDomain], key)
		id := ClusterID(c.Name, c.Namespace)
		byID[id] = append(byID[id], key)
	}
	p.refuseCollisions(byTD, tdHolder, "trust domain", "make spec.trust.trustDomainTemplate distinguish them, using {cluster} and {namespace}")
	p.refuseCollisions(byID, idHolder, "cluster ID", "cluster IDs join the Cluster's name and namespace with '-' and dots become '-': rename one Cluster")
	return p
}

// refuseCollisions drops from the plan every member whose value (a trust domain or cluster ID)
// another member has too, except the joined holder of it.
func (p *Plan) refuseCollisions(byValue map[string][]string, holder map[string]string, what, fix string) {
	values := make([]string, 0, len(byValue))
	for v := range byValue {
		values = append(values, v)
	}
	sort.Strings(values)
	for _, v := range values {
		var keys []string
		for _, k := range byValue[v] {
			if _, planned := p.Specs[k]; planned {
				keys = append(keys, k)
			}
		}
		if len(keys) < 2 {
			continue
		}
		sort.Strings(keys)
		if h, ok := holder[v]; ok && slices.Contains(keys, h) {
			for _, k := range keys {
				if k != h {
					delete(p.Specs, k)
					p.Refused = append(p.Refused, fmt.Sprintf("cluster %s expands to %s %q, which member %s already holds: it is not joined (%s)", k, what, v, h, fix))
				}
			}
			continue
		}
		for _, k := range keys {
			delete(p.Specs, k)
		}
		p.Refused = append(p.Refused, fmt.Sprintf("clusters %s all expand to %s %q: %s", strings.Join(keys, ", "), what, v, fix))
	}
}

// MaxClusterIDLength is an RFC 1123 DNS label's limit.
const MaxClusterIDLength = 63

// ClusterID is a member's MCS cluster ID (KEP-2149 ClusterProperty cluster.clusterset.k8s.io,
// the multicluster.kubernetes.io/source-cluster label of its endpoints): an RFC 1123 DNS label,
// so that it can appear in clusterset DNS names (<hostname>.<clusterid>.<svc>.<ns>.svc.
// clusterset.local) and in ServiceImport status.clusters ("Must be a valid RFC-1123 DNS label").
// It is the CAPI Cluster's name and namespace joined by '-', with dots made '-'; when that is
// over 63 characters it is cut and ends with a hash of both, so it stays unique.
func ClusterID(cluster, namespace string) string {
	id := strings.ReplaceAll(cluster+"-"+namespace, ".", "-")
	if len(id) <= MaxClusterIDLength {
		return id
	}
	sum := sha256.Sum256([]byte(namespace + "/" + cluster))
	return strings.TrimRight(id[:MaxClusterIDLength-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

// Summary is the installation's status computed from its members.
type Summary struct {
	Selected, Ready int32
	Conditions      []metav1.Condition
}

// Summarize computes Ready, Progressing and Degraded for an installation from its MeshClusters,
// the conflicts of its selection and the members refused by planning.
func Summarize(generation int64, selected int, members []meshv1alpha1.MeshCluster, conflicts []Conflict, refused []string) Summary {
	s := Summary{Selected: int32(selected)}
	var notReady, unreachable []string
	for i := range members {
		m := &members[i]
		name := m.Namespace + "/" + m.Name
		if meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ReadyCondition) {
			s.Ready++
			continue
		}
		if c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConnectedCondition); c != nil && c.Status == metav1.ConditionFalse {
			unreachable = append(unreachable, fmt.Sprintf("%s (%s)", name, c.Reason))
			continue
		}
		reason := "Pending"
		if c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ReadyCondition); c != nil {
			reason = c.Reason
		}
		notReady = append(notReady, fmt.Sprintf("%s (%s)", name, reason))
	}
	// Members expected but without a MeshCluster yet are not ready either.
	missing := selected - len(members)
	cond := func(t string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg, ObservedGeneration: generation}
	}

	var degradedMsgs []string
	degradedReason := ""
	if len(unreachable) > 0 {
		degradedReason = meshv1alpha1.ReasonUnreachable
		degradedMsgs = append(degradedMsgs, "members unreachable: "+strings.Join(unreachable, ", "))
	}
	if len(conflicts) > 0 {
		degradedReason = meshv1alpha1.ReasonConflict
		parts := make([]string, 0, len(conflicts))
		for _, c := range conflicts {
			parts = append(parts, fmt.Sprintf("%s is owned by the older MeshInstallation %q", c.Cluster, c.OwnedBy))
		}
		degradedMsgs = append(degradedMsgs, "clusters selected but not joined: "+strings.Join(parts, "; "))
	}
	if len(refused) > 0 {
		degradedReason = meshv1alpha1.ReasonInvalidSpec
		degradedMsgs = append(degradedMsgs, strings.Join(refused, "; "))
	}
	if degradedReason != "" {
		s.Conditions = append(s.Conditions, cond(meshv1alpha1.DegradedCondition, metav1.ConditionTrue, degradedReason, strings.Join(degradedMsgs, ". ")))
	} else {
		s.Conditions = append(s.Conditions, cond(meshv1alpha1.DegradedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonReconciled, "no member is degraded"))
	}

	switch {
	case selected == 0:
		s.Conditions = append(s.Conditions,
			cond(meshv1alpha1.ReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonNoClusters, "spec.clusterSelector matches no Cluster this installation owns: label Clusters to join them"),
			cond(meshv1alpha1.ProgressingCondition, metav1.ConditionFalse, meshv1alpha1.ReasonNoClusters, "nothing to roll out"))
	case int(s.Ready) == selected && len(refused) == 0:
		s.Conditions = append(s.Conditions,
			cond(meshv1alpha1.ReadyCondition, metav1.ConditionTrue, meshv1alpha1.ReasonReconciled, fmt.Sprintf("%d/%d members ready", s.Ready, selected)),
			cond(meshv1alpha1.ProgressingCondition, metav1.ConditionFalse, meshv1alpha1.ReasonReconciled, "every member runs the desired control plane"))
	default:
		waiting := append(append([]string{}, unreachable...), notReady...)
		if missing > 0 {
			waiting = append(waiting, fmt.Sprintf("%d members without a MeshCluster yet", missing))
		}
		msg := fmt.Sprintf("%d/%d members ready", s.Ready, selected)
		if len(waiting) > 0 {
			msg += "; waiting for " + strings.Join(waiting, ", ")
		}
		s.Conditions = append(s.Conditions, cond(meshv1alpha1.ReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonMembersNotReady, msg))
		progressing := metav1.ConditionTrue
		if len(notReady) == 0 && missing <= 0 {
			// Only unreachable members remain: nothing is moving until they come back.
			progressing = metav1.ConditionFalse
		}
		s.Conditions = append(s.Conditions, cond(meshv1alpha1.ProgressingCondition, progressing, meshv1alpha1.ReasonRollingOut, msg))
	}
	return s
}

// ControlPlaneReady decides whether the member's agent runs as desired: its Deployment rolled out
// and available, and the agent itself reporting the desired version.
func ControlPlaneReady(dep *appsv1.Deployment, agentVersion, wantVersion string) (ready bool, reason, msg string) {
	if msg := rollingOut(dep, "agent"); msg != "" {
		return false, meshv1alpha1.ReasonRollingOut, msg
	}
	switch {
	case agentVersion == "":
		return false, meshv1alpha1.ReasonVersionMismatch, "the agent has not reported its version yet (ConfigMap fleetmesh-system/fleetmesh-agent-status)"
	case agentVersion != wantVersion:
		return false, meshv1alpha1.ReasonVersionMismatch, fmt.Sprintf("the agent reports version %s, want %s (spec.controlPlane.version)", agentVersion, wantVersion)
	}
	return true, meshv1alpha1.ReasonAgentReady, fmt.Sprintf("agent %s available (%d/%d replicas)", agentVersion, dep.Status.AvailableReplicas, ptr.Deref(dep.Spec.Replicas, 1))
}

// rollingOut says why a Deployment of fleetmesh's (what names it in the message) is not done
// rolling out, or "" when it is: its controller has seen the last change, and exactly the
// replicas it wants are updated and available.
func rollingOut(dep *appsv1.Deployment, what string) string {
	want := ptr.Deref(dep.Spec.Replicas, 1)
	switch s := dep.Status; {
	case s.ObservedGeneration < dep.Generation:
		return what + " Deployment change not yet observed by the member's Deployment controller"
	case s.UpdatedReplicas < want:
		return fmt.Sprintf("%s rolling out: %d of %d replicas updated", what, s.UpdatedReplicas, want)
	case s.AvailableReplicas < want || s.Replicas > want:
		return fmt.Sprintf("%s rolling out: %d of %d replicas available, %d in total", what, s.AvailableReplicas, want, s.Replicas)
	}
	return ""
}

// GatewayReady is a member's GatewayReady condition from its gateway Deployment (nil: not
// observed yet) and the gateway address given on its Cluster (cluster names it, namespace/name).
// lbAddress is what the gateway Service's LoadBalancer status shows, if anything, as a hint.
func GatewayReady(dep *appsv1.Deployment, address, lbAddress, cluster string) (ready bool, reason, msg string) {
	if dep == nil {
		return false, meshv1alpha1.ReasonRollingOut, "gateway Deployment fleetmesh-system/fleetmesh-gateway not observed yet"
	}
	if msg := rollingOut(dep, "gateway"); msg != "" {
		return false, meshv1alpha1.ReasonRollingOut, msg
	}
	if address == "" {
		msg := fmt.Sprintf("members on other networks cannot reach this member's exports: annotate Cluster %s with %s=<IPv4 address that routes to Service fleetmesh-system/fleetmesh-gateway, port %d>",
			cluster, GatewayAddressAnnotation, wire.GatewayPort)
		if lbAddress != "" {
			msg += fmt.Sprintf(" (its LoadBalancer shows %s)", lbAddress)
		}
		return false, meshv1alpha1.ReasonGatewayNoAddress, msg
	}
	return true, meshv1alpha1.ReasonGatewayReady, fmt.Sprintf("gateway available; members on other networks reach this member's exports at %s:%d", address, wire.GatewayPort)
}

// OnlyServiceCountsChanged reports whether a MeshCluster update changed nothing but what service
// federation rewrites as exports come and go: the exported and imported counts, and the message
// of a ServicesSynced condition that stays true (it carries the counts). Nothing that decides a
// member's install, its Ready summary or its installation's status changed then, so the
// controllers that compute those need not run again.
func OnlyServiceCountsChanged(old, updated *meshv1alpha1.MeshCluster) bool {
	a, b := old.DeepCopy(), updated.DeepCopy()
	for _, mc := range []*meshv1alpha1.MeshCluster{a, b} {
		mc.ResourceVersion, mc.ManagedFields = "", nil
		mc.Status.ExportedServices, mc.Status.ImportedServices = 0, 0
	}
	ca := meta.FindStatusCondition(a.Status.Conditions, meshv1alpha1.ServicesSyncedCondition)
	cb := meta.FindStatusCondition(b.Status.Conditions, meshv1alpha1.ServicesSyncedCondition)
	if ca != nil && cb != nil && ca.Status == metav1.ConditionTrue && cb.Status == metav1.ConditionTrue {
		cb.Message, cb.LastTransitionTime = ca.Message, ca.LastTransitionTime
	}
	return equality.Semantic.DeepEqual(a, b)
}
