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

package trustfederation

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/admission"
	"github.com/fleetmesh/fleetmesh/internal/metrics"
	"github.com/fleetmesh/fleetmesh/internal/status"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// Endpoints reads spec.trust.federatesWith. An entry that does not parse is returned as a status
// carrying the error: the rules are the operator's admission webhook's (admission.
// FederatedTrustDomain, so status says what the webhook would have), checked again here since the
// webhook may not have been called and a Cluster may have joined since with a trust domain an
// entry names.
func Endpoints(mi *meshv1alpha1.MeshInstallation, memberTDs map[string]bool) ([]trust.Endpoint, []meshv1alpha1.FederatedTrustDomainStatus) {
	var (
		out     []trust.Endpoint
		invalid []meshv1alpha1.FederatedTrustDomainStatus
	)
	for i, f := range mi.Spec.Trust.FederatesWith {
		ep, errs := admission.FederatedTrustDomain(admission.FederatesWithPath.Index(i), f, memberTDs)
		if len(errs) > 0 {
			invalid = append(invalid, meshv1alpha1.FederatedTrustDomainStatus{TrustDomain: f.TrustDomain, Error: errs.ToAggregate().Error()})
			continue
		}
		out = append(out, ep)
	}
	return out, invalid
}

// refreshExternal reports the outside bundles as last fetched in the installation's status and
// returns the bundles to distribute. It does no I/O: the fetch loop (fetchExternal) fetches in
// the background and wakes the installation when a fetch is done.
func (r *Reconciler) refreshExternal(ctx context.Context, mi *meshv1alpha1.MeshInstallation, memberTDs map[string]bool) ([]*spiffebundle.Bundle, error) {
	endpoints, statuses := Endpoints(mi, memberTDs)
	states := r.external.Snapshot(mi.Name, endpoints)
	var bundles []*spiffebundle.Bundle
	for i, st := range states {
		s := meshv1alpha1.FederatedTrustDomainStatus{TrustDomain: endpoints[i].TrustDomain.Name()}
		if st.Bundle != nil {
			bundles = append(bundles, st.Bundle)
			s.Bundle = bundleStatus(st.Bundle)
			if s.Bundle.Expiry != nil {
				metrics.BundleExpiry.WithLabelValues(mi.Name, s.TrustDomain).Set(float64(s.Bundle.Expiry.Unix()))
			}
		}
		if !st.LastFetched.IsZero() {
			t := metav1.NewTime(st.LastFetched.Truncate(time.Second))
			s.LastFetched = &t
		}
		if st.Err != nil {
			s.Error = status.Truncate(st.Err.Error(), 1024)
		}
		statuses = append(statuses, s)
	}
	slices.SortFunc(statuses, func(a, b meshv1alpha1.FederatedTrustDomainStatus) int {
		return strings.Compare(a.TrustDomain, b.TrustDomain)
	})
	return bundles, r.reportExternal(ctx, mi, statuses)
}

// fetchInterval is how often the fetch loop looks for due endpoints (the shortest refresh an
// endpoint can ask for is trust.ExternalMinRefresh).
const fetchInterval = time.Second

// fetchExternal is the background fetch loop (a manager Runnable, so the leader's only): every
// fetchInterval it starts the due fetches, and each finished one wakes its installation.
func (r *Reconciler) fetchExternal(ctx context.Context) error {
	t := time.NewTicker(fetchInterval)
	defer t.Stop()
	wake := func(installation string) {
		select {
		case r.fetched <- event.TypedGenericEvent[*meshv1alpha1.MeshInstallation]{Object: &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: installation}}}:
		case <-ctx.Done():
		}
	}
	for {
		r.external.FetchDue(ctx, r.Clock.Now(), wake)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// reportExternal writes status.federatedTrustDomains, which this controller owns (see
// status.Apply), with a Warning Event when an endpoint starts failing and a Normal one when it
// recovers.
func (r *Reconciler) reportExternal(ctx context.Context, mi *meshv1alpha1.MeshInstallation, statuses []meshv1alpha1.FederatedTrustDomainStatus) error {
	if equality.Semantic.DeepEqual(mi.Status.FederatedTrustDomains, statuses) {
		return nil
	}
	old := map[string]string{}
	for _, s := range mi.Status.FederatedTrustDomains {
		old[s.TrustDomain] = s.Error
	}
	for _, s := range statuses {
		switch prev, seen := old[s.TrustDomain]; {
		case s.Error != "" && (prev == "" || !seen):
			r.Recorder.Eventf(mi, nil, "Warning", "BundleEndpointFailing", "FederateTrustDomain", "%s: %s (the last good bundle stays distributed)", s.TrustDomain, s.Error)
		case s.Error == "" && prev != "":
			r.Recorder.Eventf(mi, nil, "Normal", "BundleEndpointRecovered", "FederateTrustDomain", "%s: bundle fetched again", s.TrustDomain)
		}
	}
	return status.Apply(ctx, r.Client, mi, fieldOwner, &meshv1alpha1.MeshInstallationStatus{FederatedTrustDomains: statuses})
}
