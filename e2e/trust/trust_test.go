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
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/identityclient"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestTrust(t *testing.T) {
	fleet.RunSuite(t, "Trust e2e suite (local fleet: 1 management + 3 members)")
}

const ns = "demo"

var (
	f       *fleet.Fleet
	ctx     = context.Background()
	a, b, c *fleet.Cluster
)

var _ = BeforeSuite(func() {
	// SVIDs of a minute (the least allowed) let a CA rotation run its course within the suite:
	// it waits for workloads to renew at half-life, then for the last old SVID to expire.
	f = fleet.StartMeshSuite(ctx, ns, func(mi *meshv1alpha1.MeshInstallation) {
		mi.Spec.Trust.SVIDTTL = &meshv1alpha1.Duration{Duration: time.Minute}
	})
	a, b, c = f.Members[0], f.Members[1], f.Members[2]
})

func meshCluster(m *fleet.Cluster) *meshv1alpha1.MeshCluster {
	mc, err := f.MeshClusterOf(ctx, m)
	Expect(err).NotTo(HaveOccurred())
	return mc
}

func trustDomain(m *fleet.Cluster) spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(meshCluster(m).Spec.TrustDomain)
}

func trustFederated(m *fleet.Cluster) func() string {
	return func() string {
		cond := meta.FindStatusCondition(meshCluster(m).Status.Conditions, meshv1alpha1.TrustFederatedCondition)
		if cond == nil {
			return ""
		}
		return string(cond.Status) + "/" + cond.Reason + ": " + cond.Message
	}
}

// token is a TokenRequest token of ServiceAccount demo/<sa> in m for audience.
func token(m *fleet.Cluster, sa, audience string) string {
	tok, err := fleet.WorkloadToken(ctx, m, ns, sa, audience)
	Expect(err).NotTo(HaveOccurred())
	return tok
}

func memberRoots(m *fleet.Cluster, dir string) string {
	path, err := fleet.MemberRoots(ctx, m, dir)
	Expect(err).NotTo(HaveOccurred())
	return path
}

// workload is what a pod gets from its member's identity API.
type workload struct {
	svid    *x509svid.SVID
	bundles *trust.BundleSet
}

func fetch(m *fleet.Cluster, tok string) (*workload, error) {
	dir := GinkgoT().TempDir()
	if err := f.FetchSVID(ctx, m, tok, dir); err != nil {
		return nil, err
	}
	return load(dir), nil
}

// load reads the SVID and bundle map the identity client wrote into dir.
func load(dir string) *workload {
	svid, set, err := fleet.LoadSVID(dir)
	Expect(err).NotTo(HaveOccurred())
	return &workload{svid: svid, bundles: set}
}

// handshake runs one mTLS handshake between client and server, each authorizing the other's
// trust domain, and returns the IDs each side saw.
func handshake(m *fleet.Cluster, server, client *workload) (seenByServer, seenByClient spiffeid.ID, err error) {
	lis, err := net.Listen("tcp", net.JoinHostPort(memberIP(m), "0"))
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = lis.Close() }()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer func() { _ = conn.Close() }()
		tc := tls.Server(conn, tlsconfig.MTLSServerConfig(server.svid, server.bundles, tlsconfig.AuthorizeMemberOf(client.svid.ID.TrustDomain())))
		if err := tc.HandshakeContext(ctx); err != nil {
			serverErr <- err
			return
		}
		seenByServer, err = x509svid.IDFromCert(tc.ConnectionState().PeerCertificates[0])
		serverErr <- err
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), tlsconfig.MTLSClientConfig(client.svid, client.bundles, tlsconfig.AuthorizeMemberOf(server.svid.ID.TrustDomain())))
	if err == nil {
		seenByClient, err = x509svid.IDFromCert(conn.ConnectionState().PeerCertificates[0])
		_, _ = conn.Write([]byte("x")) // completes the server's side of a TLS 1.3 handshake
		_ = conn.Close()
	}
	if sErr := <-serverErr; err == nil {
		err = sErr
	}
	return seenByServer, seenByClient, err
}

// memberIP is an address in the member's range that the test may bind in its own namespace.
func memberIP(m *fleet.Cluster) string {
	return net.IPv4(10, 244, byte(m.Index), 250).String()
}

