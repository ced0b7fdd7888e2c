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

package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

func newCSR(t testing.TB, key any, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAgentWorkloadMatchesInstall(t *testing.T) {
	if AgentWorkload.Namespace != install.Namespace || AgentWorkload.ServiceAccount != install.AgentName {
		t.Fatalf("AgentWorkload %+v, install renders %s/%s", AgentWorkload, install.Namespace, install.AgentName)
	}
}

func TestIssueHappyPath(t *testing.T) {
	a := startAgent(t, tdA)
	b := startAgent(t, tdB)
	// The member's bundle map carries its own trust domain and the federated one.
	a.setBundleSet(t, trust.NewBundleSet(trust.NewBundle(tdA, a.ca.Roots(), 1, time.Minute), trust.NewBundle(tdB, b.ca.Roots(), 1, time.Minute)))
	a.reviewer.results["web-token"] = saReview("shop", "web")
	key := newKey(t)

	svid, set, err := issue(context.Background(), a.dial(t), "web-token", newCSR(t, key), key)
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://alpha.default.mesh/ns/shop/sa/web" {
		t.Fatalf("ID %s", svid.ID)
	}
	// The issued SVID verifies against the bundle it came with (go-spiffe).
	if id, _, err := x509svid.Verify(svid.Certificates, set); err != nil || id != svid.ID {
		t.Fatalf("verify: %s %v", id, err)
	}
	if got := set.TrustDomains(); len(got) != 2 {
		t.Errorf("bundle map trust domains %v", got)
	}
	if ttl := time.Until(svid.Certificates[0].NotAfter); ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL %s, want 1h", ttl)
	}
	if a.reviewer.lastAud[0] != "fleetmesh" || len(a.reviewer.lastAud) != 1 {
		t.Errorf("reviewed for audiences %v, want [fleetmesh]", a.reviewer.lastAud)
	}
	if n := counter(t, a.reg, "fleetmesh_identity_svids_issued_total", ""); n != 1 {
		t.Errorf("issued counter %v", n)
	}
}

func TestCSRAskingAnotherIDGetsTheTokensID(t *testing.T) {
	a := startAgent(t, tdA)
	a.reviewer.results["web-token"] = saReview("shop", "web")
	key := newKey(t)
	for _, asked := range []string{
		"spiffe://alpha.default.mesh/ns/kube-system/sa/admin",
		"spiffe://beta.default.mesh/ns/shop/sa/web",
		"spiffe://alpha.default.mesh/ns/fleetmesh-system/sa/fleetmesh-agent",
	} {
		svid, _, err := issue(context.Background(), a.dial(t), "web-token", newCSR(t, key, asked), key)
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID.String() != "spiffe://alpha.default.mesh/ns/shop/sa/web" {
			t.Fatalf("CSR asked for %s, got %s; want the token's identity only", asked, svid.ID)
		}
		if len(svid.Certificates[0].URIs) != 1 {
			t.Fatalf("URIs %v", svid.Certificates[0].URIs)
		}
	}
}

