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
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/membership"
)

// MeshName is the MeshInstallation InstallMesh creates.
const MeshName = "mesh"

// InstallMesh creates a MeshInstallation named MeshName selecting every member (mutate may
// change its spec first) and waits until every member is ready.
func (f *Fleet) InstallMesh(ctx context.Context, mutate func(*meshv1alpha1.MeshInstallation), timeout time.Duration) (*meshv1alpha1.MeshInstallation, error) {
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: MeshName}}
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{MemberLabel: "true"}
	if mutate != nil {
		mutate(mi)
	}
	if err := f.Management.Client.Create(ctx, mi); err != nil {
		return nil, fmt.Errorf("create MeshInstallation: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), mi); err != nil {
			return false, nil
		}
		return int(mi.Status.ReadyClusters) == len(f.Members), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%d of %d members ready after %s: %w", mi.Status.ReadyClusters, len(f.Members), timeout, err)
	}
	return mi, nil
}

// AgentAddress is the pod IP and port of the member's ready agent.
func AgentAddress(ctx context.Context, m *Cluster, port int) (string, error) {
	pods := &corev1.PodList{}
	if err := m.Client.List(ctx, pods, client.InNamespace("fleetmesh-system"), client.MatchingLabels{"app.kubernetes.io/name": "fleetmesh-agent"}); err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" && p.DeletionTimestamp.IsZero() {
				return fmt.Sprintf("%s:%d", p.Status.PodIP, port), nil
			}
		}
	}
	return "", fmt.Errorf("no ready agent in %s", m.Name)
}

// AgentMetrics returns what the member's agent (the one AgentAddress picks) serves on /metrics,
// on its probe port.
func AgentMetrics(ctx context.Context, m *Cluster) (string, error) {
	addr, err := AgentAddress(ctx, m, install.ProbePort)
	if err != nil {
		return "", err
	}
	return scrapeAddr(addr)
}

// ConditionOf is "Status/Reason" of the condition of type t in conds, or "" when there is none.
func ConditionOf(conds []metav1.Condition, t string) string {
	if c := meta.FindStatusCondition(conds, t); c != nil {
		return string(c.Status) + "/" + c.Reason
	}
	return ""
}

// ConditionMessageOf is the message of the condition of type t in conds, or "".
func ConditionMessageOf(conds []metav1.Condition, t string) string {
	if c := meta.FindStatusCondition(conds, t); c != nil {
		return c.Message
	}
	return ""
}

// MeshCluster reads the MeshCluster ns/name of the management cluster.
func (f *Fleet) MeshCluster(ctx context.Context, ns, name string) (*meshv1alpha1.MeshCluster, error) {
	mc := &meshv1alpha1.MeshCluster{}
	err := f.Management.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, mc)
	return mc, err
}

// ClusterID is a member's MCS cluster ID (its source-cluster label and ClusterProperty).
func ClusterID(m *Cluster) string { return membership.ClusterID(m.Name, ClusterNamespace) }

// Percentile is the p-th percentile of ds (0 for none), for the benchmarks' figures.
func Percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
