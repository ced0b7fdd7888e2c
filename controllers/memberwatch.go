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

package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/install"
)

// WatchMemberConfigMaps wakes req whenever one of the named ConfigMaps in the member's
// fleetmesh-system namespace changes: how an agent's answers (its status, bundle, CSR) reach a
// controller. name identifies the watch in clustercache (one per controller and member).
func WatchMemberConfigMaps(ctx context.Context, cc clustercache.ClusterCache, c controller.Controller, name string,
	mc *meshv1alpha1.MeshCluster, req reconcile.Request, names ...string) error {
	err := cc.Watch(ctx, client.ObjectKey{Namespace: mc.Namespace, Name: mc.Spec.ClusterRef.Name},
		clustercache.NewWatcher(clustercache.TypedWatcherOptions[client.Object, reconcile.Request]{
			Name:    name,
			Watcher: c,
			Kind:    &corev1.ConfigMap{},
			EventHandler: handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
				if o.GetNamespace() != install.Namespace || !slices.Contains(names, o.GetName()) {
					return nil
				}
				return []reconcile.Request{req}
			}),
		}))
	if err != nil {
		return fmt.Errorf("watch ConfigMaps in member %s: %w", client.ObjectKeyFromObject(mc), err)
	}
	return nil
}
