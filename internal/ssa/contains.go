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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Contains reports whether live already holds every field of applied with the same value.
// Maps in live may hold more keys (server defaults, other field managers); lists must match
// element by element; a null or empty string in applied matches an absent field. The top-level
// apiVersion and kind are not compared, since objects read from a cache may not carry them.
// Extra fields in live are not seen, so a field the operator stopped writing would stay: callers
// skip an apply only for a Stamped object (see Stamp), whose hash changes with any field.
// Atomic fields (AtomicFields) are the exception: a forced apply replaces them whole, so there
// live must hold exactly what is applied, with nothing added (a selector key or an RBAC rule's
// resourceNames added by hand is drift to repair).
func Contains(live, applied map[string]any) bool {
	rest := make(map[string]any, len(applied))
	for k, v := range applied {
		if k != "apiVersion" && k != "kind" {
			rest[k] = v
		}
	}
	if !contains(live, rest) {
		return false
	}
	kind, _ := applied["kind"].(string)
	for _, path := range AtomicFields[kind] {
		a, _ := field(applied, path)
		l, _ := field(live, path)
		if !contains(a, l) { // and contains(l, a) held above
			return false
		}
	}
	return true
}

// AtomicFields lists, by kind, the fields of the objects fleetmesh applies that the API server
// treats as atomic (listType=atomic, mapType=atomic, or a struct replaced whole): Service
// selectors, RBAC rules, subjects and role references, EndpointSlice endpoints and ports, and
// ServiceImport ports.
var AtomicFields = map[string][][]string{
	"Service":            {{"spec", "selector"}},
	"Role":               {{"rules"}},
	"ClusterRole":        {{"rules"}, {"aggregationRule"}},
	"RoleBinding":        {{"subjects"}, {"roleRef"}},
	"ClusterRoleBinding": {{"subjects"}, {"roleRef"}},
	"EndpointSlice":      {{"endpoints"}, {"ports"}},
	"ServiceImport":      {{"spec", "ports"}},
}

// field returns the value at path in obj, and whether it is there.
func field(obj map[string]any, path []string) (any, bool) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func contains(live, applied any) bool {
	switch a := applied.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return false
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
			return false
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

// isEmpty: only a null or an empty string in applied may stand for an absent field; an empty
// map or list may not (emptyDir: {} replaced by a hostPath is a difference).
func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
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

// AppliedHashAnnotation holds a hash of everything the operator applied to an object.
const AppliedHashAnnotation = "mesh.fleetmesh.io/applied-hash"

// Stamped is obj as an apply request (ToUnstructured) carrying its hash (Stamp): a copy, so the
// rendered object stays as it was.
func Stamped(obj client.Object) (*unstructured.Unstructured, error) {
	u, err := ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u = u.DeepCopy()
	if err := Stamp(u); err != nil {
		return nil, err
	}
	return u, nil
}

// Stamp sets AppliedHashAnnotation on u to a hash of its content. Contains then holds only if
// live was last applied from exactly this content (and has not drifted since): a field the
// operator no longer renders changes the hash, so the apply that removes it is not skipped.
func Stamp(u *unstructured.Unstructured) error {
	annotations := u.GetAnnotations()
	delete(annotations, AppliedHashAnnotation)
	if len(annotations) == 0 {
		annotations = nil // the same content whether or not it was stamped before
	}
	u.SetAnnotations(annotations)
	data, err := json.Marshal(u.Object) // map keys in sorted order: deterministic
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AppliedHashAnnotation] = hex.EncodeToString(sum[:12])
	u.SetAnnotations(annotations)
	return nil
}
