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

// Package readiness computes fleetmesh objects' summary Ready conditions with Cluster API's
// util/conditions. It is a package of its own because util/conditions links controller-runtime's
// manager (and its flags), which the agent, a user of internal/membership, must not.
package readiness

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

// memberReadyOrder is the order of relevance of a MeshCluster's conditions: Ready takes the
// reason of the first one that is not True, so the root cause shows (no connection before no
// CA before no agent).
var memberReadyOrder = []string{
	meshv1alpha1.ConnectedCondition, meshv1alpha1.CAIssuedCondition, meshv1alpha1.ControlPlaneReadyCondition,
	meshv1alpha1.TrustFederatedCondition, meshv1alpha1.ServicesSyncedCondition,
}

// MemberReady is the MeshCluster's summary Ready condition, computed by Cluster API's
// util/conditions summary: True when every condition the member carries is True; otherwise False
// with the reason of the first one in memberReadyOrder that is not True (so a denied CA request
// shows CADenied) and a message listing each such condition. Connected is required; the others
// count once their controller has reported them (CAIssued exists only in certManager mode).
func MemberReady(mc *meshv1alpha1.MeshCluster) metav1.Condition {
	pending := metav1.Condition{Type: meshv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: meshv1alpha1.ReasonPending,
		Message: "not connected yet", ObservedGeneration: mc.Generation}
	if meta.FindStatusCondition(mc.Status.Conditions, meshv1alpha1.ConnectedCondition) == nil {
		return pending
	}
	c, err := conditions.NewSummaryCondition(mc, meshv1alpha1.ReadyCondition,
		conditions.ForConditionTypes(memberReadyOrder),
		conditions.IgnoreTypesIfMissing(memberReadyOrder[1:]),
		conditions.CustomMergeStrategy{MergeStrategy: conditions.DefaultMergeStrategy(
			// Unknown is not ready either: the member waits on it.
			conditions.GetPriorityFunc(func(c metav1.Condition) conditions.MergePriority {
				if c.Status == metav1.ConditionTrue {
					return conditions.InfoMergePriority
				}
				return conditions.IssueMergePriority
			}),
			conditions.ComputeReasonFunc(func(issues, _, _ []conditions.ConditionWithOwnerInfo) string {
				if len(issues) > 0 {
					return issues[0].Reason // sorted by memberReadyOrder
				}
				return meshv1alpha1.ReasonReconciled
			}),
		)})
	if err != nil { // only for bad options, which are constant here
		pending.Reason, pending.Message = "SummaryFailed", err.Error()
		return pending
	}
	c.ObservedGeneration = mc.Generation
	if c.Status == metav1.ConditionTrue {
		c.Message = "member is ready" // not the list of every True message, which would churn
	}
	return *c
}
