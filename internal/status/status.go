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

// Package status sets conditions the way both reconcilers must: with meta.SetStatusCondition,
// and with an Event for every transition (a changed status or reason), so that
// 'kubectl describe' tells the story of an object.
package status

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// maxNote is the API server's limit on an Event's note.
const maxNote = 1024

// Set applies each condition to conds and records an Event on obj for each transition.
// A nil recorder records nothing.
func Set(conds *[]metav1.Condition, rec events.EventRecorder, obj runtime.Object, updates ...metav1.Condition) {
	SetAbout(conds, rec, obj, "", updates...)
}

// SetAbout is Set for the conditions of an object the Events cannot name (one in a member
// cluster): they are recorded on regarding, their note starting with subject ("ServiceExport
// demo/echo").
func SetAbout(conds *[]metav1.Condition, rec events.EventRecorder, regarding runtime.Object, subject string, updates ...metav1.Condition) {
	for _, c := range updates {
		old := meta.FindStatusCondition(*conds, c.Type)
		changed := old == nil || old.Status != c.Status || old.Reason != c.Reason
		meta.SetStatusCondition(conds, c)
		if !changed || rec == nil {
			continue
		}
		eventType := "Normal"
		if isBad(c) {
			eventType = "Warning"
		}
		note := fmt.Sprintf("%s=%s: %s", c.Type, c.Status, c.Message)
		if subject != "" {
			note = subject + ": " + note
		}
		if len(note) > maxNote {
			note = note[:maxNote-3] + "..."
		}
		rec.Eventf(regarding, nil, eventType, c.Reason, c.Type, "%s", note)
	}
}

// isBad: Degraded and (an MCS export's) Conflict are bad when true, Progressing never is, every
// other condition when false.
func isBad(c metav1.Condition) bool {
	switch c.Type {
	case "Degraded", "Conflict":
		return c.Status == metav1.ConditionTrue
	case "Progressing":
		return false
	}
	return c.Status == metav1.ConditionFalse
}

// Equal tells whether two conditions say the same thing; LastTransitionTime is ignored, so a
// reconciler can skip a status write that would change nothing else.
func Equal(a, b metav1.Condition) bool {
	return a.Type == b.Type && a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message &&
		a.ObservedGeneration == b.ObservedGeneration
}

// EqualAll tells whether two condition lists hold the same conditions, in any order.
func EqualAll(a, b []metav1.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		o := meta.FindStatusCondition(b, c.Type)
		if o == nil || !Equal(*o, c) {
			return false
		}
	}
	return true
}

// Truncate shortens a message (an error put in a condition or status field) to n bytes.
func Truncate(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	return msg[:n] + "..."
}
