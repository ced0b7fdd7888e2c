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

// machineTicks reads /proc/stat: the machine's busy and total CPU ticks since boot over all
// cores, and how many cores that is. Busy is user, nice, system, irq and softirq; total adds idle,
// iowait and steal (guest time is already inside user and nice).
func machineTicks() (busy, total int64, cores int) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	lines := strings.Split(string(data), "\n")
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "cpu") {
			cores++
		}
	}
	fields := strings.Fields(lines[0])
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0, 0
	}
	for i, f := range fields[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, 0
		}
		total += n
		if i != 3 && i != 4 && i != 7 {
			busy += n
		}
	}
	return busy, total, cores
}

// machineBusy measures how busy the whole machine is (every process on it, the fleet's and any
// other) from now until the returned function is called: the cores busy on average, out of the
// cores /proc/stat counts.
func machineBusy() func() (busy float64, cores int) {
	b0, t0, _ := machineTicks()
	return func() (float64, int) {
		b1, t1, cores := machineTicks()
		if t1 <= t0 {
			return 0, cores
		}
		return float64(b1-b0) / float64(t1-t0) * float64(cores), cores
	}
}
