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

package ssa

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestContains(t *testing.T) {
	applied := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "cfg", "labels": map[string]any{"a": "1"}},
		"data":     map[string]any{"k": "v"},
		"spec":     map[string]any{"ports": []any{map[string]any{"port": int64(80)}}},
	}
	live := func() map[string]any {
		return map[string]any{
			"metadata": map[string]any{"name": "cfg", "resourceVersion": "7", "labels": map[string]any{"a": "1", "other": "x"}},
			"data":     map[string]any{"k": "v"},
			"spec":     map[string]any{"ports": []any{map[string]any{"port": float64(80), "protocol": "TCP"}}},
		}
	}
	if !Contains(live(), applied) {
		t.Error("server defaults and other labels must not count as a difference")
	}
	for name, edit := range map[string]func(map[string]any){
		"value edited":  func(l map[string]any) { l["data"].(map[string]any)["k"] = "hand-edited" },
		"label removed": func(l map[string]any) { delete(l["metadata"].(map[string]any)["labels"].(map[string]any), "a") },
		"list grown": func(l map[string]any) {
			s := l["spec"].(map[string]any)
			s["ports"] = append(s["ports"].([]any), map[string]any{"port": int64(81)})
		},
		"number changed": func(l map[string]any) {
			l["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["port"] = int64(8080)
		},
		"map replaced by a string": func(l map[string]any) { l["data"] = "x" },
		"map removed":              func(l map[string]any) { delete(l, "data") },
	} {
		l := live()
		edit(l)
		if Contains(l, applied) {
			t.Errorf("%s: the difference must be seen", name)
		}
	}
}

// A field the operator stops rendering is still in live, which Contains cannot see: the hash
// Stamp puts on the applied object changes, so the apply that removes the field is not skipped.
func TestStampSeesARemovedField(t *testing.T) {
	old := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "cfg"},
		"data":     map[string]any{"k": "v", "dropped": "x"},
	}}
	if err := Stamp(old); err != nil {
		t.Fatal(err)
	}
	live := old.DeepCopy().Object // what the member holds after applying old
	next := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "cfg"},
		"data":     map[string]any{"k": "v"},
	}}
	if !Contains(live, next.Object) {
		t.Fatal("unstamped, the removed field is not seen (the reason for Stamp)")
	}
	if err := Stamp(next); err != nil {
		t.Fatal(err)
	}
	if Contains(live, next.Object) {
		t.Error("stamped, the removed field must make the apply go ahead")
	}
	again := next.DeepCopy()
	if err := Stamp(again); err != nil || again.GetAnnotations()[AppliedHashAnnotation] != next.GetAnnotations()[AppliedHashAnnotation] {
		t.Error("stamping the same content twice must give the same hash")
	}
}

// In an atomic field, something added by hand is drift: a forced apply replaces the field whole,
// so the apply must not be skipped. Elsewhere, extra keys are server defaults or other managers'.
func TestContainsAtomicFields(t *testing.T) {
	role := func() map[string]any {
		return map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
			"metadata": map[string]any{"name": "agent"},
			"rules":    []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"get"}}},
		}
	}
	live := role()
	if !Contains(live, role()) {
		t.Fatal("an identical Role must be held")
	}
	live["rules"].([]any)[0].(map[string]any)["resourceNames"] = []any{"other"}
	if Contains(live, role()) {
		t.Error("a resourceNames added by hand to a rule must be drift")
	}
	svc := func() map[string]any {
		return map[string]any{
			"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": "agent"},
			"spec": map[string]any{"selector": map[string]any{"app": "agent"}},
		}
	}
	live = svc()
	live["spec"].(map[string]any)["clusterIP"] = "10.0.0.1" // a server default: not drift
	if !Contains(live, svc()) {
		t.Error("a defaulted clusterIP must not be drift")
	}
	live["spec"].(map[string]any)["selector"].(map[string]any)["extra"] = "x"
	if Contains(live, svc()) {
		t.Error("a selector key added by hand must be drift")
	}
}
