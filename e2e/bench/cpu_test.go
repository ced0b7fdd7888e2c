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

package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpuSample is the CPU time used so far by this process (the in-process operator and the
// benchmark's own watches and polls) and by the fleet's cluster processes (etcd,
// kube-apiserver...).
type cpuSample struct {
	at    time.Time
	self  time.Duration
	fleet map[int]time.Duration // pid -> CPU time
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now(), fleet: map[int]time.Duration{}}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, pid := range fleet.ChildClusterProcesses() {
		if t, ok := procCPU(pid); ok {
			s.fleet[pid] = t
		}
	}
	return s
}

// procCPU reads utime+stime of a process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: fields are counted after its ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(data[i+1:])
	// After ')': state is field 3 of the full line, utime 14 and stime 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// cpuUse is the CPU time this process and the fleet used between two samples; a cluster process
// that was not in both is left out.
type cpuUse struct {
	wall, self, fleet time.Duration
}

func (s cpuSample) since(before cpuSample) cpuUse {
	u := cpuUse{wall: s.at.Sub(before.at), self: s.self - before.self}
	for pid, t := range s.fleet {
		if t0, ok := before.fleet[pid]; ok {
			u.fleet += t - t0
		}
	}
	return u
}

// above is what u used beyond the rate of an idle window: the work the measured operations
// caused, not the background of a fleet that does nothing.
func (u cpuUse) above(idle cpuUse) cpuUse {
	scale := func(d time.Duration) time.Duration {
		if idle.wall <= 0 {
			return 0
		}
		return time.Duration(float64(d) * float64(u.wall) / float64(idle.wall))
	}
	return cpuUse{wall: u.wall, self: max(0, u.self-scale(idle.self)), fleet: max(0, u.fleet-scale(idle.fleet))}
}

// cores is how many cores u kept busy on average.
func (u cpuUse) cores() float64 {
	if u.wall <= 0 {
		return 0
	}
	return float64(u.self+u.fleet) / float64(u.wall)
}
