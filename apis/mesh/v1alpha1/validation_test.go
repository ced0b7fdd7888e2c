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

package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

// meshInstallation returns a valid MeshInstallation as unstructured, so specs can break any
// field, including in ways the Go types could not express.
func meshInstallation(name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mesh.fleetmesh.io/v1alpha1",
		"kind":       "MeshInstallation",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"clusterSelector": map[string]any{"matchLabels": map[string]any{"mesh": "yes"}},
		},
	}}
	return u
}

func set(u *unstructured.Unstructured, value any, path ...string) *unstructured.Unstructured {
	Expect(unstructured.SetNestedField(u.Object, value, path...)).To(Succeed())
	return u
}

var counter int

// outsideBundle and otherBundle are valid SPIFFE bundle documents of spire.example.org and
// other.example.org.
var outsideBundle, otherBundle = mustBundle("spire.example.org"), mustBundle("other.example.org")

func mustBundle(td string) string {
	doc, err := fleet.BundleDocument(td)
	if err != nil {
		panic(err)
	}
	return doc
}

// outside is a spec.trust.federatesWith entry for td (https_spiffe) with bundle.
func outside(td, bundle string) map[string]any {
	return map[string]any{"trustDomain": td, "bundleEndpointURL": "https://" + td + "/bundle",
		"endpointSPIFFEID": "spiffe://" + td + "/spire/server", "bundle": bundle}
}

func uniqueName() string {
	counter++
	return fmt.Sprintf("mi-%d", counter)
}

