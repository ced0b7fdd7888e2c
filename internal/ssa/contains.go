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

import "reflect"

// Contains reports whether live already holds every field of applied with the same value, so
// that applying applied would change nothing: the operator then skips the write. Maps in live may
// hold more keys (server defaults, other field managers); lists must match element by element; an
// empty value in applied matches an absent one in live. The top-level apiVersion and kind are not
// compared, since objects read from a cache may not carry them.
func Contains(live, applied map[string]any) bool {
	rest := make(map[string]any, len(applied))
	for k, v := range applied {
		if k != "apiVersion" && k != "kind" {
			rest[k] = v
		}
	}
	return contains(live, rest)
}

func contains(live, applied any) bool {
	switch a := applied.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return live == nil && len(a) == 0
		}
		for k, av := range a {
			lv, ok := l[k]
			if !ok {
				if isEmpty(av) {
					continue
				}
				return false
			}
			if !contains(lv, av) {
				return false
			}
		}
		return true
	case []any:
		l, ok := live.([]any)
		if !ok {
			return live == nil && len(a) == 0
		}
		if len(l) != len(a) {
			return false
		}
		for i := range a {
			if !contains(l[i], a[i]) {
				return false
			}
		}
		return true
	case nil:
		return isEmpty(live)
	}
	if lf, ok := number(live); ok {
		af, ok := number(applied)
		return ok && lf == af
	}
	return reflect.DeepEqual(live, applied)
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	case string:
		return t == ""
	}
	return false
}

// number reads the numeric kinds unstructured objects use (int64 from the converter, float64
// from JSON) as one type.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
