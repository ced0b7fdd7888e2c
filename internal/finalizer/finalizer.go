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

// Package finalizer removes a finalizer with a patch of metadata.finalizers alone, as Cluster
// API's util/finalizers.EnsureFinalizer adds one (which the controllers use). An Update would
// send the whole object back, re-serialised from Go types ("1h" becomes "1h0m0s"), and so take
// ownership of the user's spec fields away from their field manager: Argo CD would then see the
// object perpetually OutOfSync and its next server-side apply would conflict.
package finalizer

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Remove removes the finalizer; it writes only when the object has it, with an optimistic lock.
func Remove(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.RemoveFinalizer(obj, finalizer) {
		return nil
	}
	return c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}
