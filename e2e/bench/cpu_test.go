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
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

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
		if t, ok := fleet.ProcessCPU(pid); ok {
			s.fleet[pid] = t
		}
	}
	return s
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

// machineTicks reads the first line of /proc/stat: the machine's busy and total CPU ticks since
// boot, over all cores (idle and iowait are not busy).
func machineTicks() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			continue
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// machineBusy measures how busy the whole machine is, in cores, from now until the returned
// function is called.
func machineBusy() func() float64 {
	b0, t0 := machineTicks()
	return func() float64 {
		b1, t1 := machineTicks()
		if t1 <= t0 {
			return 0
		}
		return float64(b1-b0) / float64(t1-t0) * float64(runtime.NumCPU())
	}
}
