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

// Package certmanager_test runs spec.trust.ca.certManager end to end: members' intermediates
// signed by cert-manager's own CA issuer in the management cluster.
package certmanager_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/agent"
	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestCertManager(t *testing.T) {
	fleet.RunSuite(t, "certManager CA e2e suite (local fleet: 1 management with cert-manager's CA issuer + 3 members)")
}

const ns = "demo"

var (
	f    *fleet.Fleet
	ctx  = context.Background()
	root *x509.Certificate
)

var _ = BeforeSuite(func() {
	f, _ = fleet.StartSuite(ctx)
	var err error
	root, err = f.RunCertManager(ctx)
	Expect(err).NotTo(HaveOccurred())
	f.MeshUp(ctx, ns, func(mi *meshv1alpha1.MeshInstallation) {
		// Minute SVIDs let an intermediate's rotation switch within the suite (svidTTL/2 + 10 s).
		mi.Spec.Trust.SVIDTTL = &meshv1alpha1.Duration{Duration: time.Minute}
		mi.Spec.Trust.CA = &meshv1alpha1.CASource{CertManager: &meshv1alpha1.CertManagerCA{
			IssuerRef: meshv1alpha1.IssuerReference{Name: fleet.CertManagerIssuer, Kind: "ClusterIssuer"},
		}}
	})
})

func trustDomain(m *fleet.Cluster) spiffeid.TrustDomain {
	td, err := f.TrustDomain(ctx, m)
	Expect(err).NotTo(HaveOccurred())
	return td
}

// svidChain fetches an SVID for demo/workload from m's agent: the leaf, then the member's
// intermediate; and the bundle map that came with it.
func svidChain(m *fleet.Cluster) ([]*x509.Certificate, *trust.BundleSet) {
	tok, err := fleet.WorkloadToken(ctx, m, ns, "workload", identityv1.Audience)
	Expect(err).NotTo(HaveOccurred())
	dir := GinkgoT().TempDir()
	Expect(f.FetchSVID(ctx, m, tok, dir)).To(Succeed())
	svid, set, err := fleet.LoadSVID(dir)
	Expect(err).NotTo(HaveOccurred())
	return svid.Certificates, set
}

