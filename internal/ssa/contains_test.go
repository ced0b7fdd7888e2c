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

import "testing"

func TestContains(t *testing.T) {
	applied := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "cfg", "labels": map[string]any{"a": "1"}},
		"data":     map[string]any{"k": "v"},
		"spec":     map[string]any{"ports": []any{map[string]any{"port": int64(80)}}, "empty": map[string]any{}},
	}
	live := func() map[string]any {
		return map[string]any{
			"metadata": map[string]any{"name": "cfg", "resourceVersion": "7", "labels": map[string]any{"a": "1", "other": "x"}},
			"data":     map[string]any{"k": "v"},
			"spec":     map[string]any{"ports": []any{map[string]any{"port": float64(80), "protocol": "TCP"}}},
		}
	}
	if !Contains(live(), applied) {
		t.Error("server defaults, other labels and an absent empty map must not count as a difference")
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
	} {
		l := live()
		edit(l)
		if Contains(l, applied) {
			t.Errorf("%s: the difference must be seen", name)
		}
	}
}
