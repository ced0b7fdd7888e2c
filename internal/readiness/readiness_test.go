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

package readiness

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

func TestMemberReadyIsTheSummaryOfTheMembersConditions(t *testing.T) {
	c := func(typ string, s metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg}
	}
	connected := c("Connected", "True", "Connected", "reached the member")
	for _, tt := range []struct {
		name                       string
		conds                      []metav1.Condition
		status, reason, messageHas string
		messageLacks               string
	}{
		{name: "no conditions yet", status: "False", reason: "Pending", messageHas: "not connected yet"},
		{name: "first not-True condition gives the reason",
			conds:  []metav1.Condition{connected, c("ControlPlaneReady", "False", "AgentVersionMismatch", "the agent reports v1")},
			status: "False", reason: "AgentVersionMismatch", messageHas: "* ControlPlaneReady: the agent reports v1"},
		{name: "a denied CA request shows its own reason, before the agent that waits on it",
			conds: []metav1.Condition{connected,
				c("ControlPlaneReady", "False", "RollingOut", "agent 0/1 available"),
				c("CAIssued", "False", "CADenied", "CertificateRequest fleet/m1 was denied")},
			status: "False", reason: "CADenied", messageHas: "* CAIssued: CertificateRequest fleet/m1 was denied"},
		{name: "not connected wins over everything",
			conds: []metav1.Condition{c("Connected", "False", "KubeconfigInvalid", "Secret fleet/m1-kubeconfig"),
				c("CAIssued", "False", "CADenied", "denied")},
			status: "False", reason: "KubeconfigInvalid", messageHas: "* Connected: Secret fleet/m1-kubeconfig"},
		{name: "Unknown is not ready",
			conds:  []metav1.Condition{connected, c("CAIssued", "Unknown", "CARequestFailed", "reading ConfigMap failed")},
			status: "False", reason: "CARequestFailed", messageHas: "reading ConfigMap failed"},
		{name: "every condition True; missing optional ones ignored",
			conds:  []metav1.Condition{connected, c("ControlPlaneReady", "True", "AgentReady", "")},
			status: "True", reason: "Reconciled", messageHas: "member is ready", messageLacks: "Connected"},
		{name: "conditions outside the summary are not counted",
			conds:  []metav1.Condition{connected, c("Ready", "False", "Old", "stale"), c("Other", "False", "X", "")},
			status: "True", reason: "Reconciled", messageHas: "member is ready"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Generation: 3}, Status: meshv1alpha1.MeshClusterStatus{Conditions: tt.conds}}
			got := MemberReady(mc)
			if got.Type != "Ready" || string(got.Status) != tt.status || got.Reason != tt.reason || got.ObservedGeneration != 3 {
				t.Errorf("Ready = %+v, want %s/%s at generation 3", got, tt.status, tt.reason)
			}
			if !strings.Contains(got.Message, tt.messageHas) || (tt.messageLacks != "" && strings.Contains(got.Message, tt.messageLacks)) {
				t.Errorf("message %q: want %q, not %q", got.Message, tt.messageHas, tt.messageLacks)
			}
		})
	}
}
