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
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ClusterProcessNames are the executables a fleet runs.
var ClusterProcessNames = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// RunningClusterProcesses lists the PIDs of cluster processes visible in /proc: inside the sandbox
// that is exactly the processes this sandbox (and any sandbox nested in it) started.
func RunningClusterProcesses() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		for _, n := range ClusterProcessNames {
			// comm is cut to 15 bytes: kube-controller-manager reads "kube-controller".
			if name == n || (len(n) > 15 && name == n[:15]) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
