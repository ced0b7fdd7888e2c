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
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity"
	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// TestDashboardQueriesKnownSeries keeps config/grafana's dashboard in step with the series the
// code registers: a renamed metric must not leave an empty panel behind.
func TestDashboardQueriesKnownSeries(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "grafana", "fleetmesh-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	known := map[string]bool{}
	for _, c := range All {
		addNames(known, c)
	}
	// The sidecar proxy's series, on each proxy's /metrics.
	for _, c := range proxy.NewMetrics(nil).Collectors() {
		addNames(known, c)
	}
	// The agent's identity API registers its series on the agent's registry.
	reg := prometheus.NewRegistry()
	if _, err := identity.NewServer(identity.Options{Signer: noSigner{}, Reviewer: noReviewer{}, BundleMap: func() []byte { return nil }, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		known[mf.GetName()] = true
	}
	// Series of other processes: the agent's own registry and controller-runtime's.
	for _, n := range []string{"fleetmesh_agent_info", "fleetmesh_agent_status_publishes_total",
		"fleetmesh_agent_xds_pushes_total", "fleetmesh_agent_xds_nacks_total", "fleetmesh_agent_xds_build_seconds", "fleetmesh_agent_xds_push_seconds", "fleetmesh_agent_xds_streams",
		"controller_runtime_reconcile_time_seconds", "controller_runtime_reconcile_errors_total"} {
		known[n] = true
	}
	series := regexp.MustCompile(`\b(fleetmesh_[a-z_]+|controller_runtime_[a-z_]+)`)
	if len(d.Panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	shown := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, name := range series.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(name, "_bucket")
				shown[base] = true
				if !known[base] {
					t.Errorf("panel %q queries %s, which nothing exports", p.Title, name)
				}
			}
		}
	}
	// And the other way round: every series of fleetmesh's own has a panel.
	for name := range known {
		if strings.HasPrefix(name, "fleetmesh_") && !shown[name] {
			t.Errorf("%s is exported but no panel of the dashboard shows it", name)
		}
	}
}

// addNames adds the series names a collector describes.
func addNames(known map[string]bool, c prometheus.Collector) {
	ch := make(chan *prometheus.Desc, 4)
	c.Describe(ch)
	close(ch)
	for desc := range ch {
		known[regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(desc.String())[1]] = true
	}
}

type noSigner struct{}

func (noSigner) Sign([]byte, trust.Workload) ([]*x509.Certificate, error) {
	return nil, errors.New("no")
}

type noReviewer struct{}

func (noReviewer) Review(context.Context, string, []string) (identity.ReviewResult, error) {
	return identity.ReviewResult{}, errors.New("no")
}