func TestRefusals(t *testing.T) {
	key := newKey(t)
	good := newCSR(t, key)
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-3] ^= 0x55
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		token    string
		review   *ReviewResult // what the API server says about token
		revErr   error
		csr      []byte
		strict   bool
		noBundle bool
		code     codes.Code
		reason   string
		msg      string
	}{
		{name: "expired token", token: "expired",
			review: &ReviewResult{Error: "[invalid bearer token, service account token has expired]"},
			csr:    good, code: codes.Unauthenticated, reason: ReasonUnauthenticated, msg: "has expired"},
		{name: "token for another audience (API server refuses it)", token: "other-aud",
			review: &ReviewResult{Error: "[invalid bearer token, token audiences [\"https://kubernetes.default.svc\"] is invalid for the target audiences [\"fleetmesh\"]]"},
			csr:    good, code: codes.Unauthenticated, reason: ReasonUnauthenticated, msg: "invalid for the target audiences"},
		{name: "token for another audience (authenticated, audience missing)", token: "aud-ignored",
			review: &ReviewResult{Authenticated: true, Username: "system:serviceaccount:shop:web", Audiences: []string{"https://kubernetes.default.svc"}},
			csr:    good, code: codes.Unauthenticated, reason: ReasonWrongAudience, msg: "not \"fleetmesh\""},
		{name: "token of another cluster", token: "from-beta", csr: good, // unknown to this API server
			code: codes.Unauthenticated, reason: ReasonUnauthenticated, msg: "invalid bearer token"},
		{name: "a person, not a ServiceAccount", token: "alice",
			review: &ReviewResult{Authenticated: true, Username: "alice", Audiences: []string{Audience}},
			csr:    good, code: codes.PermissionDenied, reason: ReasonNotServiceAccount, msg: "not a ServiceAccount"},
		{name: "a node", token: "node",
			review: &ReviewResult{Authenticated: true, Username: "system:node:n1", Audiences: []string{Audience}},
			csr:    good, code: codes.PermissionDenied, reason: ReasonNotServiceAccount},
		{name: "no token", token: "", csr: good, code: codes.Unauthenticated, reason: ReasonMissingToken, msg: "token"},
		{name: "no CSR", token: "web", csr: nil, code: codes.InvalidArgument, reason: ReasonMissingCSR},
		{name: "garbage CSR", token: "web", csr: []byte("not a CSR"), code: codes.InvalidArgument, reason: string(trust.CSRMalformed)},
		{name: "CSR with a bad signature", token: "web", csr: badSig, code: codes.InvalidArgument, reason: string(trust.CSRBadSignature), msg: "signature"},
		{name: "RSA CSR", token: "web", csr: newCSR(t, rsaKey), code: codes.InvalidArgument, reason: string(trust.CSRUnsupportedKey), msg: "P-256"},
		{name: "P-384 CSR", token: "web", csr: newCSR(t, p384), code: codes.InvalidArgument, reason: string(trust.CSRUnsupportedKey), msg: "P-256"},
		{name: "CSR asking another ID, strict mode", token: "web", strict: true,
			csr:  newCSR(t, key, "spiffe://alpha.default.mesh/ns/kube-system/sa/admin"),
			code: codes.InvalidArgument, reason: string(trust.CSRForeignID), msg: "kube-system"},
		{name: "API server unreachable", token: "web", revErr: errors.New("connection refused"), csr: good,
			code: codes.Unavailable, reason: ReasonReviewFailed, msg: "connection refused"},
		{name: "no bundle yet", token: "web", noBundle: true, csr: good, code: codes.Unavailable, reason: ReasonBundleUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := startAgent(t, tdA, func(o *trust.IssuerOptions) { o.RefuseForeignIDs = tc.strict })
			a.reviewer.results["web"] = saReview("shop", "web")
			if tc.review != nil {
				a.reviewer.results[tc.token] = *tc.review
			}
			a.reviewer.err = tc.revErr
			if tc.noBundle {
				a.setBundleSet(t, nil)
			}
			before := counter(t, a.reg, "fleetmesh_identity_requests_refused_total", tc.reason)
			_, err := a.dial(t).IssueX509SVID(context.Background(), &identityv1.IssueRequest{CSR: tc.csr, Token: tc.token})
			st, _ := status.FromError(err)
			if st.Code() != tc.code {
				t.Fatalf("code %s (%v), want %s", st.Code(), err, tc.code)
			}
			if !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("message %q does not say %q", st.Message(), tc.msg)
			}
			t.Logf("%s: %s", st.Code(), st.Message())
			if n := a.signer.signed.Load(); n != 0 {
				t.Errorf("%d SVIDs signed on a refusal", n)
			}
			if n := counter(t, a.reg, "fleetmesh_identity_svids_issued_total", ""); n != 0 {
				t.Errorf("issued counter %v on a refusal", n)
			}
			if got := counter(t, a.reg, "fleetmesh_identity_requests_refused_total", tc.reason); got != before+1 {
				t.Errorf("refused{reason=%q} went %v -> %v", tc.reason, before, got)
			}
		})
	}
}

func TestOversizedRequestIsRefused(t *testing.T) {
	a := startAgent(t, tdA)
	_, err := a.dial(t).IssueX509SVID(context.Background(), &identityv1.IssueRequest{CSR: make([]byte, MaxRequestSize), Token: "web"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	if a.reviewer.calls != 0 {
		t.Error("an oversized request reached the reviewer")
	}
}

// TestClientRefusesAnImpostor: a workload only sends its token to the agent of its own trust
// domain; a server with another identity (or another trust domain's agent) fails the handshake.
func TestClientRefusesAnImpostor(t *testing.T) {
	a := startAgent(t, tdA)
	b := startAgent(t, tdB)
	for name, creds := range map[string]credentials.TransportCredentials{
		"agent of another trust domain": credentials.NewTLS(tlsconfig.TLSClientConfig(b.bundle, tlsconfig.AuthorizeID(b.agentID()))),
		"not the agent's identity": credentials.NewTLS(tlsconfig.TLSClientConfig(a.bundle,
			tlsconfig.AuthorizeID(mustID(t, "spiffe://alpha.default.mesh/ns/shop/sa/web")))),
	} {
		t.Run(name, func(t *testing.T) {
			cc, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cc.Close() }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = identityv1.NewClient(cc).IssueX509SVID(ctx, &identityv1.IssueRequest{CSR: newCSR(t, newKey(t)), Token: "web"})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want a failed handshake", err)
			}
			if a.reviewer.calls != 0 {
				t.Error("the token reached the server")
			}
		})
	}
}

func TestNewServerValidates(t *testing.T) {
	a := startAgent(t, tdA)
	if _, err := NewServer(Options{Reviewer: a.reviewer, BundleMap: func() []byte { return nil }}); err == nil {
		t.Error("no signer accepted")
	}
	// Registering twice on one registry is refused, not a panic.
	if _, err := NewServer(Options{Signer: a.signer, Reviewer: a.reviewer, BundleMap: func() []byte { return nil }, Registerer: a.reg}); err == nil {
		t.Error("duplicate metrics registration accepted")
	}
}
