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
	"crypto/x509"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

var (
	tdA = spiffeid.RequireTrustDomainFromString("alpha.default.mesh")
	tdB = spiffeid.RequireTrustDomainFromString("beta.default.mesh")
)

// fakeReviewer answers TokenReviews from a table, as the member's API server would.
type fakeReviewer struct {
	mu      sync.Mutex
	results map[string]ReviewResult
	err     error
	calls   int
	lastAud []string
}

func (f *fakeReviewer) Review(_ context.Context, token string, audiences []string) (ReviewResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.lastAud = audiences
	if f.err != nil {
		return ReviewResult{}, f.err
	}
	if r, ok := f.results[token]; ok {
		return r, nil
	}
	return ReviewResult{Error: "invalid bearer token"}, nil
}

func saReview(ns, sa string) ReviewResult {
	return ReviewResult{Authenticated: true, Username: "system:serviceaccount:" + ns + ":" + sa, Audiences: []string{Audience}}
}

// countingSigner counts what was really signed, so refusals can be shown to sign nothing.
type countingSigner struct {
	inner  Signer
	signed atomic.Int64
}

func (c *countingSigner) Sign(csr []byte, w trust.Workload) ([]*x509.Certificate, error) {
	chain, err := c.inner.Sign(csr, w)
	if err == nil {
		c.signed.Add(1)
	}
	return chain, err
}

// testAgent is one member's identity API on 127.0.0.1, with its CA and bundle map.
type testAgent struct {
	td       spiffeid.TrustDomain
	ca       *trust.CA
	signer   *countingSigner
	reviewer *fakeReviewer
	reg      *prometheus.Registry
	server   *Server
	addr     string
	bundle   x509bundle.Source // the member's own bundle, what a workload trusts the agent with
	mapBytes atomic.Pointer[[]byte]
}

type agentOption func(*trust.IssuerOptions)

func startAgent(t testing.TB, td spiffeid.TrustDomain, opts ...agentOption) *testAgent {
	t.Helper()
	key, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := trust.SelfSign(td, key, time.Now(), 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	io := trust.IssuerOptions{SVIDTTL: time.Hour}
	for _, o := range opts {
		o(&io)
	}
	iss, err := trust.NewIssuer(ca, io)
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{
		td: td, ca: ca, signer: &countingSigner{inner: iss},
		reviewer: &fakeReviewer{results: map[string]ReviewResult{}},
		reg:      prometheus.NewRegistry(),
		bundle:   trust.NewBundle(td, ca.Roots(), 1, 0),
	}
	a.setBundleSet(t, trust.NewBundleSet(trust.NewBundle(td, ca.Roots(), 1, time.Minute)))
	a.server, err = NewServer(Options{
		Signer: a.signer, Reviewer: a.reviewer, Registerer: a.reg,
		BundleMap: func() []byte {
			if p := a.mapBytes.Load(); p != nil {
				return *p
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	serving, err := iss.NewSVID(AgentWorkload)
	if err != nil {
		t.Fatal(err)
	}
	holder := &SVIDHolder{}
	holder.Set(serving)
	g := NewGRPCServer(a.server, holder)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	a.addr = lis.Addr().String()
	return a
}

func (a *testAgent) setBundleSet(t testing.TB, s *trust.BundleSet) {
	t.Helper()
	if s == nil {
		a.mapBytes.Store(nil)
		return
	}
	m, err := s.MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	a.mapBytes.Store(&m)
}

func (a *testAgent) agentID() spiffeid.ID {
	id, _ := AgentWorkload.ID(a.td)
	return id
}

// dial connects to the agent over TLS, verifying that it is the agent of its trust domain.
func (a *testAgent) dial(t testing.TB) *identityv1.Client {
	t.Helper()
	creds := credentials.NewTLS(tlsconfig.TLSClientConfig(a.bundle, tlsconfig.AuthorizeID(a.agentID())))
	cc, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return identityv1.NewClient(cc)
}

// issue asks for an SVID for a fresh key; it returns the SVID and the bundle map it came with.
func issue(ctx context.Context, c *identityv1.Client, token string, csr []byte, key *ecdsa.PrivateKey) (*x509svid.SVID, *trust.BundleSet, error) {
	resp, err := c.IssueX509SVID(ctx, &identityv1.IssueRequest{CSR: csr, Token: token})
	if err != nil {
		return nil, nil, err
	}
	var certs []*x509.Certificate
	for _, der := range resp.SVIDChain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, err
		}
		certs = append(certs, cert)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, nil, err
	}
	set, err := trust.ParseBundleMap(resp.BundleMap)
	if err != nil {
		return nil, nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}, set, nil
}

// counter reads a metric from the registry the server was given.
func counter(t testing.TB, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason == "" && len(m.GetLabel()) == 0 {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}

func mustID(t testing.TB, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
