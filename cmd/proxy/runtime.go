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
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// The sidecar's runtime defaults, for a process that sits in every meshed pod: its memory
// matters more than a little GC CPU. Each applies only when the pod does not say otherwise
// (the variable is unset), so GOGC, GOMEMLIMIT and GODEBUG keep their usual meaning.
const (
	// sidecarGCPercent is GOGC's default for the sidecar: the heap grows to 1.5x the live one
	// between collections instead of 2x. The live heap is a few MiB (the config, the protobuf
	// descriptors, the connections' buffers) and a request allocates about 12 KiB, so at
	// 1,000 requests/s that is a few more collections a second, each of a small heap.
	sidecarGCPercent = 50
	// memoryLimitShare is the share of the container's memory limit GOMEMLIMIT defaults to,
	// when it has one: the collector works harder near the limit instead of the pod being
	// killed. Without a limit there is no default: a soft limit below what the traffic needs
	// would make the collector run without pause.
	memoryLimitShare = 0.9
	// maxProcs caps GOMAXPROCS's default (the node's cores, or the container's CPU limit), as
	// Istio runs its Envoy sidecars with 2 worker threads: on a node of many cores each P more
	// is memory (its caches) and threads woken for nothing, for a proxy that carries one pod's
	// traffic. A pod that needs more sets GOMAXPROCS.
	maxProcs = 2
)

// tuneRuntime applies the sidecar's defaults; getenv reads the environment and cgroupMemoryMax
// the container's memory limit (0: none).
func tuneRuntime(getenv func(string) string, cgroupMemoryMax func() int64) {
	// The proxy serves no profiles: sampling allocations for one would only cost memory (the
	// runtime's profile hash table alone is 1.4 MiB once touched).
	if !strings.Contains(getenv("GODEBUG"), "memprofilerate") {
		runtime.MemProfileRate = 0
	}
	if getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) > maxProcs {
		runtime.GOMAXPROCS(maxProcs)
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(sidecarGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		if limit := cgroupMemoryMax(); limit > 0 {
			debug.SetMemoryLimit(int64(float64(limit) * memoryLimitShare))
		}
	}
}

// cgroupMemoryMax is the memory limit of this process's cgroup (v2, as the kubelet sets a
// container's), or 0 when there is none or it cannot be read.
func cgroupMemoryMax() int64 {
	data, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || n <= 0 { // "max": no limit
		return 0
	}
	return n
}
