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
	"time"
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

// ChildClusterProcesses are the RunningClusterProcesses that this process started: this
// fleet's, not those of a fleet left running by an earlier run in the same sandbox.
func ChildClusterProcesses() []int {
	self := os.Getpid()
	var pids []int
	for _, pid := range RunningClusterProcesses() {
		if ppid, ok := parentPID(pid); ok && ppid == self {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parentPID reads a process's parent from /proc/<pid>/stat.
func parentPID(pid int) (int, bool) {
	f, ok := procStat(pid)
	if !ok {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// ProcessCPU is the CPU time (user and system) a process has used, from /proc/<pid>/stat.
func ProcessCPU(pid int) (time.Duration, bool) {
	f, ok := procStat(pid)
	if !ok {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// procStat reads /proc/<pid>/stat and returns its fields after the command name, which is in
// parentheses and may hold spaces: the state (field 3 of the line) is f[0], the parent f[1],
// utime f[11] and stime f[12].
func procStat(pid int) ([]string, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return nil, false
	}
	return f, true
}
