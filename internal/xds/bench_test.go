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

package xds

import (
	"fmt"
	"testing"
)

// fleet is member a's view of services imported from the first clusters of a, b, c, d (each
// with endpoints per cluster), half of them with a clusterset IP, plus a's own Service of each.
func fleet(services, clusters, endpoints int) Input {
	in := input()
	for i := range services {
		ns, name := fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("svc-%d", i)
		var sets []EndpointSet
		for c := range clusters {
			s := set(string(rune('a'+c)), 0)
			for e := range endpoints {
				s.Endpoints = append(s.Endpoints, Endpoint{
					Address: fmt.Sprintf("10.%d.%d.%d", 100+c, i, e+1), Zone: s.Region + "-z1",
					Ready: true, Serving: true,
				})
			}
			sets = append(sets, s)
		}
		svc := imported(ns, name, sets...)
		if i%2 == 0 {
			svc.IPs = []string{fmt.Sprintf("241.0.%d.%d", i/250, i%250+1)}
		}
		local := Service{Namespace: ns, Name: name, Scope: Local, IPs: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			Ports: svc.Ports, Endpoints: sets[:1]}
		in.Services = append(in.Services, svc, local)
	}
	return in
}

// BenchmarkBuild is one member's rebuild for 200 services imported from 4 clusters with
// 3 endpoints each, plus the member's own 200 Services.
func BenchmarkBuild(b *testing.B) {
	in := fleet(200, 4, 3)
	r := mustBuild(b, in)
	b.ReportMetric(float64(len(r.Listeners.Items)+len(r.Routes.Items)+len(r.Clusters.Items)+len(r.Endpoints.Items)), "resources")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(in); err != nil {
			b.Fatal(err)
		}
	}
}