var _ = Describe("certManager CA source", Ordered, func() {
	It("has every member's intermediate signed by cert-manager's CA issuer, chaining to its root and limited to the member's trust domain", func() {
		for _, m := range f.Members {
			Eventually(func(g Gomega) {
				mc, err := f.MeshClusterOf(ctx, m)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.CAIssuedCondition)).To(BeTrue(), "CAIssued: %+v", mc.Status.Conditions)
			}).Should(Succeed())
			td := trustDomain(m)

			// The member's bundle is the issuer's root.
			cm := &corev1.ConfigMap{}
			Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.BundleConfigMap}, cm)).To(Succeed())
			bundle, err := trust.ParseBundle(td, []byte(cm.Data[wire.BundleKeyDocument]))
			Expect(err).NotTo(HaveOccurred())
			Expect(bundle.X509Authorities()).To(HaveLen(1))
			Expect(bundle.X509Authorities()[0].Equal(root)).To(BeTrue(), "%s's bundle is not the issuer's root", m.Name)

			chain, bundles := svidChain(m)
			Expect(chain).To(HaveLen(2), "leaf and the member's intermediate")
			intermediate := chain[1]
			Expect(intermediate.IsCA).To(BeTrue())
			Expect(intermediate.CheckSignatureFrom(root)).To(Succeed(), "%s's intermediate is not signed by the issuer's root", m.Name)
			Expect(intermediate.PermittedURIDomains).To(Equal([]string{td.Name()}), "the intermediate must be limited to %s", td)
			id, _, err := x509svid.Verify(chain, bundles)
			Expect(err).NotTo(HaveOccurred())
			Expect(id.String()).To(Equal("spiffe://" + td.Name() + "/ns/demo/sa/workload"))
			GinkgoWriter.Printf("%s: intermediate %q (issuer %q, permitted %v, not after %s) signs %s\n", m.Name,
				intermediate.Subject, intermediate.Issuer, intermediate.PermittedURIDomains, intermediate.NotAfter.Format("2006-01-02"), id)
		}
		// Each issuance is timed on the operator's /metrics.
		Eventually(func() (string, error) { return f.OperatorMetrics(ctx) }).Should(
			MatchRegexp(`fleetmesh_ca_intermediate_issuance_seconds_count\{installation="[^"]+"\} ([3-9]|[1-9][0-9])`))
		// Trust is federated across members as in selfSigned mode: A's SVID verifies with B's map.
		chainA, _ := svidChain(f.Members[0])
		_, bundlesB := svidChain(f.Members[1])
		_, _, err := x509svid.Verify(chainA, bundlesB)
		Expect(err).NotTo(HaveOccurred())
	})

	It("keeps every member's CA key out of the management cluster: no Secret, ConfigMap or CertificateRequest holds it", func() {
		// Every encoding of each member's CA key the API could carry.
		var needles [][]byte
		for _, m := range f.Members {
			s := &corev1.Secret{}
			Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: agent.CASecret}, s)).To(Succeed())
			found := 0
			for k, v := range s.Data {
				if !strings.HasSuffix(k, ".key") {
					continue
				}
				block, _ := pem.Decode(v)
				Expect(block).NotTo(BeNil())
				key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
				Expect(err).NotTo(HaveOccurred())
				scalar, err := key.(*ecdsa.PrivateKey).Bytes()
				Expect(err).NotTo(HaveOccurred())
				found++
				needles = append(needles, v, block.Bytes, scalar)
			}
			Expect(found).To(BeNumerically(">", 0), "no CA key in %s's Secret", m.Name)
		}
		encodings := func(b []byte) []string {
			quoted, err := json.Marshal(string(b)) // as a string field (a ConfigMap's data) appears
			Expect(err).NotTo(HaveOccurred())
			return []string{string(b), string(quoted[1 : len(quoted)-1]), base64.StdEncoding.EncodeToString(b), hex.EncodeToString(b)}
		}
		kinds := []schema.GroupVersionKind{
			{Version: "v1", Kind: "SecretList"},
			{Version: "v1", Kind: "ConfigMapList"},
			{Group: "cert-manager.io", Version: "v1", Kind: "CertificateRequestList"},
			{Group: "mesh.fleetmesh.io", Version: "v1alpha1", Kind: "MeshClusterList"},
			{Version: "v1", Kind: "EventList"},
		}
		requests := 0
		for _, gvk := range kinds {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(gvk)
			Expect(f.Management.Client.List(ctx, list)).To(Succeed())
			if gvk.Kind == "CertificateRequestList" {
				requests = len(list.Items)
			}
			for _, item := range list.Items {
				raw, err := json.Marshal(item.Object)
				Expect(err).NotTo(HaveOccurred())
				for _, n := range needles {
					for _, e := range encodings(n) {
						Expect(bytes.Contains(raw, []byte(e))).To(BeFalse(), "%s %s/%s holds a member's CA key", gvk.Kind, item.GetNamespace(), item.GetName())
					}
				}
			}
		}
		Expect(requests).To(BeNumerically(">=", len(f.Members)), "the members' CertificateRequests were looked at")
		GinkgoWriter.Printf("searched management for %d key encodings of %d members: none found (%d CertificateRequests)\n", len(needles)*4, len(f.Members), requests)
	})

	It("rotates a member's intermediate on demand: a new CertificateRequest, new SVIDs from the new intermediate, old ones still trusted", func() {
		a := f.Members[0]
		before, _ := svidChain(a)
		mc, err := f.MeshClusterOf(ctx, a)
		Expect(err).NotTo(HaveOccurred())
		patch := client.MergeFrom(mc.DeepCopy())
		if mc.Annotations == nil {
			mc.Annotations = map[string]string{}
		}
		mc.Annotations[meshv1alpha1.RotateCAAnnotation] = time.Now().Format(time.RFC3339Nano)
		Expect(f.Management.Client.Patch(ctx, mc, patch)).To(Succeed())

		var after []*x509.Certificate
		Eventually(func(g Gomega) {
			chain, bundles := svidChain(a)
			g.Expect(chain[1].SerialNumber).NotTo(Equal(before[1].SerialNumber), "still signed by the first intermediate")
			g.Expect(chain[1].CheckSignatureFrom(root)).To(Succeed())
			// An SVID of the old intermediate is still trusted, the root being the same (checked
			// at its mid-life: with minute SVIDs it may have expired by now).
			_, _, err := x509svid.Verify(before, bundles, x509svid.WithTime(before[0].NotBefore.Add(before[0].NotAfter.Sub(before[0].NotBefore)/2)))
			g.Expect(err).NotTo(HaveOccurred())
			after = chain
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		requests := &unstructured.UnstructuredList{}
		requests.SetGroupVersionKind(schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "CertificateRequestList"})
		Expect(f.Management.Client.List(ctx, requests, client.InNamespace(mc.Namespace))).To(Succeed())
		var mine []string
		for _, cr := range requests.Items {
			if strings.HasPrefix(cr.GetName(), mc.Name+"-ca-") {
				mine = append(mine, cr.GetName())
			}
		}
		Expect(len(mine)).To(BeNumerically(">=", 2), "one CertificateRequest per intermediate: %v", mine)
		GinkgoWriter.Printf("%s rotated its intermediate: serial %x -> %x (CertificateRequests %v)\n", a.Name, before[1].SerialNumber, after[1].SerialNumber, mine)
	})
})
