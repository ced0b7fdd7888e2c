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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
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

// Every transition (status or reason) is one Event, a repeat none; bad states are Warnings.
func TestSetRecordsTransitions(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	obj := &corev1.ConfigMap{}
	var conds []metav1.Condition
	drain := func() []string {
		var got []string
		for {
			select {
			case e := <-rec.Events:
				got = append(got, e)
			default:
				return got
			}
		}
	}
	Set(&conds, rec, obj, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "RollingOut", Message: "0/1"})
	Set(&conds, rec, obj, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "RollingOut", Message: "still 0/1"})
	Set(&conds, rec, obj, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "AgentReady", Message: "1/1"})
	got := drain()
	want := []string{"Warning RollingOut Ready=False: 0/1", "Normal AgentReady Ready=True: 1/1"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("events %q, want %q", got, want)
	}

	var exportConds []metav1.Condition
	SetAbout(&exportConds, rec, obj, "ServiceExport demo/echo",
		metav1.Condition{Type: "Conflict", Status: metav1.ConditionTrue, Reason: "TypeConflict", Message: "older export is headless"},
		metav1.Condition{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "exported"})
	got = drain()
	want = []string{"Warning TypeConflict ServiceExport demo/echo: Conflict=True: older export is headless",
		"Normal Valid ServiceExport demo/echo: Valid=True: exported"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("events %q, want %q", got, want)
	}
}
