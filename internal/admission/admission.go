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

// Package admission holds the rules of a MeshInstallation that its CRD schema (CEL) cannot
// express, as pure functions giving field errors. The operator's validating webhook refuses what
// they find, and the reconcilers apply the same functions at runtime (a Cluster may join after
// admission, and the webhook may not be called at all), so both say the same thing.
package admission

import (
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/membership"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// FederatesWithPath is spec.trust.federatesWith.
var FederatesWithPath = field.NewPath("spec", "trust", "federatesWith")

// FederatedTrustDomain reads the spec.trust.federatesWith entry at path into the endpoint trust
// federation fetches from, or says why it cannot: a trustDomain that is not a SPIFFE trust domain
// or is one of memberTDs (a member's bundle comes from its own agent only, never from an endpoint
// someone names in the spec), a bundle that is not a SPIFFE bundle document fleetmesh can use
// (trust.ParseBundle, the parser of every fetched bundle), an endpointSPIFFEID that is not a
// SPIFFE ID in trustDomain, or an https_spiffe entry without the bundle that authenticates its
// endpoint the first time.
func FederatedTrustDomain(path *field.Path, f meshv1alpha1.FederatedTrustDomain, memberTDs map[string]bool) (trust.Endpoint, field.ErrorList) {
	td, err := spiffeid.TrustDomainFromString(f.TrustDomain)
	if err != nil {
		return trust.Endpoint{}, field.ErrorList{field.Invalid(path.Child("trustDomain"), f.TrustDomain, "not a SPIFFE trust domain: "+err.Error())}
	}
	var errs field.ErrorList
	if memberTDs[td.Name()] {
		errs = append(errs, field.Invalid(path.Child("trustDomain"), f.TrustDomain,
			"a member's trust domain: its bundle comes from the member's agent only, never from an endpoint named here"))
	}
	ep := trust.Endpoint{TrustDomain: td, URL: f.BundleEndpointURL, SPIFFEAuth: f.Profile != meshv1alpha1.BundleEndpointProfileHTTPSWeb}
	if f.Bundle != "" {
		if ep.Bootstrap, err = trust.ParseBundle(td, []byte(f.Bundle)); err != nil {
			errs = append(errs, field.Invalid(path.Child("bundle"), field.OmitValueType{},
				"not a SPIFFE bundle document with X.509 authorities (spire-server bundle show -format spiffe): "+err.Error()))
		}
	} else if ep.SPIFFEAuth {
		errs = append(errs, field.Required(path.Child("bundle"),
			fmt.Sprintf("the https_spiffe profile needs the bundle of %s to authenticate its endpoint the first time", td)))
	}
	if f.EndpointSPIFFEID != "" || ep.SPIFFEAuth {
		idPath := path.Child("endpointSPIFFEID")
		switch id, err := spiffeid.FromString(f.EndpointSPIFFEID); {
		case err != nil:
			errs = append(errs, field.Invalid(idPath, f.EndpointSPIFFEID, "not a SPIFFE ID: "+err.Error()))
		case id.TrustDomain() != td:
			errs = append(errs, field.Invalid(idPath, f.EndpointSPIFFEID,
				fmt.Sprintf("must be a SPIFFE ID in trust domain %s: it is authenticated with that trust domain's bundle", td)))
		default:
			ep.EndpointID = id
		}
	}
	if len(errs) > 0 {
		return trust.Endpoint{}, errs
	}
	return ep, nil
}

// Validate is what the webhook refuses of mi: every spec.trust.federatesWith entry that is new
// (old is the object before an UPDATE, nil on CREATE) and not valid (FederatedTrustDomain).
// An entry old already had, as it is, passes: a Cluster that joins after admission can make it
// a member's trust domain, and the object must still take every other edit (the operator's
// finalizer above all); trust federation reports such an entry in status.
func Validate(mi, old *meshv1alpha1.MeshInstallation, memberTDs map[string]bool) field.ErrorList {
	var errs field.ErrorList
	for _, i := range NewFederatedTrustDomains(mi, old) {
		_, e := FederatedTrustDomain(FederatesWithPath.Index(i), mi.Spec.Trust.FederatesWith[i], memberTDs)
		errs = append(errs, e...)
	}
	return errs
}

// NewFederatedTrustDomains are the indexes of the spec.trust.federatesWith entries of mi that old
// (nil on CREATE) does not have as they are: what Validate checks.
func NewFederatedTrustDomains(mi, old *meshv1alpha1.MeshInstallation) []int {
	var out []int
	for i, f := range mi.Spec.Trust.FederatesWith {
		if old == nil || !slices.ContainsFunc(old.Spec.Trust.FederatesWith, func(o meshv1alpha1.FederatedTrustDomain) bool {
			return equality.Semantic.DeepEqual(o, f)
		}) {
			out = append(out, i)
		}
	}
	return out
}

// MemberTrustDomains are the trust domains of the members mi would have among clusters (given
// every installation, all, that may own some of them): those membership.Select gives it, each
// with spec.trust.trustDomainTemplate expanded as its MeshCluster will have it.
func MemberTrustDomains(mi *meshv1alpha1.MeshInstallation, all []meshv1alpha1.MeshInstallation, clusters []clusterv1.Cluster) (map[string]bool, error) {
	sel, err := membership.Select(mi, all, clusters)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(sel.Members))
	for _, c := range sel.Members {
		out[membership.ExpandTrustDomain(mi.Spec.Trust.TrustDomainTemplate, c.Name, c.Namespace, mi.Name)] = true
	}
	return out, nil
}
