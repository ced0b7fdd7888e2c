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
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// Apply writes obj's status with server-side apply as the field manager owner: st is a status
// struct of obj's kind holding only the fields owner writes (zero fields are left out, except
// the numeric ones named in zeroes, which are written as 0). Several controllers write a
// MeshCluster's status; each owns its own conditions (the list is keyed by type) and fields, so
// their writes never conflict and none overwrites another's, with no optimistic lock and no
// retry loop. A missing object is not an error: it is gone.
func Apply(ctx context.Context, c client.Client, obj client.Object, owner string, st any, zeroes ...string) error {
	fields, err := runtime.DefaultUnstructuredConverter.ToUnstructured(st)
	if err != nil {
		return fmt.Errorf("status of %s: %w", obj.GetName(), err)
	}
	for k, v := range fields {
		if zero(v) {
			delete(fields, k) // not owned, whatever the field's JSON tag says
		}
	}
	for _, f := range zeroes {
		if _, ok := fields[f]; !ok {
			fields[f] = int64(0)
		}
	}
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": fields}}
	u.SetGroupVersionKind(gvk)
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	err = c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(owner), client.ForceOwnership)
	if err != nil {
		return client.IgnoreNotFound(fmt.Errorf("write status of %s %s: %w", gvk.Kind, client.ObjectKeyFromObject(obj), err))
	}
	return nil
}

func zero(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case int64:
		return t == 0
	case float64:
		return t == 0
	case string:
		return t == ""
	case bool:
		return !t
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

// Owned returns the conditions of the given types, the ones a writer owns.
func Owned(conds []metav1.Condition, types ...string) []metav1.Condition {
	var out []metav1.Condition
	for _, t := range types {
		if c := meta.FindStatusCondition(conds, t); c != nil {
			out = append(out, *c)
		}
	}
	return out
}
