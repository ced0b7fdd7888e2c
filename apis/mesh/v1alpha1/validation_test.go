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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
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
		mi.Spec.ClusterSelector.MatchLabels = map[string]string{"mesh": "yes"}
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
		Entry("Gateway networking before a gateway exists",
			func(u *unstructured.Unstructured) { set(u, "Gateway", "spec", "serviceFederation", "networking") },
			"spec.serviceFederation.networking", "Gateway is not supported yet"),
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
		Entry("unknown log level",
			func(u *unstructured.Unstructured) { set(u, "verbose", "spec", "controlPlane", "logLevel") },
			"spec.controlPlane.logLevel", "Unsupported value"),
	)

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
