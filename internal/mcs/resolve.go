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

// Package mcs turns the ServiceExports of every member into the ServiceImports and MCS
// EndpointSlices each member should have, by the rules of KEP-1645: namespace sameness, the
// oldest export wins a conflict, ports are merged, only exported labels and annotations travel.
// Pure functions: the controller gathers exports from the members' caches and applies the result.
package mcs

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Labels and values fleetmesh puts on what it derives.
const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by value of fleetmesh's MCS slices:
	// never the Kubernetes EndpointSlice controller's, so neither deletes the other's slices.
	ManagedBy = "mcs-controller.fleetmesh.io"
	// StaleLabel marks the slices of a member that stopped answering (kept for the grace period).
	StaleLabel = "mesh.fleetmesh.io/stale"
	// RegionLabel and ZoneLabel carry the source member's locality on its slices.
	RegionLabel = "topology.kubernetes.io/region"
	ZoneLabel   = "topology.kubernetes.io/zone"
)

// ExportToAnnotation on a ServiceExport limits the export to some members: a comma-separated
// list of cluster IDs (the members' cluster.clusterset.k8s.io ClusterProperty, shown in
// MeshCluster status). The exporting member always imports its own service; members not listed
// get neither this export's endpoints nor, if no other export reaches them, the ServiceImport.
// Absent, the export reaches every member (KEP-1645's default).
const ExportToAnnotation = "mesh.fleetmesh.io/export-to"

// Key names a service across the clusterset (namespace sameness: same namespace and name).
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Export is one member's ServiceExport with what the member has behind it.
type Export struct {
	Cluster string // the member's cluster ID
	Key     Key
	Created time.Time
	// Service is nil when the exported Service does not exist.
	Service             *corev1.Service
	ExportedLabels      map[string]string
	ExportedAnnotations map[string]string
	// ExportTo, when set, lists the cluster IDs this export reaches (ExportToAnnotation).
	ExportTo []string
	// Slices are the member's own EndpointSlices of the Service.
	Slices []discoveryv1.EndpointSlice
	Region string
	Zone   string
	// Network is the member's network (empty: wire.DefaultNetwork) and Gateway the address of
	// its east-west gateway (empty: none): members of other networks reach its endpoints there.
	Network string
	Gateway string
	// Stale: the member is unreachable and this is its last known export.
	Stale bool
}

// Reaches tells whether the export's endpoints go to member cluster.
func (e Export) Reaches(cluster string) bool {
	return e.ExportTo == nil || e.Cluster == cluster || slices.Contains(e.ExportTo, cluster)
}

