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

package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fleetmesh/fleetmesh/internal/depstest"
)

// restoreRuntime puts back what tuneRuntime changes, for the tests that follow.
func restoreRuntime(t *testing.T) {
	procs, limit, rate := runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1), runtime.MemProfileRate
	gc := debug.SetGCPercent(100) // reads the setting: put back at once
	debug.SetGCPercent(gc)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
		runtime.MemProfileRate = rate
	})
}

func TestRuntimeDefaultsApplyOnlyWhatThePodDoesNotSet(t *testing.T) {
	restoreRuntime(t)
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

	// Nothing set: the sidecar's defaults, the memory limit from the container's.
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(1 << 62)
	runtime.MemProfileRate = 512 << 10
	tuneRuntime(env(nil), func() int64 { return 100 << 20 })
	if got := debug.SetGCPercent(100); got != sidecarGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, sidecarGCPercent)
	}
	if got, want := debug.SetMemoryLimit(-1), int64(90<<20); got != want {
		t.Errorf("GOMEMLIMIT unset, container limit 100 MiB: memory limit %d, want %d", got, want)
	}
	if runtime.MemProfileRate != 0 {
		t.Errorf("memory profile rate %d, want 0 (no profiles are served)", runtime.MemProfileRate)
	}
	if runtime.GOMAXPROCS(0) > maxProcs {
		t.Errorf("GOMAXPROCS unset: %d, want at most %d", runtime.GOMAXPROCS(0), maxProcs)
	}

	// Everything set by the pod (the runtime read the variables itself): left alone.
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(1 << 62)
	runtime.MemProfileRate = 512 << 10
	procs := runtime.GOMAXPROCS(0)
	tuneRuntime(env(map[string]string{"GOGC": "100", "GOMEMLIMIT": "off", "GOMAXPROCS": "4", "GODEBUG": "memprofilerate=524288"}),
		func() int64 { return 100 << 20 })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: GC percent changed to %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<62 {
		t.Errorf("GOMEMLIMIT set: memory limit changed to %d", got)
	}
	if runtime.MemProfileRate != 512<<10 || runtime.GOMAXPROCS(0) != procs {
		t.Errorf("GODEBUG and GOMAXPROCS set: profile rate %d, GOMAXPROCS %d (was %d)", runtime.MemProfileRate, runtime.GOMAXPROCS(0), procs)
	}

	// No container limit: no soft limit either.
	debug.SetMemoryLimit(1 << 62)
	tuneRuntime(env(nil), func() int64 { return 0 })
	if got := debug.SetMemoryLimit(-1); got != 1<<62 {
		t.Errorf("no container limit: memory limit set to %d", got)
	}
}

// The proxy, in every meshed pod, links neither the Kubernetes libraries nor the agent's xDS
// builder, injector or API types: only the contract they share with it (internal/wire).
func TestTheProxyLinksNoKubernetesLibraries(t *testing.T) {
	// k8s.io/utils/clock (the standard library only) comes with the identity client.
	depstest.Denied(t, ".", func(dep string) bool {
		return dep != "k8s.io/utils/clock" && (strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") ||
			strings.HasPrefix(dep, "github.com/fleetmesh/fleetmesh/apis/") ||
			dep == "github.com/fleetmesh/fleetmesh/internal/xds" || dep == "github.com/fleetmesh/fleetmesh/internal/inject" ||
			dep == "github.com/envoyproxy/go-control-plane/pkg/cache/v3")
	})
}
