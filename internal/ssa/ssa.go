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

// Package ssa applies typed objects with server-side apply under fleetmesh's field manager, so
// that every reconciler owns exactly the fields it renders and nothing else.
package ssa

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

// FieldOwner is the server-side apply field manager of everything the operator writes.
const FieldOwner = meshv1alpha1.ManagedByValue

// ToUnstructured turns a typed object (with TypeMeta set) into an apply request: status and the
// zero creationTimestamp are dropped so the apply owns only the rendered fields.
func ToUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u, nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	u := &unstructured.Unstructured{Object: m}
	if u.GetKind() == "" {
		return nil, fmt.Errorf("apply %s: object has no kind set", obj.GetName())
	}
	return u, nil
}

// Apply server-side applies obj, taking ownership of conflicting fields (the operator is the
// source of truth for what it renders).
func Apply(ctx context.Context, c client.Client, obj client.Object) error {
	u, err := ToUnstructured(obj)
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s: %w", u.GetKind(), client.ObjectKeyFromObject(u), err)
	}
	return nil
}

// ApplyIfChanged applies a typed obj, Stamped, unless reader's copy (a cache, usually) already
// holds every field of it (Contains): a reconcile woken by its own writes then writes nothing.
// applied tells whether it wrote.
func ApplyIfChanged(ctx context.Context, reader client.Reader, writer client.Client, obj client.Object) (applied bool, err error) {
	u, err := Stamped(obj)
	if err != nil {
		return false, err
	}
	if _, typed := obj.(*unstructured.Unstructured); !typed {
		live := obj.DeepCopyObject().(client.Object)
		if reader.Get(ctx, client.ObjectKeyFromObject(obj), live) == nil {
			if content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(live); err == nil && Contains(content, u.Object) {
				return false, nil
			}
		}
	}
	return true, Apply(ctx, writer, u)
}
