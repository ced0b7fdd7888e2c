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

// Package bench measures the operator on a local fleet against the targets of the issues; the
// figures are printed by `make bench`, never asserted by timed tests.
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
	"github.com/fleetmesh/fleetmesh/internal/version"
)

func TestMain(m *testing.M) {
	sandbox.Enter()
	// Operators that run in-process here keep their logs out of the figures.
	ctrl.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// 16 members converge together; the rest join one at a time to time a single join.
// FLEETMESH_BENCH_MEMBERS and FLEETMESH_BENCH_JOINS change the counts for a quick look, and
// FLEET_TEST_WORKDIR keeps the components' logs.
var (
	convergeMembers = envInt("FLEETMESH_BENCH_MEMBERS", 16)
	joinSamples     = envInt("FLEETMESH_BENCH_JOINS", 3)
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkMembership prints: the time from a Cluster API Cluster marked provisioned to its
// MeshCluster Ready (target <= 5 s), the time for 16 members to converge from one new
// MeshInstallation (target <= 20 s), and the operator's RSS per member (target <= 10 MB).
func BenchmarkMembership(b *testing.B) {
	ctx := context.Background()
	f, err := fleet.Start(ctx, fleet.Options{Members: convergeMembers + joinSamples, Full: true, Unregistered: true, WorkDir: workDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = f.Stop() }()
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	images := filepath.Join(b.TempDir(), "images")
	kubelets, err := f.RunFleetmesh(kctx, images)
	if err != nil {
		b.Fatal(err)
	}
	// Nodes with the agent image already pulled: its local stand-in is built before timing, so
	// that the figures are the operator's and the members', not the Go compiler's.
	if _, err := fleet.FleetmeshBinaries(images)("ghcr.io/fleetmesh/agent", version.Version); err != nil {
		b.Fatal(err)
	}
	rss0 := operatorRSS(b, kubelets[fleet.ManagementName])

	// 16 provisioned Clusters, then one new MeshInstallation selecting them.
	var wg sync.WaitGroup
	for _, m := range f.Members[:convergeMembers] {
		wg.Add(1)
		go func(m *fleet.Cluster) {
			defer wg.Done()
			if err := f.RegisterMember(ctx, m); err != nil {
				b.Error(err)
			}
		}(m)
	}
	wg.Wait()
	mi := &meshv1alpha1.MeshInstallation{}
	mi.Name = "bench"
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{fleet.MemberLabel: "true"}
	start, busy := time.Now(), machineBusy()
	if err := f.Management.Client.Create(ctx, mi); err != nil {
		b.Fatal(err)
	}
	until(b, 3*time.Minute, fmt.Sprintf("%d members ready", convergeMembers), func() bool {
		got := &meshv1alpha1.MeshInstallation{}
		return f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), got) == nil && got.Status.ReadyClusters == int32(convergeMembers)
	})
	converge := time.Since(start)
	convergeBusy, cores := busy()
	rss16 := operatorRSS(b, kubelets[fleet.ManagementName])

	// One Cluster at a time: marked provisioned (its API server is up) -> MeshCluster Ready.
	var joins []time.Duration
	busy = machineBusy()
	for _, m := range f.Members[convergeMembers:] {
		if err := f.RegisterMember(ctx, m); err != nil {
			b.Fatal(err)
		}
		start := time.Now() // RegisterMember returns once the Cluster is marked provisioned
		// When each condition first turns True: where a join spends its time.
		steps := map[string]time.Duration{}
		until(b, time.Minute, m.Name+" ready", func() bool {
			mc := &meshv1alpha1.MeshCluster{}
			if f.Management.Client.Get(ctx, client.ObjectKey{Namespace: fleet.ClusterNamespace, Name: m.Name}, mc) != nil {
				return false
			}
			for _, c := range mc.Status.Conditions {
				if _, seen := steps[c.Type]; !seen && c.Status == metav1.ConditionTrue {
					steps[c.Type] = time.Since(start)
				}
			}
			return meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.ReadyCondition)
		})
		joins = append(joins, time.Since(start))
		fmt.Printf("membership: %s joined: %s\n", m.Name, stepsLine(steps))
	}
	joinsBusy, _ := busy()
	sort.Slice(joins, func(i, j int) bool { return joins[i] < joins[j] })

	perMember := float64(rss16-rss0) / float64(convergeMembers) / (1 << 20)
	b.ReportMetric(converge.Seconds(), "s-converge-16")
	b.ReportMetric(joins[len(joins)/2].Seconds(), "s-join-p50")
	b.ReportMetric(joins[len(joins)-1].Seconds(), "s-join-max")
	b.ReportMetric(perMember, "MiB-rss/member")
	fmt.Printf("\nmembership: %d members converged from one new MeshInstallation in %.2f s (target <= 20 s)\n", convergeMembers, converge.Seconds())
	fmt.Printf("membership: Cluster provisioned -> MeshCluster Ready: p50 %.2f s, max %.2f s over %d joins (target <= 5 s)\n",
		joins[len(joins)/2].Seconds(), joins[len(joins)-1].Seconds(), len(joins))
	// On this machine the whole fleet shares the cores: how busy they were says whether the
	// figures above measured fleetmesh or the machine.
	fmt.Printf("membership: the machine's %d cores were busy %.2f on average (every process on it) while the %d members converged, %.2f during the joins\n",
		cores, convergeBusy, convergeMembers, joinsBusy)
	fmt.Printf("membership: operator RSS %.1f MiB with 0 members, %.1f MiB with %d: %.2f MiB per member (target <= 10 MB)\n",
		float64(rss0)/(1<<20), float64(rss16)/(1<<20), convergeMembers, perMember)
}

// stepsLine orders the conditions by when they turned True.
func stepsLine(steps map[string]time.Duration) string {
	types := make([]string, 0, len(steps))
	for t := range steps {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return steps[types[i]] < steps[types[j]] })
	parts := make([]string, 0, len(types))
	for _, t := range types {
		parts = append(parts, fmt.Sprintf("%s +%.2fs", t, steps[t].Seconds()))
	}
	return strings.Join(parts, ", ")
}

func workDir(b *testing.B) string {
	if d := os.Getenv("FLEET_TEST_WORKDIR"); d != "" {
		return d
	}
	return b.TempDir()
}

func until(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		b.Fatalf("waiting for %s: %v", what, err)
	}
}

// operatorRSS reads VmRSS of the operator process the management kubelet runs.
func operatorRSS(b *testing.B, k *fleet.Kubelet) int64 {
	b.Helper()
	pids := k.PIDs()
	if len(pids) != 1 {
		b.Fatalf("want one operator process, have %d", len(pids))
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
