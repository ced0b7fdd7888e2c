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

package trustfederation

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestRotationVerdict(t *testing.T) {
	const deadline = "2027-01-02T03:04:05Z"
	publishing := map[string]string{wire.StatusKeyCARotation: "Publishing", wire.StatusKeyCARotationDeadline: deadline}
	retiring := map[string]string{wire.StatusKeyCARotation: "Retiring"}
	forced := map[string]string{wire.StatusKeyCARotation: "Retiring", wire.StatusKeyCARotationForced: "true"}
	down := Behind{Member: "member-3", Reachable: false}
	restoredAt := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)
	loading := Behind{Member: "member-2", Reachable: true}
	for _, tc := range []struct {
		name     string
		in       RotationInput
		status   metav1.ConditionStatus
		reason   string
		mentions []string
	}{
		{name: "unreachable member: unknown", in: RotationInput{AgentStatus: publishing},
			status: metav1.ConditionUnknown, reason: meshv1alpha1.ReasonUnreachable},
		{name: "agent has not said", in: RotationInput{Reachable: true},
			status: metav1.ConditionUnknown, reason: meshv1alpha1.ReasonPending},
		{name: "stable", in: RotationInput{Reachable: true, AgentStatus: map[string]string{wire.StatusKeyCARotation: "Stable"}, Behind: []Behind{down}},
			status: metav1.ConditionTrue, reason: meshv1alpha1.ReasonNotRotating},
		{name: "publishing, a reachable member is loading: rotating", in: RotationInput{Reachable: true, AgentStatus: publishing, Behind: []Behind{loading}},
			status: metav1.ConditionTrue, reason: meshv1alpha1.ReasonRotating, mentions: []string{"member-2", deadline}},
		{name: "publishing, an unreachable member is behind: stalled, naming it and the deadline", in: RotationInput{Reachable: true, AgentStatus: publishing, Behind: []Behind{loading, down}},
			status: metav1.ConditionFalse, reason: meshv1alpha1.ReasonRotationStalled, mentions: []string{"member-3", deadline, "unreachable"}},
		{name: "publishing, every member holds it", in: RotationInput{Reachable: true, AgentStatus: publishing},
			status: metav1.ConditionTrue, reason: meshv1alpha1.ReasonRotating, mentions: []string{"every member holds it"}},
		{name: "retiring after a normal switch", in: RotationInput{Reachable: true, AgentStatus: retiring},
			status: metav1.ConditionTrue, reason: meshv1alpha1.ReasonRotating},
		{name: "retiring after a forced switch, a member still behind", in: RotationInput{Reachable: true, AgentStatus: forced, Behind: []Behind{down}},
			status: metav1.ConditionFalse, reason: meshv1alpha1.ReasonSwitchedDeadline, mentions: []string{"member-3", "refuses"}},
		{name: "retiring after a forced switch, everyone caught up", in: RotationInput{Reachable: true, AgentStatus: forced},
			status: metav1.ConditionTrue, reason: meshv1alpha1.ReasonRotating},
		{name: "CA lost while no agent ran: replaced, with the overlap's end", in: RotationInput{Reachable: true,
			AgentStatus: map[string]string{wire.StatusKeyCARotation: "Stable", wire.StatusKeyCALostSince: "2027-01-01T00:00:00Z", wire.StatusKeyCALostUntil: deadline}},
			status: metav1.ConditionFalse, reason: meshv1alpha1.ReasonCAReplaced, mentions: []string{"fleetmesh-system/fleetmesh-ca", deadline, "audit log"}},
		{name: "CA Secret restored from memory, shown for a day", in: RotationInput{Reachable: true, Now: restoredAt.Add(23 * time.Hour),
			AgentStatus: map[string]string{wire.StatusKeyCARotation: "Stable", wire.StatusKeyCASecretRestoredAt: restoredAt.Format(time.RFC3339)}},
			status: metav1.ConditionTrue, reason: meshv1alpha1.ReasonCASecretRestored, mentions: []string{"from memory", restoredAt.Format(time.RFC3339)}},
		{name: "CA Secret restored more than a day ago: back to the rotation's state", in: RotationInput{Reachable: true, Now: restoredAt.Add(25 * time.Hour),
			AgentStatus: map[string]string{wire.StatusKeyCARotation: "Stable", wire.StatusKeyCASecretRestoredAt: restoredAt.Format(time.RFC3339)}},
			status: metav1.ConditionTrue, reason: meshv1alpha1.ReasonNotRotating},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := RotationVerdict(tc.in)
			if c.Type != meshv1alpha1.CARotationCondition || c.Status != tc.status || c.Reason != tc.reason {
				t.Fatalf("got %s=%s/%s (%s), want %s/%s", c.Type, c.Status, c.Reason, c.Message, tc.status, tc.reason)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(c.Message, m) {
					t.Errorf("message %q does not mention %q", c.Message, m)
				}
			}
		})
	}
}
