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

// Package metrics holds fleetmesh's own Prometheus series, beyond controller-runtime's
// (which already has reconcile latency per controller: controller_runtime_reconcile_time_seconds).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// Members counts an installation's members by condition and status.
	Members = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleetmesh_members",
		Help: "Members of a MeshInstallation by condition type and status.",
	}, []string{"installation", "condition", "status"})

	// Propagation is the time from a change of a service's source (its ServiceExport, Service or
	// EndpointSlices in any member, as the operator's watch delivers it) to its import and slices
	// written in every importing member: queueing and retries included. Passes that write
	// nothing (resyncs, wake-ups by the operator's own writes) are not observed.
	Propagation = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleetmesh_federation_propagation_seconds",
		Help:    "From a change of an exported service seen by the operator to its ServiceImport and EndpointSlices written in every importing member.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"installation"})

	// Imports counts the services each installation imports.
	Imports = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleetmesh_federation_imported_services",
		Help: "Services imported into a member (ServiceImports fleetmesh maintains there).",
	}, []string{"installation", "cluster"})

	// BundleExpiry is when the first root of each trust domain's bundle expires (Unix seconds):
	// members' and the outside ones of federatesWith. A dashboard or alert subtracts time().
	BundleExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleetmesh_trust_bundle_expiry_timestamp_seconds",
		Help: "When the first root of a trust domain's published bundle expires, as a Unix timestamp.",
	}, []string{"installation", "trust_domain"})

	// BundleFetches counts fetches from outside trust domains' bundle endpoints
	// (spec.trust.federatesWith) by result: an alert on failures catches an endpoint that is
	// down before the last good bundle it left expires.
	BundleFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetmesh_trust_bundle_endpoint_fetches_total",
		Help: "Fetches from outside trust domains' bundle endpoints, by result (success, failure).",
	}, []string{"trust_domain", "result"})

	// IntermediateIssuance is the time from a member's CertificateRequest being created to its
	// signed intermediate CA handed to the member (trust.ca.certManager).
	IntermediateIssuance = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleetmesh_ca_intermediate_issuance_seconds",
		Help:    "From a member's CertificateRequest created to its signed intermediate CA written into the member.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
	}, []string{"installation"})
)

// All is every series this package defines.
var All = []prometheus.Collector{Members, Propagation, Imports, BundleExpiry, BundleFetches, IntermediateIssuance}

func init() {
	ctrlmetrics.Registry.MustRegister(All...)
}

// Retain deletes the series of vec that belong to the installation and whose label (such as
// "cluster" or "trust_domain") is not one of keep: a member that left, an outside trust domain
// no longer federated, leave no series behind.
func Retain(vec *prometheus.GaugeVec, installation, label string, keep map[string]bool) {
	ch := make(chan prometheus.Metric, 16)
	go func() {
		vec.Collect(ch)
		close(ch)
	}()
	var stale []prometheus.Labels
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil {
			continue
		}
		labels := prometheus.Labels{}
		for _, lp := range pb.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["installation"] == installation && !keep[labels[label]] {
			stale = append(stale, labels)
		}
	}
	for _, l := range stale {
		vec.Delete(l)
	}
}
