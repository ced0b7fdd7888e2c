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
	"slices"

	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// MemberView is what planning one service needs to know of one member, as gathered.
type MemberView struct {
	ID string
	// Reachable: the member answers; only reachable members are written to.
	Reachable bool
	// Export is the member's export of the service: live, or (unreachable) its last known one
	// within the grace period, marked Stale. Nil: it exports nothing.
	Export *Export
	// HasNamespace: the member has the service's namespace (KEP-1645 namespace sameness).
	HasNamespace bool
	// IP is the clusterset IP the member's import shows now, if any.
	IP string
	// Network is the member's network (empty: wire.DefaultNetwork).
	Network string
}

// PlanInput is one service of one installation across its members.
type PlanInput struct {
	Key     Key
	Members []MemberView
	// Namespaces the installation federates (empty: every namespace), and whether an import
	// creates its namespace in a member that lacks it.
	Namespaces       []string
	CreateNamespaces bool
	// Labels go on everything written (fleetmesh's ownership labels).
	Labels map[string]string
}

// Plan is what every reachable member should hold of the service, and what each export's
// status should say.
type Plan struct {
	// Import is the clusterset's view of the service; nil when no export is valid.
	Import *Import
	// IP is its clusterset IP (ClusterSetIP imports).
	IP string
	// Desired is, per reachable member, the import and slices it should have; a zero Desired
	// means none (what it has of this installation's is deleted).
	Desired map[string]Desired
	// CreateNamespace lists the members whose namespace the import must create first.
	CreateNamespace map[string]bool
	// Verdicts are the status of each export, by member.
	Verdicts map[string]Verdict
}

// PlanService resolves the exports (KEP-1645's rules, Resolve), holds the service's clusterset
// IP in alloc (the one members show, else a new one; released when the service has no
// ClusterSetIP import), and renders each reachable member's desired objects. Members whose
// namespace is not federated, or who lack it without CreateNamespaces, get none. When no IP can
// be had (the range is exhausted), the error says so and imports are rendered without one, to
// be completed once an address is free; the same with a nil alloc.
func PlanService(in PlanInput, alloc *Allocator) (Plan, error) {
	var exports []Export
	current := ""
	for _, m := range in.Members {
		if m.Export != nil {
			exports = append(exports, *m.Export)
		}
		if current == "" && m.Reachable {
			current = m.IP
		}
	}
	imp, verdicts := Resolve(exports)
	p := Plan{Import: imp, Verdicts: verdicts, Desired: map[string]Desired{}, CreateNamespace: map[string]bool{}}
	var err error
	switch {
	case alloc == nil: // none could be had (see the caller's error): imports without an IP
	case imp != nil && imp.Type == mcsv1beta1.ClusterSetIP:
		p.IP, err = alloc.Allocate(in.Key, current)
	default:
		alloc.Release(in.Key)
	}
	federated := len(in.Namespaces) == 0 || slices.Contains(in.Namespaces, in.Key.Namespace)
	for _, m := range in.Members {
		if !m.Reachable {
			continue
		}
		if imp == nil || !federated || (!m.HasNamespace && !in.CreateNamespaces) {
			p.Desired[m.ID] = Desired{}
			continue
		}
		d := ForMember(imp, m.ID, m.Network, p.IP, in.Labels)
		p.Desired[m.ID] = d
		if d.Import != nil && !m.HasNamespace {
			p.CreateNamespace[m.ID] = true
		}
	}
	return p, err
}
