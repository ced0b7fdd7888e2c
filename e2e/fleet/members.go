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

package fleet

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MemberCache is the cluster cache of a fleet whose members are a test's own API servers, by
// Cluster (namespace/name): a Cluster it does not hold is not connected. It registers no watch:
// the test calls Reconcile itself.
type MemberCache struct {
	clustercache.ClusterCache
	Clients map[client.ObjectKey]client.Client
}

// GetClient is the member's client, or ErrClusterNotConnected.
func (m MemberCache) GetClient(_ context.Context, k client.ObjectKey) (client.Client, error) {
	if c, ok := m.Clients[k]; ok {
		return c, nil
	}
	return nil, clustercache.ErrClusterNotConnected
}

// Watch registers nothing.
func (MemberCache) Watch(context.Context, client.ObjectKey, clustercache.Watcher) error { return nil }

// KubeSystemUID is the UID of the kube-system namespace of the API server c reaches (a member's
// identity, recorded in MeshCluster status at join), waiting for the API server's namespace
// controller to create it after start.
func KubeSystemUID(t testing.TB, c client.Reader) string {
	t.Helper()
	ns := &corev1.Namespace{}
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return c.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns) == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s of a test API server: %v", metav1.NamespaceSystem, err)
	}
	return string(ns.UID)
}
