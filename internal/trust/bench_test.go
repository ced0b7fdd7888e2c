//go:build unix

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

package trust

import (
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSign is signing alone: parse the CSR and check its signature and key, then sign and
// encode the leaf (ECDSA P-256). signs/cpu-s is per core.
func BenchmarkSign(b *testing.B) {
	ca := mustSelfSigned(b, tdA, 24*time.Hour)
	iss := mustIssuer(b, ca, time.Hour, fixed(t0))
	csr := csrFor(b, mustKey(b))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := iss.Sign(csr, web); err != nil {
				b.Error(err)
				return
			}
		}
	})
	wall, cpu := time.Since(start), cpuTime()-cpu0
	b.ReportMetric(float64(b.N)/wall.Seconds(), "signs/s")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "signs/cpu-s")
}
