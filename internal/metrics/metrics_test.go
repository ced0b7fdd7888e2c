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

package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// values reads a GaugeVec's series as "label=value,..." -> value.
func values(t *testing.T, vec *prometheus.GaugeVec) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	go func() {
		vec.Collect(ch)
		close(ch)
	}()
	out := map[string]float64{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		key := ""
		for _, lp := range pb.GetLabel() {
			key += lp.GetName() + "=" + lp.GetValue() + ","
		}
		out[key] = pb.GetGauge().GetValue()
	}
	return out
}

func TestRetainDropsOnlyTheInstallationsStaleSeries(t *testing.T) {
	vec := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "t", Help: "t"}, []string{"installation", "cluster"})
	vec.WithLabelValues("demo", "a").Set(1)
	vec.WithLabelValues("demo", "gone").Set(2)
	vec.WithLabelValues("other", "gone").Set(3)
	Retain(vec, "demo", "cluster", map[string]bool{"a": true})
	got := values(t, vec)
	want := map[string]float64{"cluster=a,installation=demo,": 1, "cluster=gone,installation=other,": 3}
	if len(got) != len(want) {
		t.Fatalf("series left: %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series left: %v, want %v", got, want)
		}
	}
}
