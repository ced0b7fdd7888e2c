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

package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/membership"
)

// IgnoreServiceCounts drops MeshCluster updates that only carry service federation's counts
// (membership.OnlyServiceCountsChanged): with exports changing, those come every few seconds
// per member, and each would otherwise re-render and re-diff the member's whole install.
func IgnoreServiceCounts() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*meshv1alpha1.MeshCluster)
		updated, okNew := e.ObjectNew.(*meshv1alpha1.MeshCluster)
		return !okOld || !okNew || !membership.OnlyServiceCountsChanged(old, updated)
	}}
}
