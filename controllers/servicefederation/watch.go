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
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
)

// watchMember registers the member watches that wake this controller: exports, services,
// endpoint slices, imports and namespaces, mapped to the service they concern.
func (r *Reconciler) watchMember(ctx context.Context, installation string, mc *meshv1alpha1.MeshCluster) error {
	key := client.ObjectKey{Namespace: mc.Namespace, Name: mc.Spec.ClusterRef.Name}
	byName := func(_ context.Context, o client.Object) []Request {
		return []Request{{Installation: installation, Key: mcs.Key{Namespace: o.GetNamespace(), Name: o.GetName()}}}
	}
	// A source of a service changed: the propagation the metric times starts now.
	sourceByName := func(ctx context.Context, o client.Object) []Request {
		reqs := byName(ctx, o)
		r.noteChange(reqs[0], r.Clock.Now())
		return reqs
	}
	bySliceLabel := func(_ context.Context, o client.Object) []Request {
		if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" { // the member's own slice
			req := Request{Installation: installation, Key: mcs.Key{Namespace: o.GetNamespace(), Name: name}}
			r.noteChange(req, r.Clock.Now())
			return []Request{req}
		}
		if name := o.GetLabels()[mcsv1beta1.LabelServiceName]; name != "" { // an MCS slice
			return []Request{{Installation: installation, Key: mcs.Key{Namespace: o.GetNamespace(), Name: name}}}
		}
		return nil
	}
	byNamespace := func(_ context.Context, o client.Object) []Request {
		r.mu.Lock()
		defer r.mu.Unlock()
		var reqs []Request
		for k, live := range r.known[installation] {
			if live && k.Namespace == o.GetName() {
				reqs = append(reqs, Request{Installation: installation, Key: k})
			}
		}
		return reqs
	}
	watches := []struct {
		kind client.Object
		fn   handler.TypedMapFunc[client.Object, Request]
	}{
		{&mcsv1beta1.ServiceExport{}, sourceByName},
		{&mcsv1beta1.ServiceImport{}, byName},
		{&corev1.Service{}, sourceByName},
		{&discoveryv1.EndpointSlice{}, bySliceLabel},
		{&corev1.Namespace{}, byNamespace},
	}
	for _, w := range watches {
		err := r.ClusterCache.Watch(ctx, key, clustercache.NewWatcher(clustercache.TypedWatcherOptions[client.Object, Request]{
			Name:         fmt.Sprintf("servicefederation-%T", w.kind),
			Watcher:      r.controller,
			Kind:         w.kind,
			EventHandler: handler.TypedEnqueueRequestsFromMapFunc(w.fn),
		}))
		if err != nil {
			return fmt.Errorf("watch %T in member %s: %w", w.kind, key, err)
		}
	}
	return nil
}
