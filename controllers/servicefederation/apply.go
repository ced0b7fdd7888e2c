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

package servicefederation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
	"github.com/fleetmesh/fleetmesh/internal/status"
)

// apply converges every live member to the plan, in parallel: the slowest member sets the
// latency, not their sum. wrote tells whether any member's copy had to change.
func (r *Reconciler) apply(ctx context.Context, live []member, installation string, key mcs.Key, plan mcs.Plan) (wrote bool, _ error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	applied := map[string]error{}
	for _, m := range live {
		wg.Go(func() {
			w, err := converge(ctx, m, installation, key, plan.Desired[m.id], plan.CreateNamespace[m.id])
			mu.Lock()
			applied[m.id] = err
			wrote = wrote || w
			mu.Unlock()
		})
	}
	wg.Wait()
	var errs []error
	for _, m := range live {
		errs = append(errs, applied[m.id])
	}
	return wrote, errors.Join(errs...)
}

// converge applies one service's desired import and slices to one member, and deletes the
// slices (and import) of this installation that are no longer desired there. wrote tells whether
// the member's copy had to change.
func converge(ctx context.Context, m member, installation string, key mcs.Key, desired mcs.Desired, createNamespace bool) (wrote bool, _ error) {
	var errs []error
	if desired.Import != nil {
		if createNamespace {
			ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: key.Namespace}}
			w, err := ssa.ApplyIfChanged(ctx, m.reader, m.writer, ns)
			wrote = wrote || w
			errs = append(errs, err)
		}
		// The import and its slices are independent objects: written together, and only
		// when the member's copy differs (this reconcile is also woken by its own writes).
		objs := append([]client.Object{desired.Import}, slicesAsObjects(desired.Slices)...)
		applied := make([]error, len(objs))
		written := make([]bool, len(objs))
		var wg sync.WaitGroup
		for i, o := range objs {
			wg.Go(func() { written[i], applied[i] = ssa.ApplyIfChanged(ctx, m.reader, m.writer, o) })
		}
		wg.Wait()
		errs = append(errs, applied...)
		wrote = wrote || slices.Contains(written, true)
		if applied[0] == nil {
			w, err := applyImportStatus(ctx, m, desired.Import)
			wrote = wrote || w
			errs = append(errs, err)
		}
	}
	want := map[string]bool{}
	for _, s := range desired.Slices {
		want[s.Name] = true
	}
	have := &discoveryv1.EndpointSliceList{}
	if err := m.reader.List(ctx, have, client.InNamespace(key.Namespace), client.MatchingLabels{
		mcsv1beta1.LabelServiceName: key.Name, discoveryv1.LabelManagedBy: mcs.ManagedBy, meshv1alpha1.InstallationLabel: installation,
	}); err != nil {
		return wrote, fmt.Errorf("list MCS EndpointSlices of %s in %s: %w", key, m.id, err)
	}
	for i := range have.Items {
		if !want[have.Items[i].Name] {
			wrote = true
			errs = append(errs, client.IgnoreNotFound(m.writer.Delete(ctx, &have.Items[i])))
		}
	}
	if desired.Import == nil {
		si := &mcsv1beta1.ServiceImport{}
		err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, si)
		if err == nil && si.Labels[meshv1alpha1.InstallationLabel] == installation {
			wrote = true
			errs = append(errs, client.IgnoreNotFound(m.writer.Delete(ctx, si)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return wrote, fmt.Errorf("converge %s in %s: %w", key, m.id, err)
	}
	return wrote, nil
}

// applyImportStatus writes the import's status.clusters (the exporting clusters, KEP-1645)
// through the status subresource, unless the member's copy already says so.
func applyImportStatus(ctx context.Context, m member, want *mcsv1beta1.ServiceImport) (bool, error) {
	live := &mcsv1beta1.ServiceImport{}
	if err := m.reader.Get(ctx, client.ObjectKeyFromObject(want), live); err == nil && equality.Semantic.DeepEqual(live.Status.Clusters, want.Status.Clusters) {
		return false, nil
	}
	return true, status.Apply(ctx, m.writer, want, ssa.FieldOwner, &mcsv1beta1.ServiceImportStatus{Clusters: want.Status.Clusters})
}

func slicesAsObjects(slices []*discoveryv1.EndpointSlice) []client.Object {
	out := make([]client.Object, len(slices))
	for i, s := range slices {
		out[i] = s
	}
	return out
}
