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

package trust_test

import (
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// outside is a trust domain outside the mesh, as a SPIRE server would run it: a CA, and its
// bundle served at an https_spiffe bundle endpoint (go-spiffe's federation.Handler).
type outside struct {
	td       spiffeid.TrustDomain
	issuer   *trust.Issuer
	bundle   *spiffebundle.Bundle
	url      string
	endpoint spiffeid.ID
	server   *http.Server
}

func startOutside(name string) *outside {
	td := spiffeid.RequireTrustDomainFromString(name)
	key, err := trust.NewKey()
	Expect(err).NotTo(HaveOccurred())
	ca, err := trust.SelfSign(td, key, time.Now(), time.Hour, nil)
	Expect(err).NotTo(HaveOccurred())
	issuer, err := trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: time.Hour})
	Expect(err).NotTo(HaveOccurred())
	server := trust.Workload{Namespace: "spire", ServiceAccount: "server"}
	svid, err := issuer.NewSVID(server)
	Expect(err).NotTo(HaveOccurred())
	o := &outside{td: td, issuer: issuer, bundle: trust.NewBundle(td, ca.Roots(), 1, time.Second), endpoint: svid.ID}
	handler, err := federation.NewHandler(td, o.bundle)
	Expect(err).NotTo(HaveOccurred())
	// The operator runs in the test's network namespace: loopback reaches it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	o.url = "https://" + lis.Addr().String()
	o.server = &http.Server{Handler: handler, TLSConfig: tlsconfig.TLSServerConfig(svid), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = o.server.ServeTLS(lis, "", "") }()
	DeferCleanup(o.server.Close)
	return o
}

// federatedTrustDomain is the installation's status of td.
func federatedTrustDomain(td spiffeid.TrustDomain) func() *meshv1alpha1.FederatedTrustDomainStatus {
	return func() *meshv1alpha1.FederatedTrustDomainStatus {
		mi := &meshv1alpha1.MeshInstallation{}
		Expect(f.Management.Client.Get(ctx, client.ObjectKey{Name: fleet.MeshName}, mi)).To(Succeed())
		for i := range mi.Status.FederatedTrustDomains {
			if s := &mi.Status.FederatedTrustDomains[i]; s.TrustDomain == td.Name() {
				return s
			}
		}
		return nil
	}
}

// heldBy is the bundle of td in the federated set the operator wrote into m, nil if none.
func heldBy(m *fleet.Cluster, td spiffeid.TrustDomain) *spiffebundle.Bundle {
	cm := &corev1.ConfigMap{}
	Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.FederatedConfigMap}, cm)).To(Succeed())
	set, err := trust.ParseBundleMap([]byte(cm.Data[wire.FederatedKeyBundleMap]))
	Expect(err).NotTo(HaveOccurred())
	b, _ := set.Get(td)
	return b
}

func setFederatesWith(list ...meshv1alpha1.FederatedTrustDomain) {
	mi := &meshv1alpha1.MeshInstallation{}
	Expect(f.Management.Client.Get(ctx, client.ObjectKey{Name: fleet.MeshName}, mi)).To(Succeed())
	patch := client.MergeFrom(mi.DeepCopy())
	mi.Spec.Trust.FederatesWith = list
	Expect(f.Management.Client.Patch(ctx, mi, patch)).To(Succeed())
}