var _ = Describe("trust domains federated across the fleet", Ordered, func() {
	It("federates every member's bundle into every other member and says so in status", func() {
		for _, m := range f.Members {
			Eventually(trustFederated(m)).WithTimeout(time.Minute).Should(HavePrefix("True/Federated"), m.Name)
			mc := meshCluster(m)
			Expect(mc.Status.Bundle).NotTo(BeNil())
			Expect(mc.Status.Bundle.Fingerprint).To(HaveLen(64))
			Expect(mc.Status.Bundle.Sequence).NotTo(BeZero())
			Expect(mc.Status.Bundle.Expiry.Time).To(BeTemporally(">", time.Now().Add(24*time.Hour)))
		}
		cm := &corev1.ConfigMap{}
		Expect(a.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.FederatedConfigMap}, cm)).To(Succeed())
		set, err := trust.ParseBundleMap([]byte(cm.Data[wire.FederatedKeyBundleMap]))
		Expect(err).NotTo(HaveOccurred())
		Expect(set.TrustDomains()).To(ConsistOf(trustDomain(b), trustDomain(c)), "A holds B's and C's bundles, not its own")
		Expect(cm.Data).To(HaveKey(trustDomain(b).Name() + ".json"))
		for _, m := range f.Members {
			bundle, ok := set.Get(trustDomain(m))
			if m == a {
				Expect(ok).To(BeFalse())
				continue
			}
			Expect(ok).To(BeTrue())
			Expect(trust.Fingerprint(bundle)).To(Equal(meshCluster(m).Status.Bundle.Fingerprint), "the federated bundle is the one %s published", m.Name)
		}
	})

	It("gives a workload in A an SVID from A's agent and completes mTLS with B's workload across trust domains", func() {
		client, err := fetch(a, token(a, "client", identityv1.Audience))
		Expect(err).NotTo(HaveOccurred())
		Expect(client.svid.ID.String()).To(Equal("spiffe://" + trustDomain(a).Name() + "/ns/demo/sa/client"))
		server, err := fetch(b, token(b, "server", identityv1.Audience))
		Expect(err).NotTo(HaveOccurred())
		Expect(server.svid.ID.TrustDomain()).To(Equal(trustDomain(b)))

		seenByServer, seenByClient, err := handshake(b, server, client)
		Expect(err).NotTo(HaveOccurred())
		Expect(seenByServer).To(Equal(client.svid.ID))
		Expect(seenByClient).To(Equal(server.svid.ID))
		GinkgoWriter.Printf("mTLS A->B: server saw %s, client saw %s\n", seenByServer, seenByClient)
	})

	It("fails the same handshake against a trust domain that was never federated", func() {
		server, err := fetch(b, token(b, "server", identityv1.Audience))
		Expect(err).NotTo(HaveOccurred())
		rogueSVID, rogueBundle, err := fleet.UnfederatedSVID(ns, "client")
		Expect(err).NotTo(HaveOccurred())
		rogue := &workload{svid: rogueSVID, bundles: trust.NewBundleSet(rogueBundle, mustGet(server.bundles, trustDomain(b)))}

		_, _, err = handshake(b, server, rogue)
		Expect(err).To(HaveOccurred(), "B's workload must refuse a client from an unfederated trust domain")
		GinkgoWriter.Printf("unfederated client refused: %v\n", err)
	})

	It("refuses an expired token, a token for another audience, a token from another cluster and a CSR for another ID, signing nothing", func() {
		// The same re-signing with current times is accepted: only the expiry differs.
		now := time.Now()
		resigned, err := f.ResignedToken(ctx, a, ns, "client", identityv1.Audience, now.Add(-time.Minute), now.Add(time.Hour))
		Expect(err).NotTo(HaveOccurred())
		_, err = fetch(a, resigned)
		Expect(err).NotTo(HaveOccurred(), "a re-signed current token")
		expired, err := f.ResignedToken(ctx, a, ns, "client", identityv1.Audience, now.Add(-2*time.Hour), now.Add(-time.Hour))
		Expect(err).NotTo(HaveOccurred())
		_, err = fetch(a, expired)
		Expect(err).To(MatchError(ContainSubstring("Unauthenticated")), "an expired token")
		GinkgoWriter.Printf("expired token refused: %v\n", err)
		_, err = fetch(a, token(a, "client", "some-other-audience"))
		Expect(err).To(MatchError(ContainSubstring("Unauthenticated")))
		_, err = fetch(a, token(c, "client", identityv1.Audience))
		Expect(err).To(MatchError(ContainSubstring("Unauthenticated")), "a token minted by C means nothing to A")

		// A CSR naming another SPIFFE ID, sent with a valid token.
		key, err := trust.NewKey()
		Expect(err).NotTo(HaveOccurred())
		other, _ := url.Parse("spiffe://" + trustDomain(a).Name() + "/ns/kube-system/sa/admin")
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{other}}, key)
		Expect(err).NotTo(HaveOccurred())
		roots, err := identityclient.LoadTrust(trustDomain(a), memberRoots(a, GinkgoT().TempDir()))
		Expect(err).NotTo(HaveOccurred())
		agentID := spiffeid.RequireFromSegments(trustDomain(a), "ns", identityv1.AgentNamespace, "sa", identityv1.AgentServiceAccount)
		addr, err := fleet.AgentAddress(ctx, a, install.IdentityPort)
		Expect(err).NotTo(HaveOccurred())
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(roots, tlsconfig.AuthorizeID(agentID)))))
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = cc.Close() }()
		resp, err := identityv1.NewClient(cc).IssueX509SVID(ctx, &identityv1.IssueRequest{CSR: csr, Token: token(a, "client", identityv1.Audience)})
		Expect(err).To(MatchError(ContainSubstring("foreign")))
		Expect(resp).To(BeNil())
		GinkgoWriter.Printf("foreign-ID CSR refused: %v\n", err)

		// The agent's /metrics counts what it signed and what it refused, by reason.
		Eventually(func() (string, error) { return fleet.AgentMetrics(ctx, a) }).Should(And(
			MatchRegexp(`(?m)^fleetmesh_identity_svids_issued_total [1-9]`),
			MatchRegexp(`(?m)^fleetmesh_identity_requests_refused_total\{reason="[^"]+"\} [1-9]`),
		))
	})
})

func mustGet(s *trust.BundleSet, td spiffeid.TrustDomain) *spiffebundle.Bundle {
	bundle, ok := s.Get(td)
	Expect(ok).To(BeTrue())
	return bundle
}
