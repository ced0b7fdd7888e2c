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

package status

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEqualAll(t *testing.T) {
	ready := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ok", Message: "fine", ObservedGeneration: 2}
	synced := metav1.Condition{Type: "Synced", Status: metav1.ConditionFalse, Reason: "Retrying", Message: "x"}
	later := ready
	later.LastTransitionTime = metav1.NewTime(time.Now())

	if !EqualAll([]metav1.Condition{ready, synced}, []metav1.Condition{synced, later}) {
		t.Error("same conditions in another order, differing only in LastTransitionTime, should be equal")
	}
	for name, change := range map[string]func(*metav1.Condition){
		"status":     func(c *metav1.Condition) { c.Status = metav1.ConditionFalse },
		"reason":     func(c *metav1.Condition) { c.Reason = "Other" },
		"message":    func(c *metav1.Condition) { c.Message = "other" },
		"generation": func(c *metav1.Condition) { c.ObservedGeneration = 3 },
	} {
		changed := ready
		change(&changed)
		if Equal(ready, changed) || EqualAll([]metav1.Condition{ready, synced}, []metav1.Condition{changed, synced}) {
			t.Errorf("a changed %s should make the conditions differ", name)
		}
	}
	if EqualAll([]metav1.Condition{ready}, []metav1.Condition{ready, synced}) {
		t.Error("an added condition should make the lists differ")
	}
}