var _ = Describe("MeshInstallation admission", func() {
	ctx := context.Background()

	It("defaults every setting a newcomer leaves out", func() {
		u := meshInstallation(uniqueName())
		Expect(k8sClient.Create(ctx, u)).To(Succeed())
		mi := &meshv1alpha1.MeshInstallation{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: u.GetName()}, mi)).To(Succeed())
		Expect(mi.Spec.Trust.TrustDomainTemplate).To(Equal("{cluster}.{namespace}.{mesh}"))
		Expect(mi.Spec.Trust.CA.SelfSigned).NotTo(BeNil())
		Expect(mi.Spec.Trust.SVIDTTL.Duration.String()).To(Equal("1h0m0s"))
		Expect(mi.Spec.ControlPlane.Replicas).To(HaveValue(BeEquivalentTo(1)))
		Expect(mi.Spec.ControlPlane.Version).To(Equal("v0.1.0"))
		Expect(mi.Spec.ControlPlane.ProxyImage).To(Equal("ghcr.io/fleetmesh/proxy"))
		Expect(mi.Spec.ServiceFederation.Networking).To(Equal(meshv1alpha1.NetworkingFlat))
		Expect(mi.Spec.Failover.ConsecutiveErrors).To(HaveValue(BeEquivalentTo(2)))
	})

	It("accepts a typed Go object that sets only the selector, and defaults the rest", func() {
		mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: uniqueName()}}
		mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"mesh": "yes"}
		Expect(k8sClient.Create(ctx, mi)).To(Succeed())
		Expect(mi.Spec.Trust.CA).NotTo(BeNil())
		Expect(mi.Spec.Trust.CA.SelfSigned).NotTo(BeNil())
		Expect(mi.Spec.Trust.SVIDTTLOrDefault()).To(Equal(meshv1alpha1.DefaultSVIDTTL))
		Expect(mi.Spec.Trust.CATTL).To(HaveValue(HaveField("Duration", meshv1alpha1.DefaultCATTL)))
		Expect(mi.Spec.ServiceFederation.EndpointGracePeriod).To(HaveValue(HaveField("Duration", meshv1alpha1.DefaultEndpointGracePeriod)))
	})

	DescribeTable("refuses a bad spec with a message naming the field",
		func(mutate func(*unstructured.Unstructured), field, message string) {
			u := meshInstallation(uniqueName())
			mutate(u)
			err := k8sClient.Create(ctx, u)
			Expect(err).To(HaveOccurred())
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("empty cluster selector",
			func(u *unstructured.Unstructured) { set(u, map[string]any{}, "spec", "clusterSelector") },
			"spec.clusterSelector", "an empty selector would select every Cluster"),
		Entry("missing cluster selector",
			func(u *unstructured.Unstructured) {
				unstructured.RemoveNestedField(u.Object, "spec", "clusterSelector")
			},
			"spec.clusterSelector", "Required value"),
		Entry("unknown token in the trust-domain template",
			func(u *unstructured.Unstructured) {
				set(u, "{cluster}.{region}", "spec", "trust", "trustDomainTemplate")
			},
			"spec.trust.trustDomainTemplate", "only the tokens {cluster}, {namespace}, {mesh}"),
		Entry("upper case in the trust-domain template",
			func(u *unstructured.Unstructured) { set(u, "Prod.{cluster}", "spec", "trust", "trustDomainTemplate") },
			"spec.trust.trustDomainTemplate", "[a-z0-9._-]"),
		Entry("trust-domain template without {cluster}",
			func(u *unstructured.Unstructured) { set(u, "{mesh}.example", "spec", "trust", "trustDomainTemplate") },
			"spec.trust.trustDomainTemplate", "must contain {cluster}"),
		Entry("negative SVID TTL",
			func(u *unstructured.Unstructured) { set(u, "-1h", "spec", "trust", "svidTTL") },
			"spec.trust.svidTTL", "positive duration"),
		Entry("negative CA TTL",
			func(u *unstructured.Unstructured) { set(u, "-48h", "spec", "trust", "caTTL") },
			"spec.trust.caTTL", "positive duration"),
		Entry("CA TTL shorter than twice the SVID TTL",
			func(u *unstructured.Unstructured) {
				set(u, "2h", "spec", "trust", "svidTTL")
				set(u, "3h", "spec", "trust", "caTTL")
			},
			"spec.trust.caTTL", "at least twice svidTTL"),
		Entry("SVID TTL too short",
			func(u *unstructured.Unstructured) { set(u, "30s", "spec", "trust", "svidTTL") },
			"spec.trust.svidTTL", "at least 1m"),
		Entry("two CA sources",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{
					"selfSigned":  map[string]any{},
					"certManager": map[string]any{"issuerRef": map[string]any{"name": "root"}},
				}, "spec", "trust", "ca")
			},
			"spec.trust.ca", "exactly one of selfSigned or certManager"),
		Entry("namespaced Issuer without a namespace",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"name": "root", "kind": "Issuer"}}}, "spec", "trust", "ca")
			},
			"spec.trust.ca.certManager.issuerRef.namespace", "required when kind is Issuer"),
		Entry("a networking mode that does not exist",
			func(u *unstructured.Unstructured) { set(u, "Tunnel", "spec", "serviceFederation", "networking") },
			"spec.serviceFederation.networking", `supported values: "Flat", "Gateway"`),
		Entry("clusterset IP range that is not a CIDR",
			func(u *unstructured.Unstructured) {
				set(u, "10.0.0.0/33", "spec", "serviceFederation", "clusterSetIPRange")
			},
			"spec.serviceFederation.clusterSetIPRange", "must be a CIDR"),
		Entry("federated bundle endpoint over plain http",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"trustDomain": "spire.example.org", "bundleEndpointURL": "http://spire.example.org/bundle", "profile": "https_web"}}, "spec", "trust", "federatesWith")
			},
			"spec.trust.federatesWith[0].bundleEndpointURL", "must be an https URL"),
		Entry("https_spiffe endpoint without its SPIFFE ID",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"trustDomain": "spire.example.org", "bundleEndpointURL": "https://spire.example.org/bundle"}}, "spec", "trust", "federatesWith")
			},
			"spec.trust.federatesWith[0].endpointSPIFFEID", "required with the https_spiffe profile"),
		Entry("https_spiffe federation without the trust domain's bundle",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"trustDomain": "spire.example.org", "bundleEndpointURL": "https://spire.example.org/bundle",
					"endpointSPIFFEID": "spiffe://spire.example.org/spire/server"}}, "spec", "trust", "federatesWith")
			},
			"spec.trust.federatesWith[0].bundle", "required with the https_spiffe profile"),
		Entry("agent version that is not a release",
			func(u *unstructured.Unstructured) { set(u, "latest", "spec", "controlPlane", "version") },
			"spec.controlPlane.version", "should match"),
		Entry("agent image with a tag",
			func(u *unstructured.Unstructured) {
				set(u, "ghcr.io/fleetmesh/agent:v1", "spec", "controlPlane", "image")
			},
			"spec.controlPlane.image", "without tag or digest"),
		Entry("proxy image with a digest",
			func(u *unstructured.Unstructured) {
				set(u, "ghcr.io/fleetmesh/proxy@sha256:0123", "spec", "controlPlane", "proxyImage")
			},
			"spec.controlPlane.proxyImage", "without tag or digest"),
		Entry("zero replicas",
			func(u *unstructured.Unstructured) { set(u, int64(0), "spec", "controlPlane", "replicas") },
			"spec.controlPlane.replicas", "should be greater than or equal to 1"),
		// Durations: the format bounds every part so that no accepted value overflows Go's
		// time.Duration (the operator could not decode it), and each field has a maximum.
		Entry("SVID TTL that overflows a Go duration",
			func(u *unstructured.Unstructured) { set(u, "3000000h", "spec", "trust", "svidTTL") },
			"spec.trust.svidTTL", "positive duration"),
		Entry("CA TTL that overflows a Go duration",
			func(u *unstructured.Unstructured) { set(u, "3000000h", "spec", "trust", "caTTL") },
			"spec.trust.caTTL", "positive duration"),
		Entry("CA TTL over ten years",
			func(u *unstructured.Unstructured) { set(u, "90000h", "spec", "trust", "caTTL") },
			"spec.trust.caTTL", "at most 87600h"),
		Entry("SVID TTL over a year",
			func(u *unstructured.Unstructured) { set(u, "9000h", "spec", "trust", "svidTTL") },
			"spec.trust.svidTTL", "at most 8760h"),
		Entry("grace period that overflows a Go duration",
			func(u *unstructured.Unstructured) {
				set(u, "9999999999999999999s", "spec", "serviceFederation", "endpointGracePeriod")
			},
			"spec.serviceFederation.endpointGracePeriod", "non-negative duration"),
		Entry("grace period over a day",
			func(u *unstructured.Unstructured) { set(u, "25h", "spec", "serviceFederation", "endpointGracePeriod") },
			"spec.serviceFederation.endpointGracePeriod", "at most 24h"),
		Entry("zero outlier interval",
			func(u *unstructured.Unstructured) { set(u, "0s", "spec", "failover", "interval") },
			"spec.failover.interval", "must be positive"),
		Entry("outlier interval that overflows a Go duration",
			func(u *unstructured.Unstructured) { set(u, "3000000h", "spec", "failover", "interval") },
			"spec.failover.interval", "positive duration"),
		Entry("zero base ejection time",
			func(u *unstructured.Unstructured) { set(u, "0ms", "spec", "failover", "baseEjectionTime") },
			"spec.failover.baseEjectionTime", "must be positive"),
		Entry("base ejection time over an hour",
			func(u *unstructured.Unstructured) { set(u, "61m", "spec", "failover", "baseEjectionTime") },
			"spec.failover.baseEjectionTime", "at most 1h"),
		// Selectors, as the API machinery would refuse to parse them or as they would enrol every Cluster.
		Entry("selector with an unknown operator",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"key": "env", "operator": "Equals", "values": []any{"prod"}}}, "spec", "clusterSelector", "matchExpressions")
			},
			"spec.clusterSelector.matchExpressions[0].operator", "Unsupported value"),
		Entry("selector In without values",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"key": "env", "operator": "In"}}, "spec", "clusterSelector", "matchExpressions")
			},
			"spec.clusterSelector.matchExpressions[0]", "values must be non-empty for the operators In and NotIn"),
		Entry("selector Exists with values",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"key": "env", "operator": "Exists", "values": []any{"x"}}}, "spec", "clusterSelector", "matchExpressions")
			},
			"spec.clusterSelector.matchExpressions[0]", "empty for Exists and DoesNotExist"),
		Entry("selector with a bad label value",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{"mesh": "not a value!"}, "spec", "clusterSelector", "matchLabels")
			},
			"spec.clusterSelector.matchLabels.mesh", "should match"),
		Entry("selector with a bad label key",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{"-mesh": "yes"}, "spec", "clusterSelector", "matchLabels")
			},
			"spec.clusterSelector.matchLabels", "matchLabels keys must be label keys"),
		Entry("selector with a bad expression value",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"key": "env", "operator": "NotIn", "values": []any{"a b"}}}, "spec", "clusterSelector", "matchExpressions")
			},
			"spec.clusterSelector.matchExpressions[0].values", "values must be label values"),
		Entry("selector of only DoesNotExist, which selects every Cluster",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{"matchExpressions": []any{map[string]any{"key": "retired", "operator": "DoesNotExist"}}}, "spec", "clusterSelector")
			},
			"spec.clusterSelector", "only NotIn and DoesNotExist"),
		// Resources the members' API servers would refuse later.
		Entry("agent limits below requests",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{"requests": map[string]any{"memory": "256Mi"}, "limits": map[string]any{"memory": "128Mi"}}, "spec", "controlPlane", "resources")
			},
			"spec.controlPlane.resources.limits", "at least resources.requests"),
		Entry("negative agent request",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{"requests": map[string]any{"cpu": "-100m"}}, "spec", "controlPlane", "resources")
			},
			"spec.controlPlane.resources.requests", "must not be negative"),
		Entry("negative agent limit",
			func(u *unstructured.Unstructured) {
				set(u, map[string]any{"limits": map[string]any{"cpu": "-1"}}, "spec", "controlPlane", "resources")
			},
			"spec.controlPlane.resources.limits", "must not be negative"),
		// Names and ranges.
		Entry("IPv6 clusterset IP range",
			func(u *unstructured.Unstructured) {
				set(u, "fd00:245::/64", "spec", "serviceFederation", "clusterSetIPRange")
			},
			"spec.serviceFederation.clusterSetIPRange", "must be an IPv4 CIDR with at least 16 addresses"),
		Entry("clusterset IP range of one address",
			func(u *unstructured.Unstructured) {
				set(u, "240.245.0.1/32", "spec", "serviceFederation", "clusterSetIPRange")
			},
			"spec.serviceFederation.clusterSetIPRange", "a prefix of /28 or shorter"),
		Entry("federated namespace that is not a namespace name",
			func(u *unstructured.Unstructured) {
				set(u, []any{"apps", "Team_A"}, "spec", "serviceFederation", "namespaces")
			},
			"spec.serviceFederation.namespaces[1]", "should match"),
		Entry("allowed trust domain that is not a trust domain",
			func(u *unstructured.Unstructured) {
				set(u, []any{"spiffe://example.org"}, "spec", "authorization", "allowedTrustDomains")
			},
			"spec.authorization.allowedTrustDomains[0]", "should match"),
		Entry("allowed namespace that is not a namespace name",
			func(u *unstructured.Unstructured) {
				set(u, []any{"Prod"}, "spec", "authorization", "allowedNamespaces")
			},
			"spec.authorization.allowedNamespaces[0]", "should match"),
		Entry("trust-domain template with empty labels",
			func(u *unstructured.Unstructured) {
				set(u, ".{cluster}..{mesh}.", "spec", "trust", "trustDomainTemplate")
			},
			"spec.trust.trustDomainTemplate", "every label of a trust domain is non-empty"),
		// Outside trust domains.
		Entry("federated bundle that is not JSON",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"trustDomain": "spire.example.org", "bundleEndpointURL": "https://spire.example.org/bundle",
					"endpointSPIFFEID": "spiffe://spire.example.org/spire/server", "bundle": "-----BEGIN CERTIFICATE-----"}}, "spec", "trust", "federatesWith")
			},
			"spec.trust.federatesWith[0].bundle", "must be a SPIFFE bundle document"),
		Entry("endpoint SPIFFE ID outside the federated trust domain",
			func(u *unstructured.Unstructured) {
				set(u, []any{map[string]any{"trustDomain": "spire.example.org", "bundleEndpointURL": "https://spire.example.org/bundle",
					"endpointSPIFFEID": "spiffe://evil.example.com/spire/server", "bundle": `{"keys":[]}`}}, "spec", "trust", "federatesWith")
			},
			"spec.trust.federatesWith[0].endpointSPIFFEID", "must be a SPIFFE ID in trustDomain"),
		// What CEL cannot check, the operator's webhook refuses (internal/admission).
		Entry("federated bundle shaped like a bundle document but not JSON (webhook)",
			func(u *unstructured.Unstructured) {
				set(u, []any{outside("spire.example.org", `{"keys": oops}`)}, "spec", "trust", "federatesWith")
			},
			"spec.trust.federatesWith[0].bundle: Invalid value: not a SPIFFE bundle document", "invalid character 'o' looking for beginning of value"),
		Entry("federated bundle without X.509 authorities (webhook)",
			func(u *unstructured.Unstructured) {
				set(u, []any{outside("spire.example.org", `{"keys": []}`)}, "spec", "trust", "federatesWith")
			},
			"spec.trust.federatesWith[0].bundle", "no X.509 authorities"),
		Entry("endpoint SPIFFE ID in the trust domain that does not parse (webhook)",
			func(u *unstructured.Unstructured) {
				f := outside("spire.example.org", outsideBundle)
				f["endpointSPIFFEID"] = "spiffe://spire.example.org/spire//server"
				set(u, []any{outside("other.example.org", otherBundle), f}, "spec", "trust", "federatesWith")
			},
			`spec.trust.federatesWith[1].endpointSPIFFEID: Invalid value: "spiffe://spire.example.org/spire//server"`, "path cannot contain empty segments"),
		Entry("unknown log level",
			func(u *unstructured.Unstructured) { set(u, "verbose", "spec", "controlPlane", "logLevel") },
			"spec.controlPlane.logLevel", "Unsupported value"),
	)

	DescribeTable("accepts the edge values a user may mean",
		func(mutate func(*unstructured.Unstructured)) {
			u := meshInstallation(uniqueName())
			mutate(u)
			Expect(k8sClient.Create(ctx, u)).To(Succeed())
			Expect(k8sClient.Delete(ctx, u)).To(Succeed())
		},
		Entry("durations as a Go client writes them", func(u *unstructured.Unstructured) {
			set(u, "1h0m0s", "spec", "trust", "svidTTL")
			set(u, "87600h0m0s", "spec", "trust", "caTTL")
			set(u, "0s", "spec", "serviceFederation", "endpointGracePeriod")
			set(u, "500ms", "spec", "failover", "interval")
			set(u, "1h", "spec", "failover", "baseEjectionTime")
		}),
		Entry("a selector of In and NotIn", func(u *unstructured.Unstructured) {
			set(u, map[string]any{"matchExpressions": []any{
				map[string]any{"key": "cluster.x-k8s.io/provider", "operator": "In", "values": []any{"aws", "gcp"}},
				map[string]any{"key": "retired", "operator": "NotIn", "values": []any{"true"}},
			}}, "spec", "clusterSelector")
		}),
		Entry("Gateway networking", func(u *unstructured.Unstructured) {
			set(u, "Gateway", "spec", "serviceFederation", "networking")
		}),
		Entry("limits equal to requests", func(u *unstructured.Unstructured) {
			set(u, map[string]any{"requests": map[string]any{"memory": "128Mi", "cpu": "100m"}, "limits": map[string]any{"memory": "134217728", "cpu": "0.1"}}, "spec", "controlPlane", "resources")
		}),
		Entry("an outside trust domain next to the members'", func(u *unstructured.Unstructured) {
			set(u, []any{outside("spire.example.org", " "+outsideBundle+"\n")}, "spec", "trust", "federatesWith")
		}),
	)

	It("refuses a member's trust domain as an outside one, in a new entry only (webhook)", func() {
		name := uniqueName()
		cluster := func(suffix string) *clusterv1.Cluster {
			return &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name + "-" + suffix,
				Labels: map[string]string{"webhook-mesh": name}},
				Spec: clusterv1.ClusterSpec{ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: "10.244.9.1", Port: 6443}}}
		}
		memberTD := func(suffix string) string { return name + "-" + suffix + ".default." + name }
		meshOf := func(entries ...any) *unstructured.Unstructured {
			u := set(meshInstallation(name), map[string]any{"matchLabels": map[string]any{"webhook-mesh": name}}, "spec", "clusterSelector")
			return set(u, entries, "spec", "trust", "federatesWith")
		}
		east := cluster("east")
		Expect(k8sClient.Create(ctx, east)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, east)).To(Succeed()) })

		err := k8sClient.Create(ctx, meshOf(outside(memberTD("east"), mustBundle(memberTD("east")))))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.trust.federatesWith[0].trustDomain: Invalid value: "` + memberTD("east") + `": a member's trust domain`))

		// A Cluster that joins after admission makes an admitted entry a member's: the
		// installation still takes other edits (trust federation reports the entry in status),
		// and a new entry naming a member is refused.
		u := meshOf(outside(memberTD("later"), mustBundle(memberTD("later"))))
		Expect(k8sClient.Create(ctx, u)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, u)).To(Succeed()) })
		later := cluster("later")
		Expect(k8sClient.Create(ctx, later)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, later)).To(Succeed()) })
		u.SetLabels(map[string]string{"edited": "yes"})
		Expect(k8sClient.Update(ctx, u)).To(Succeed())
		entries, _, _ := unstructured.NestedSlice(u.Object, "spec", "trust", "federatesWith")
		set(u, append(entries, outside(memberTD("east"), mustBundle(memberTD("east")))), "spec", "trust", "federatesWith")
		err = k8sClient.Update(ctx, u)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.trust.federatesWith[1].trustDomain: Invalid value: "` + memberTD("east") + `"`))
		Expect(err.Error()).NotTo(ContainSubstring("federatesWith[0]"))
	})

	It("accepts every sample in config/samples as it is", func() {
		files, err := filepath.Glob(filepath.Join("..", "..", "..", "config", "samples", "mesh_*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for _, doc := range strings.Split(string(data), "\n---\n") {
				u := &unstructured.Unstructured{}
				Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed(), f)
				Expect(k8sClient.Create(ctx, u)).To(Succeed(), f)
				Expect(k8sClient.Delete(ctx, u)).To(Succeed(), f)
			}
		}
	})
})

var _ = Describe("MeshCluster admission", func() {
	ctx := context.Background()

	meshCluster := func(name string) *meshv1alpha1.MeshCluster {
		return &meshv1alpha1.MeshCluster{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: meshv1alpha1.MeshClusterSpec{
				ClusterRef:   meshv1alpha1.ClusterReference{Name: name},
				Installation: "demo",
				TrustDomain:  name + ".default.demo",
			},
		}
	}

	It("refuses a trust domain that is not a SPIFFE trust domain", func() {
		mc := meshCluster("bad-td")
		mc.Spec.TrustDomain = "Bad_Domain"
		err := k8sClient.Create(ctx, mc)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.trustDomain"))
		Expect(err.Error()).To(ContainSubstring("[a-z0-9._-]"))
	})

	It("takes an IPv4 gateway address and refuses any other", func() {
		mc := meshCluster("gw-ok")
		mc.Spec.Network = "vpc-2"
		mc.Spec.GatewayAddress = "192.0.2.7"
		Expect(k8sClient.Create(ctx, mc)).To(Succeed())
		for i, bad := range []string{"2001:db8::1", "192.0.2.7:15443", "gateway.example"} {
			mc := meshCluster(fmt.Sprintf("gw-bad-%d", i))
			mc.Spec.GatewayAddress = bad
			err := k8sClient.Create(ctx, mc)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%q: got %v", bad, err)
			Expect(err.Error()).To(ContainSubstring("spec.gatewayAddress"))
			Expect(err.Error()).To(ContainSubstring("must be an IPv4 address"))
		}
	})

	It("refuses to move a MeshCluster to another Cluster or installation", func() {
		mc := meshCluster("fixed")
		Expect(k8sClient.Create(ctx, mc)).To(Succeed())
		Expect(mc.Spec.Network).To(Equal("default"))
		mc.Spec.ClusterRef.Name = "other"
		mc.Spec.Installation = "other"
		err := k8sClient.Update(ctx, mc)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.clusterRef: Invalid value"))
		Expect(err.Error()).To(ContainSubstring("clusterRef is immutable"))
		Expect(err.Error()).To(ContainSubstring("installation is immutable"))
	})
})