// ParseExportTo reads ExportToAnnotation: nil when absent (every member).
func ParseExportTo(annotations map[string]string) []string {
	v, ok := annotations[ExportToAnnotation]
	if !ok {
		return nil
	}
	out := []string{}
	for _, id := range strings.Split(v, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// SupportedIPFamily is the only family fleetmesh imports: clusterset IPs come from an IPv4
// range, and MCS slices carry IPv4 endpoints.
const SupportedIPFamily = corev1.IPv4Protocol

// ipFamilies of a Service as the API server defaulted them (IPv4 when unset, as for a Service
// created before dual-stack).
func ipFamilies(s *corev1.Service) []corev1.IPFamily {
	if len(s.Spec.IPFamilies) == 0 {
		return []corev1.IPFamily{corev1.IPv4Protocol}
	}
	return s.Spec.IPFamilies
}

// Validity of one export on its own.
func Validity(e Export) (valid bool, reason, message string) {
	switch {
	case e.Service == nil:
		return false, string(mcsv1beta1.ServiceExportReasonNoService),
			fmt.Sprintf("Service %s does not exist in this cluster; create it and the export becomes valid", e.Key)
	case e.Service.Spec.Type == corev1.ServiceTypeExternalName:
		// KEP-1645, "Exporting Services": "ExternalName services cannot be exported".
		return false, string(mcsv1beta1.ServiceExportReasonInvalidServiceType),
			"ExternalName Services cannot be exported (KEP-1645); export a ClusterIP or headless Service"
	case !slices.Contains(ipFamilies(e.Service), SupportedIPFamily):
		return false, string(mcsv1beta1.ServiceExportReasonInvalidServiceType),
			fmt.Sprintf("the Service's ipFamilies %v have no IPv4: fleetmesh imports IPv4 only (clusterset IPs come from an IPv4 range)", e.Service.Spec.IPFamilies)
	}
	return true, string(mcsv1beta1.ServiceExportReasonValid), "the Service is exported to the clusterset"
}

// ImportType is the ServiceImport type an exported Service yields.
func ImportType(s *corev1.Service) mcsv1beta1.ServiceImportType {
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		return mcsv1beta1.Headless
	}
	return mcsv1beta1.ClusterSetIP
}

// Verdict is what an export's status should say.
type Verdict struct {
	Valid                           bool
	ValidReason, ValidMessage       string
	Conflict                        bool
	ConflictReason, ConflictMessage string
}

// Import is the clusterset's view of one service, the same in every member.
type Import struct {
	Key                   Key
	Type                  mcsv1beta1.ServiceImportType
	Ports                 []mcsv1beta1.ServicePort
	SessionAffinity       corev1.ServiceAffinity
	SessionAffinityConfig *corev1.SessionAffinityConfig
	IPFamilies            []corev1.IPFamily
	InternalTrafficPolicy *corev1.ServiceInternalTrafficPolicy
	TrafficDistribution   *string
	Labels, Annotations   map[string]string
	// Sources are the valid exports, ordered by cluster ID.
	Sources []Export
}

// properties are the service properties KEP-1645 resolves across exports, in the order their
// conflicts are reported. "Constituent Service properties" (KEP-1645, "Constraints and Conflict
// Resolution"): "the properties of the derived service are determined by the export with the
// oldest creation timestamp", and a Conflict condition is set on the exports that differ.
var properties = []struct {
	reason mcsv1beta1.ServiceExportConditionReason
	name   string
	of     func(Export) any
}{
	{mcsv1beta1.ServiceExportReasonTypeConflict, "type", func(e Export) any { return ImportType(e.Service) }},
	{mcsv1beta1.ServiceExportReasonSessionAffinityConflict, "sessionAffinity", func(e Export) any { return sessionAffinity(e.Service) }},
	{mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict, "sessionAffinityConfig", func(e Export) any { return e.Service.Spec.SessionAffinityConfig }},
	{mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict, "internalTrafficPolicy", func(e Export) any { return internalTrafficPolicy(e.Service) }},
	{mcsv1beta1.ServiceExportReasonTrafficDistributionConflict, "trafficDistribution", func(e Export) any { return ptr.Deref(e.Service.Spec.TrafficDistribution, "") }},
	{mcsv1beta1.ServiceExportReasonIPFamilyConflict, "ipFamilies", func(e Export) any { return importedFamilies(e.Service) }},
	{mcsv1beta1.ServiceExportReasonLabelsConflict, "exportedLabels", func(e Export) any { return nonNil(e.ExportedLabels) }},
	{mcsv1beta1.ServiceExportReasonAnnotationsConflict, "exportedAnnotations", func(e Export) any { return nonNil(e.ExportedAnnotations) }},
}

func sessionAffinity(s *corev1.Service) corev1.ServiceAffinity {
	if s.Spec.SessionAffinity == "" {
		return corev1.ServiceAffinityNone
	}
	return s.Spec.SessionAffinity
}

func internalTrafficPolicy(s *corev1.Service) corev1.ServiceInternalTrafficPolicy {
	return ptr.Deref(s.Spec.InternalTrafficPolicy, corev1.ServiceInternalTrafficPolicyCluster)
}

// importedFamilies are the families of a Service the import carries: the supported one.
func importedFamilies(s *corev1.Service) []corev1.IPFamily {
	var out []corev1.IPFamily
	for _, f := range ipFamilies(s) {
		if f == SupportedIPFamily {
			out = append(out, f)
		}
	}
	return out
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// servicePort is a Service's port as the import carries it (protocol defaulted to TCP).
func servicePort(p corev1.ServicePort) mcsv1beta1.ServicePort {
	sp := mcsv1beta1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port}
	if sp.Protocol == "" {
		sp.Protocol = corev1.ProtocolTCP
	}
	return sp
}

func describePort(p mcsv1beta1.ServicePort) string {
	s := fmt.Sprintf("%q %d/%s", p.Name, p.Port, p.Protocol)
	if p.AppProtocol != nil {
		s += " appProtocol " + *p.AppProtocol
	}
	return s
}

// Resolve merges every member's export of one service into the Import (nil if no export is
// valid) and a Verdict per exporting cluster. The oldest valid export decides the service's
// properties; every export that differs from it, and the oldest itself, report the conflict.
func Resolve(exports []Export) (*Import, map[string]Verdict) {
	verdicts := map[string]Verdict{}
	var valid []Export
	for _, e := range exports {
		ok, reason, msg := Validity(e)
		verdicts[e.Cluster] = Verdict{Valid: ok, ValidReason: reason, ValidMessage: msg,
			ConflictReason: string(mcsv1beta1.ServiceExportReasonNoConflicts), ConflictMessage: "no conflicting export in the clusterset"}
		if ok {
			valid = append(valid, e)
		}
	}
	if len(valid) == 0 {
		return nil, verdicts
	}
	// KEP-1645, "Global Consistency" and "Constraints and Conflict Resolution": conflicts are
	// resolved by the oldest export (creation timestamp; the cluster ID breaks ties, so every
	// member reaches the same answer).
	sort.SliceStable(valid, func(i, j int) bool {
		if !valid[i].Created.Equal(valid[j].Created) {
			return valid[i].Created.Before(valid[j].Created)
		}
		return valid[i].Cluster < valid[j].Cluster
	})
	oldest := valid[0]
	s := oldest.Service
	imp := &Import{
		Key:                   oldest.Key,
		Type:                  ImportType(s),
		SessionAffinity:       sessionAffinity(s),
		SessionAffinityConfig: s.Spec.SessionAffinityConfig,
		IPFamilies:            importedFamilies(s),
		InternalTrafficPolicy: ptr.To(internalTrafficPolicy(s)),
		TrafficDistribution:   s.Spec.TrafficDistribution,
		Labels:                maps.Clone(oldest.ExportedLabels),
		Annotations:           maps.Clone(oldest.ExportedAnnotations),
	}
	conflicts := map[string][]string{} // cluster -> what differs
	reasonOf := map[string]string{}
	addConflict := func(cluster string, reason mcsv1beta1.ServiceExportConditionReason, msg string) {
		if _, seen := reasonOf[cluster]; !seen {
			reasonOf[cluster] = string(reason)
		}
		conflicts[cluster] = append(conflicts[cluster], msg)
	}
	for _, e := range valid[1:] {
		for _, p := range properties {
			if mine, theirs := p.of(e), p.of(oldest); !equality.Semantic.DeepEqual(mine, theirs) {
				addConflict(e.Cluster, p.reason, fmt.Sprintf("%s %v differs from %v of the oldest export (cluster %s)", p.name, show(mine), show(theirs), oldest.Cluster))
			}
		}
	}
	// Ports. KEP-1645, "Service Port": "the clusterset service will expose the union of service
	// ports declared on its constituent services. Should a port name be used for multiple
	// non-identical (port, protocol, appProtocol) service ports by different constituent
	// services, the conflict resolution policy will determine which values are used". A port
	// is identified by its name; two names for one (port, protocol) would make an import no
	// Service could mirror, so that is a conflict too. The oldest export's ports come first.
	byName := map[string]mcsv1beta1.ServicePort{}
	type numbered struct {
		port  int32
		proto corev1.Protocol
	}
	byNumber := map[numbered]string{} // -> name
	owner := map[string]string{}      // port name -> cluster that defined it
	for _, e := range valid {
		for _, p := range e.Service.Spec.Ports {
			sp := servicePort(p)
			n := numbered{sp.Port, sp.Protocol}
			if have, ok := byName[sp.Name]; ok {
				if !equality.Semantic.DeepEqual(have, sp) {
					addConflict(e.Cluster, mcsv1beta1.ServiceExportReasonPortConflict,
						fmt.Sprintf("port %s differs from %s of the older export of cluster %s", describePort(sp), describePort(have), owner[sp.Name]))
				}
				continue
			}
			if other, ok := byNumber[n]; ok {
				addConflict(e.Cluster, mcsv1beta1.ServiceExportReasonPortConflict,
					fmt.Sprintf("port %s is %d/%s, which the older export of cluster %s names %q", describePort(sp), sp.Port, sp.Protocol, owner[other], other))
				continue
			}
			byName[sp.Name], byNumber[n], owner[sp.Name] = sp, sp.Name, e.Cluster
		}
	}
	for _, p := range byName {
		imp.Ports = append(imp.Ports, p)
	}
	sort.Slice(imp.Ports, func(i, j int) bool {
		a, b := imp.Ports[i], imp.Ports[j]
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	})
	imp.Sources = append(imp.Sources, valid...)
	sort.Slice(imp.Sources, func(i, j int) bool { return imp.Sources[i].Cluster < imp.Sources[j].Cluster })

	if len(conflicts) > 0 {
		// KEP-1645: the Conflict condition is set on every export involved; the oldest says
		// with whom it conflicts and that its definition is used.
		losers := make([]string, 0, len(conflicts))
		for c := range conflicts {
			losers = append(losers, c)
		}
		sort.Strings(losers)
		for _, c := range losers {
			v := verdicts[c]
			v.Conflict, v.ConflictReason = true, reasonOf[c]
			v.ConflictMessage = strings.Join(conflicts[c], "; ") + "; the oldest export's definition is used"
			verdicts[c] = v
		}
		v := verdicts[oldest.Cluster]
		v.Conflict, v.ConflictReason = true, reasonOf[losers[0]]
		v.ConflictMessage = fmt.Sprintf("conflicts with the exports of %s; this export is the oldest and its definition is used", strings.Join(losers, ", "))
		verdicts[oldest.Cluster] = v
	}
	return imp, verdicts
}

// show prints a property value for a condition message: pointers by what they point to.
func show(v any) any {
	switch t := v.(type) {
	case *corev1.SessionAffinityConfig:
		if t == nil || t.ClientIP == nil || t.ClientIP.TimeoutSeconds == nil {
			return "unset"
		}
		return fmt.Sprintf("clientIP.timeoutSeconds=%d", *t.ClientIP.TimeoutSeconds)
	case string:
		if t == "" {
			return "unset"
		}
	}
	return v
}
