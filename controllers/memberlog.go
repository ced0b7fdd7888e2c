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
	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

// MemberLogConstructor is the log constructor of a controller that reconciles MeshClusters: the
// keys controller-runtime gives every line (controller, the object, namespace, name) plus
// "cluster", the member's Cluster API Cluster (named and placed like its MeshCluster). Every line
// about a member, controller-runtime's "Reconciler error" included, then names the member.
func MemberLogConstructor(mgr ctrl.Manager, controllerName string) func(*reconcile.Request) logr.Logger {
	log := mgr.GetLogger().WithValues("controller", controllerName,
		"controllerGroup", meshv1alpha1.GroupVersion.Group, "controllerKind", "MeshCluster")
	return func(req *reconcile.Request) logr.Logger {
		if req == nil {
			return log
		}
		return log.WithValues("MeshCluster", klog.KRef(req.Namespace, req.Name), "namespace", req.Namespace, "name", req.Name,
			"cluster", req.Namespace+"/"+req.Name)
	}
}
