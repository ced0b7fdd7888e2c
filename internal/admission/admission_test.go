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

package admission

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

// bundleDoc is a SPIFFE bundle document of td with one root.
func bundleDoc(t *testing.T, td string) string {
	t.Helper()
	doc, err := fleet.BundleDocument(td)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestFederatedTrustDomain(t *testing.T) {
	good := meshv1alpha1.FederatedTrustDomain{
		TrustDomain: "spire.example.org", BundleEndpointURL: "https://spire.example.org/bundle",
		Profile: meshv1alpha1.BundleEndpointProfileHTTPSSPIFFE, EndpointSPIFFEID: "spiffe://spire.example.org/spire/server",
		Bundle: bundleDoc(t, "spire.example.org"),
	}
	members := map[string]bool{"east.default.demo": true}
	for _, tc := range []struct {
		name   string
		mutate func(*meshv1alpha1.FederatedTrustDomain)
		want   string // "" = valid
	}{
		{name: "valid https_spiffe"},
		{name: "valid https_web without a bundle or ID", mutate: func(f *meshv1alpha1.FederatedTrustDomain) {
			f.Profile, f.Bundle, f.EndpointSPIFFEID = meshv1alpha1.BundleEndpointProfileHTTPSWeb, "", ""
		}},
		{name: "bundle not JSON", mutate: func(f *meshv1alpha1.FederatedTrustDomain) { f.Bundle = `{"keys": oops}` },
			want: "spec.trust.federatesWith[2].bundle: Invalid value: not a SPIFFE bundle document with X.509 authorities (spire-server bundle show -format spiffe): parse bundle for spire.example.org: invalid character 'o'"},
		{name: "bundle without X.509 authorities", mutate: func(f *meshv1alpha1.FederatedTrustDomain) { f.Bundle = `{"keys": []}` },
			want: "spec.trust.federatesWith[2].bundle: Invalid value: not a SPIFFE bundle document with X.509 authorities (spire-server bundle show -format spiffe): parse bundle for spire.example.org: no X.509 authorities"},
		{name: "https_spiffe without a bundle", mutate: func(f *meshv1alpha1.FederatedTrustDomain) { f.Bundle = "" },
			want: "spec.trust.federatesWith[2].bundle: Required value: the https_spiffe profile needs the bundle of spire.example.org"},
		{name: "endpoint ID with an empty segment", mutate: func(f *meshv1alpha1.FederatedTrustDomain) {
			f.EndpointSPIFFEID = "spiffe://spire.example.org/spire//server"
		},
			want: `spec.trust.federatesWith[2].endpointSPIFFEID: Invalid value: "spiffe://spire.example.org/spire//server": not a SPIFFE ID: path cannot contain empty segments`},
		{name: "endpoint ID in another trust domain", mutate: func(f *meshv1alpha1.FederatedTrustDomain) { f.EndpointSPIFFEID = "spiffe://evil.example.com/spire" },
			want: "must be a SPIFFE ID in trust domain spire.example.org"},
		{name: "bad endpoint ID under https_web", mutate: func(f *meshv1alpha1.FederatedTrustDomain) {
			f.Profile, f.EndpointSPIFFEID = meshv1alpha1.BundleEndpointProfileHTTPSWeb, "spiffe://spire.example.org/a/"
		}, want: "spec.trust.federatesWith[2].endpointSPIFFEID"},
		{name: "trust domain not a trust domain", mutate: func(f *meshv1alpha1.FederatedTrustDomain) { f.TrustDomain = "Spire.Example.org" },
			want: `spec.trust.federatesWith[2].trustDomain: Invalid value: "Spire.Example.org": not a SPIFFE trust domain`},
		{name: "a member's trust domain", mutate: func(f *meshv1alpha1.FederatedTrustDomain) {
			f.TrustDomain, f.EndpointSPIFFEID, f.Bundle = "east.default.demo", "spiffe://east.default.demo/agent", bundleDoc(t, "east.default.demo")
		}, want: `spec.trust.federatesWith[2].trustDomain: Invalid value: "east.default.demo": a member's trust domain`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := good
			if tc.mutate != nil {
				tc.mutate(&f)
			}
			ep, errs := FederatedTrustDomain(FederatesWithPath.Index(2), f, members)
			if tc.want == "" {
				if len(errs) > 0 {
					t.Fatalf("refused: %v", errs)
				}
				if ep.TrustDomain.Name() != f.TrustDomain || ep.URL != f.BundleEndpointURL {
					t.Errorf("endpoint %+v", ep)
				}
				return
			}
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", errs, tc.want)
			}
		})
	}
}

// An entry the object already had is not checked again on UPDATE: a Cluster that joined since
// must not block every other edit of the installation.
func TestValidateChecksOnlyNewEntries(t *testing.T) {
	entry := func(td string) meshv1alpha1.FederatedTrustDomain {
		return meshv1alpha1.FederatedTrustDomain{TrustDomain: td, BundleEndpointURL: "https://" + td + "/bundle",
			Profile: meshv1alpha1.BundleEndpointProfileHTTPSWeb}
	}
	old := &meshv1alpha1.MeshInstallation{}
	old.Spec.Trust.FederatesWith = []meshv1alpha1.FederatedTrustDomain{entry("east.default.demo")}
	members := map[string]bool{"east.default.demo": true, "west.default.demo": true}

	if errs := Validate(old, nil, members); len(errs) != 1 {
		t.Errorf("create: %v, want the member's trust domain refused", errs)
	}
	updated := old.DeepCopy()
	updated.Labels = map[string]string{"edited": "yes"}
	if errs := Validate(updated, old, members); len(errs) > 0 {
		t.Errorf("an edit that keeps the entry: %v", errs)
	}
	updated.Spec.Trust.FederatesWith = append(updated.Spec.Trust.FederatesWith, entry("west.default.demo"))
	errs := Validate(updated, old, members)
	if len(errs) != 1 || errs[0].Field != "spec.trust.federatesWith[1].trustDomain" {
		t.Errorf("a new entry naming a member: %v, want spec.trust.federatesWith[1].trustDomain refused", errs)
	}
}

func TestMemberTrustDomains(t *testing.T) {
	now := metav1.Now()
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo", UID: "b", CreationTimestamp: now}}
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"mesh": "yes"}
	mi.Spec.Trust.TrustDomainTemplate = "{cluster}.{namespace}.{mesh}"
	older := meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "first", UID: "a", CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}}
	older.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"first": "yes"}
	cluster := func(name string, labels map[string]string) clusterv1.Cluster {
		return clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, Labels: labels}}
	}
	tds, err := MemberTrustDomains(mi, []meshv1alpha1.MeshInstallation{older, *mi}, []clusterv1.Cluster{
		cluster("east", map[string]string{"mesh": "yes"}),
		cluster("taken", map[string]string{"mesh": "yes", "first": "yes"}),
		cluster("other", map[string]string{"mesh": "no"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tds) != 1 || !tds["east.fleet.demo"] {
		t.Errorf("member trust domains %v, want only east.fleet.demo (taken belongs to the older installation)", tds)
	}
}
