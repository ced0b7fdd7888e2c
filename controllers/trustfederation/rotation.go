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
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Behind is another member that does not hold a member's current bundle yet.
type Behind struct {
	Member    string
	Reachable bool
}

// RotationInput is what a member's CARotation verdict is decided from.
type RotationInput struct {
	// Reachable: the member's API server answers (its agent's status is current).
	Reachable bool
	// AgentStatus is the agent's status ConfigMap data: the rotation's phase, deadline and
	// whether the switch was forced.
	AgentStatus map[string]string
	// Behind are the other members that do not hold the member's current bundle.
	Behind []Behind
	// Now is the reconcile's time.
	Now time.Time
}

// restoredShown is how long a CA Secret restored from memory shows in CARotation.
const restoredShown = 24 * time.Hour

// RotationVerdict is the member's CARotation condition. A rotation waits, while publishing,
// for every other member to hold the new bundle; one that cannot be reached makes it wait
// until the agent's deadline (RotationStalled), after which signing switches anyway
// (SwitchedAtDeadline, until the members behind catch up). Members that are reachable but
// behind are only loading it (Rotating).
func RotationVerdict(in RotationInput) metav1.Condition {
	cond := func(s metav1.ConditionStatus, reason, format string, args ...any) metav1.Condition {
		return metav1.Condition{Type: meshv1alpha1.CARotationCondition, Status: s, Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	if !in.Reachable {
		return cond(metav1.ConditionUnknown, meshv1alpha1.ReasonUnreachable, "the member is unreachable: its CA rotation state is unknown")
	}
	var unreachable, loading []string
	for _, b := range in.Behind {
		if b.Reachable {
			loading = append(loading, b.Member)
		} else {
			unreachable = append(unreachable, b.Member)
		}
	}
	behind := strings.Join(append(append([]string{}, unreachable...), loading...), ", ")
	at := func(key string) (time.Time, bool) {
		t, err := time.Parse(time.RFC3339, in.AgentStatus[key])
		return t.UTC(), err == nil
	}
	if since, ok := at(wire.StatusKeyCALostSince); ok {
		until, _ := at(wire.StatusKeyCALostUntil)
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCAReplaced,
			"the CA Secret (%s/%s in the member) was lost while no agent ran: a new CA signs since %s; the lost CA's roots stay "+
				"published until %s, so the SVIDs it signed keep verifying until they expire; find who deleted the Secret in the member's audit log",
			install.Namespace, wire.CASecret, since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	c := phaseVerdict(in, cond, unreachable, loading, behind)
	if restored, ok := at(wire.StatusKeyCASecretRestoredAt); ok && c.Status == metav1.ConditionTrue && in.Now.Before(restored.Add(restoredShown)) {
		return cond(metav1.ConditionTrue, meshv1alpha1.ReasonCASecretRestored,
			"the CA Secret (%s/%s in the member) was deleted and the agent wrote it again from memory at %s (the CA did not change); "+
				"find who deleted it in the member's audit log",
			install.Namespace, wire.CASecret, restored.Format(time.RFC3339))
	}
	return c
}

// phaseVerdict is RotationVerdict by the rotation's phase.
func phaseVerdict(in RotationInput, cond func(metav1.ConditionStatus, string, string, ...any) metav1.Condition, unreachable, loading []string, behind string) metav1.Condition {
	switch trust.Phase(in.AgentStatus[wire.StatusKeyCARotation]) {
	case trust.PhasePublishing:
		deadline := "its deadline"
		if t, err := time.Parse(time.RFC3339, in.AgentStatus[wire.StatusKeyCARotationDeadline]); err == nil {
			deadline = t.UTC().Format(time.RFC3339)
		}
		if len(unreachable) > 0 {
			return cond(metav1.ConditionFalse, meshv1alpha1.ReasonRotationStalled,
				"the CA rotation waits for %s, unreachable, to hold this member's new bundle; signing switches anyway at %s, "+
					"after which %s refuses this member's new SVIDs until it is reachable again",
				strings.Join(unreachable, ", "), deadline, strings.Join(unreachable, ", "))
		}
		if len(loading) > 0 {
			return cond(metav1.ConditionTrue, meshv1alpha1.ReasonRotating,
				"publishing the next CA: waiting for %s to load it; signing switches once every member holds it (at %s at the latest)", behind, deadline)
		}
		return cond(metav1.ConditionTrue, meshv1alpha1.ReasonRotating,
			"publishing the next CA: every member holds it; signing switches once workloads have renewed their SVIDs")
	case trust.PhaseRetiring:
		if in.AgentStatus[wire.StatusKeyCARotationForced] == "true" && len(in.Behind) > 0 {
			return cond(metav1.ConditionFalse, meshv1alpha1.ReasonSwitchedDeadline,
				"signing switched to the next CA at its deadline although %s did not hold it: %s refuses this member's new SVIDs until it catches up",
				behind, behind)
		}
		return cond(metav1.ConditionTrue, meshv1alpha1.ReasonRotating,
			"the next CA signs; the previous one stays published until the last SVID it signed has expired")
	case "":
		return cond(metav1.ConditionUnknown, meshv1alpha1.ReasonPending, "the agent has not reported its CA rotation state yet")
	default:
		return cond(metav1.ConditionTrue, meshv1alpha1.ReasonNotRotating, "one CA signs and is published")
	}
}