var _ = Describe("an outside trust domain (spec.trust.federatesWith)", Ordered, func() {
	var spire *outside

	BeforeAll(func() {
		spire = startOutside("spire.example.org")
		doc, err := trust.MarshalBundle(spire.bundle)
		Expect(err).NotTo(HaveOccurred())
		setFederatesWith(meshv1alpha1.FederatedTrustDomain{
			TrustDomain: spire.td.Name(), BundleEndpointURL: spire.url, Profile: meshv1alpha1.BundleEndpointProfileHTTPSSPIFFE,
			EndpointSPIFFEID: spire.endpoint.String(), Bundle: string(doc),
		})
		DeferCleanup(func() {
			setFederatesWith()
			for _, m := range f.Members {
				Eventually(func() *spiffebundle.Bundle { return heldBy(m, spire.td) }).Should(BeNil(), "%s still holds %s", m.Name, spire.td)
			}
		})
	})

	It("fetches its bundle from the https_spiffe endpoint into every member, and its workloads complete mTLS with the mesh's", func() {
		Eventually(func(g Gomega) {
			s := federatedTrustDomain(spire.td)()
			g.Expect(s).NotTo(BeNil())
			g.Expect(s.Error).To(BeEmpty())
			g.Expect(s.LastFetched).NotTo(BeNil())
			g.Expect(s.Bundle.Fingerprint).To(Equal(trust.Fingerprint(spire.bundle)))
		}).Should(Succeed())
		for _, m := range f.Members {
			Eventually(func() *spiffebundle.Bundle { return heldBy(m, spire.td) }).ShouldNot(BeNil(), "%s never got %s", m.Name, spire.td)
		}

		// A server in B, with the bundle map its agent hands out, accepts a client from SPIRE.
		var server *workload
		Eventually(func(g Gomega) {
			w, err := fetch(b, token(b, "server", identityv1.Audience))
			g.Expect(err).NotTo(HaveOccurred())
			_, ok := w.bundles.Get(spire.td)
			g.Expect(ok).To(BeTrue(), "B's workloads do not have %s's bundle yet", spire.td)
			server = w
		}).Should(Succeed())
		clientSVID, err := spire.issuer.NewSVID(trust.Workload{Namespace: ns, ServiceAccount: "client"})
		Expect(err).NotTo(HaveOccurred())
		client := &workload{svid: clientSVID, bundles: trust.NewBundleSet(spire.bundle, mustGet(server.bundles, trustDomain(b)))}
		seenByServer, seenByClient, err := handshake(b, server, client)
		Expect(err).NotTo(HaveOccurred())
		Expect(seenByServer).To(Equal(clientSVID.ID))
		Expect(seenByClient).To(Equal(server.svid.ID))
		GinkgoWriter.Printf("mTLS %s -> B: server saw %s, client saw %s\n", spire.td, seenByServer, seenByClient)
	})

	It("keeps the last good bundle when the endpoint goes down, says so in status, and blocks nothing else", func() {
		Expect(spire.server.Close()).To(Succeed())
		Eventually(func() string {
			if s := federatedTrustDomain(spire.td)(); s != nil {
				return s.Error
			}
			return ""
		}).Should(ContainSubstring(spire.url), "the failing endpoint is not reported")
		s := federatedTrustDomain(spire.td)()
		Expect(s.Bundle).NotTo(BeNil())
		Expect(s.Bundle.Fingerprint).To(Equal(trust.Fingerprint(spire.bundle)))
		for _, m := range f.Members {
			Expect(heldBy(m, spire.td)).NotTo(BeNil(), "%s lost %s's last good bundle", m.Name, spire.td)
			Eventually(trustFederated(m)).Should(HavePrefix("True/Federated"))
		}
		GinkgoWriter.Printf("endpoint down: %s\n", s.Error)
		// Both outcomes are counted on the operator's /metrics.
		Eventually(func() (string, error) { return f.OperatorMetrics(ctx) }).Should(And(
			MatchRegexp(`fleetmesh_trust_bundle_endpoint_fetches_total\{result="success",trust_domain="%s"\} [1-9]`, spire.td.Name()),
			MatchRegexp(`fleetmesh_trust_bundle_endpoint_fetches_total\{result="failure",trust_domain="%s"\} [1-9]`, spire.td.Name()),
			MatchRegexp(`fleetmesh_trust_bundle_expiry_timestamp_seconds\{installation="[^"]+",trust_domain="%s"\}`, spire.td.Name()),
		))
	})
})
