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

// Package federation turns the ServiceExports of every member into the ServiceImports and MCS
// EndpointSlices each member should have, by the rules of KEP-1645: namespace sameness, the
// oldest export wins a conflict, ports are merged, only exported labels and annotations travel.
// Pure functions: the controller gathers exports from the members' caches and applies the result.
package federation

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
	// Slices are the member's own EndpointSlices of the Service.
	Slices []discoveryv1.EndpointSlice
	Region string
	Zone   string
	// Stale: the member is unreachable and this is its last known export.
	Stale bool
}

// Validity of one export on its own.
func Validity(e Export) (valid bool, reason, message string) {
	switch {
	case e.Service == nil:
		return false, string(mcsv1beta1.ServiceExportReasonNoService),
			fmt.Sprintf("Service %s does not exist in this cluster; create it and the export becomes valid", e.Key)
	case e.Service.Spec.Type == corev1.ServiceTypeExternalName:
		return false, string(mcsv1beta1.ServiceExportReasonInvalidServiceType),
			"ExternalName Services cannot be exported (KEP-1645); export a ClusterIP or headless Service"
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
	Labels, Annotations   map[string]string
	// Sources are the valid exports, ordered by cluster ID.
	Sources []Export
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
	sort.SliceStable(valid, func(i, j int) bool {
		if !valid[i].Created.Equal(valid[j].Created) {
			return valid[i].Created.Before(valid[j].Created)
		}
		return valid[i].Cluster < valid[j].Cluster
	})
	oldest := valid[0]
	imp := &Import{
		Key:                   oldest.Key,
		Type:                  ImportType(oldest.Service),
		SessionAffinity:       oldest.Service.Spec.SessionAffinity,
		SessionAffinityConfig: oldest.Service.Spec.SessionAffinityConfig,
		Labels:                maps.Clone(oldest.ExportedLabels),
		Annotations:           maps.Clone(oldest.ExportedAnnotations),
	}
	// Ports: the union, keyed by port number; the oldest definition of a number wins.
	ports := map[int32]mcsv1beta1.ServicePort{}
	owner := map[int32]string{}
	conflicts := map[string][]string{} // cluster -> reasons
	reasonOf := map[string]string{}
	addConflict := func(cluster, reason, msg string) {
		if _, seen := reasonOf[cluster]; !seen {
			reasonOf[cluster] = reason
		}
		conflicts[cluster] = append(conflicts[cluster], msg)
	}
	for _, e := range valid {
		if e.Cluster != oldest.Cluster {
			switch {
			case ImportType(e.Service) != imp.Type:
				addConflict(e.Cluster, string(mcsv1beta1.ServiceExportReasonTypeConflict),
					fmt.Sprintf("type %s differs from %s of the oldest export (cluster %s)", ImportType(e.Service), imp.Type, oldest.Cluster))
			case e.Service.Spec.SessionAffinity != imp.SessionAffinity:
				addConflict(e.Cluster, string(mcsv1beta1.ServiceExportReasonSessionAffinityConflict),
					fmt.Sprintf("sessionAffinity %s differs from %s of the oldest export (cluster %s)", e.Service.Spec.SessionAffinity, imp.SessionAffinity, oldest.Cluster))
			}
			if !maps.Equal(e.ExportedLabels, imp.Labels) {
				addConflict(e.Cluster, string(mcsv1beta1.ServiceExportReasonLabelsConflict),
					fmt.Sprintf("exportedLabels differ from those of the oldest export (cluster %s)", oldest.Cluster))
			}
			if !maps.Equal(e.ExportedAnnotations, imp.Annotations) {
				addConflict(e.Cluster, string(mcsv1beta1.ServiceExportReasonAnnotationsConflict),
					fmt.Sprintf("exportedAnnotations differ from those of the oldest export (cluster %s)", oldest.Cluster))
			}
		}
		for _, p := range e.Service.Spec.Ports {
			sp := mcsv1beta1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port}
			if sp.Protocol == "" {
				sp.Protocol = corev1.ProtocolTCP
			}
			have, ok := ports[p.Port]
			if !ok {
				ports[p.Port], owner[p.Port] = sp, e.Cluster
				continue
			}
			if have.Protocol != sp.Protocol || have.Name != sp.Name {
				addConflict(e.Cluster, string(mcsv1beta1.ServiceExportReasonPortConflict),
					fmt.Sprintf("port %d is %s/%q here but %s/%q in the older export of cluster %s", p.Port, sp.Protocol, sp.Name, have.Protocol, have.Name, owner[p.Port]))
			}
		}
	}
	for _, p := range ports {
		imp.Ports = append(imp.Ports, p)
	}
	sort.Slice(imp.Ports, func(i, j int) bool { return imp.Ports[i].Port < imp.Ports[j].Port })
	imp.Sources = append(imp.Sources, valid...)
	sort.Slice(imp.Sources, func(i, j int) bool { return imp.Sources[i].Cluster < imp.Sources[j].Cluster })

	if len(conflicts) > 0 {
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
		// The oldest export is involved too: say with whom, and that it won.
		v := verdicts[oldest.Cluster]
		v.Conflict, v.ConflictReason = true, reasonOf[losers[0]]
		v.ConflictMessage = fmt.Sprintf("conflicts with the exports of %s; this export is the oldest and its definition is used", strings.Join(losers, ", "))
		verdicts[oldest.Cluster] = v
	}
	return imp, verdicts
}
