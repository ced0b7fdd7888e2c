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

package identityclient

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

var (
	tdA = spiffeid.RequireTrustDomainFromString("alpha.default.mesh")
	tdB = spiffeid.RequireTrustDomainFromString("beta.default.mesh")
)

// reviewer accepts "web-token" as shop/web, unless refusing is set.
type reviewer struct{ refusing atomic.Bool }

func (r *reviewer) Review(_ context.Context, token string, _ []string) (identity.ReviewResult, error) {
	if token != "web-token" || r.refusing.Load() {
		return identity.ReviewResult{Error: "invalid bearer token"}, nil
	}
	return identity.ReviewResult{Authenticated: true, Username: "system:serviceaccount:shop:web", Audiences: []string{"fleetmesh"}}, nil
}

type agent struct {
	addr     string
	ca       *trust.CA
	other    *trust.CA
	reviewer *reviewer
	issued   atomic.Int64
	dir      string // holds token and trust files
}

type countingSigner struct {
	iss *trust.Issuer
	n   *atomic.Int64
}

func (c countingSigner) Sign(csr []byte, w trust.Workload) ([]*x509.Certificate, error) {
	c.n.Add(1)
	return c.iss.Sign(csr, w)
}

// startAgent serves member A's identity API on 127.0.0.1, with a bundle map federating A and B.
func startAgent(t *testing.T) *agent {
	t.Helper()
	mk := func(td spiffeid.TrustDomain) *trust.CA {
		k, err := trust.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		ca, err := trust.SelfSign(td, k, time.Now(), 24*time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	a := &agent{ca: mk(tdA), other: mk(tdB), reviewer: &reviewer{}, dir: t.TempDir()}
	iss, err := trust.NewIssuer(a.ca, trust.IssuerOptions{SVIDTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.NewBundleSet(trust.NewBundle(tdA, a.ca.Roots(), 1, time.Minute), trust.NewBundle(tdB, a.other.Roots(), 1, time.Minute)).MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := identity.NewServer(identity.Options{Signer: countingSigner{iss, &a.issued}, Reviewer: a.reviewer, BundleMap: func() []byte { return m }})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := iss.NewSVID(identity.AgentWorkload)
	if err != nil {
		t.Fatal(err)
	}
	g := identity.NewGRPCServer(srv, svid)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	a.addr = lis.Addr().String()
	writeFile(t, filepath.Join(a.dir, "token"), "web-token\n")
	writeFile(t, filepath.Join(a.dir, "ca.pem"), string(trust.EncodeCertificatesPEM(a.ca.Roots())))
	return a
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (a *agent) options(out string) Options {
	return Options{
		Address: a.addr, TrustDomain: tdA,
		TokenFile: filepath.Join(a.dir, "token"), TrustFile: filepath.Join(a.dir, "ca.pem"), Dir: out,
	}
}

func TestFetchWritesFilesGRPCReads(t *testing.T) {
	a := startAgent(t)
	out := t.TempDir()
	res, err := Fetch(context.Background(), a.options(out))
	if err != nil {
		t.Fatal(err)
	}
	if res.ID.String() != "spiffe://alpha.default.mesh/ns/shop/sa/web" {
		t.Fatalf("ID %s", res.ID)
	}
	if want := res.NotBefore.Add(res.NotAfter.Sub(res.NotBefore) / 2); !res.RenewAt.Equal(want) {
		t.Errorf("renew at %s, want half-life %s", res.RenewAt, want)
	}
	svid, err := x509svid.Load(filepath.Join(out, CertFile), filepath.Join(out, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != res.ID {
		t.Errorf("files hold %s", svid.ID)
	}
	for name, perm := range map[string]os.FileMode{CertFile: 0o644, KeyFile: 0o600, BundleMapFile: 0o644} {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil || fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v (%v)", name, fi.Mode().Perm(), perm, err)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 3 {
		t.Errorf("directory holds %d entries, want exactly the 3 files (no temporaries)", len(entries))
	}

	// gRPC's own file watcher (what proxyless gRPC's file_watcher plugin runs) reads the files.
	p, err := pemfile.NewProvider(pemfile.Options{
		CertFile: filepath.Join(out, CertFile), KeyFile: filepath.Join(out, KeyFile),
		SPIFFEBundleMapFile: filepath.Join(out, BundleMapFile), RefreshDuration: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	km, err := p.KeyMaterial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(km.Certs) != 1 || len(km.SPIFFEBundleMap) != 2 || km.SPIFFEBundleMap["beta.default.mesh"] == nil {
		t.Fatalf("gRPC read %d certs and bundle map %v", len(km.Certs), km.SPIFFEBundleMap)
	}
}

func TestFetchRenewalUsesItsOwnBundleMap(t *testing.T) {
	a := startAgent(t)
	out := t.TempDir()
	opts := a.options(out)
	if _, err := Fetch(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	opts.TrustFile = "" // trust the bundle map written by the first fetch
	if _, err := Fetch(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
}

func TestFetchErrors(t *testing.T) {
	a := startAgent(t)
	other := startAgent(t) // another member's agent, same trust domain name, other CA
	for name, tc := range map[string]struct {
		mod  func(*Options)
		want string
	}{
		"token refused": {func(o *Options) {
			writeFile(t, filepath.Join(a.dir, "token2"), "stolen")
			o.TokenFile = filepath.Join(a.dir, "token2")
		}, "Unauthenticated"},
		"no token file": {func(o *Options) { o.TokenFile = filepath.Join(a.dir, "missing") }, "read token"},
		"empty token": {func(o *Options) {
			writeFile(t, filepath.Join(a.dir, "empty"), "\n")
			o.TokenFile = filepath.Join(a.dir, "empty")
		}, "empty"},
		"no trust yet":       {func(o *Options) { o.TrustFile = "" }, "read trust file"},
		"untrusted agent":    {func(o *Options) { o.Address = other.addr }, "Unavailable"},
		"wrong trust domain": {func(o *Options) { o.TrustDomain = tdB }, "Unavailable"},
		"missing output dir": {func(o *Options) { o.Dir = filepath.Join(o.Dir, "nope") }, "write bundle-map.json"},
		"missing option":     {func(o *Options) { o.Address = "" }, "address is required"},
		"trust file garbage": {func(o *Options) {
			writeFile(t, filepath.Join(a.dir, "bad.pem"), "junk")
			o.TrustFile = filepath.Join(a.dir, "bad.pem")
		}, "no PEM certificate"},
		"trust map lacks td": {func(o *Options) {
			o.TrustDomain = spiffeid.RequireTrustDomainFromString("gamma.mesh")
			o.TrustFile = mapFile(t, a)
		}, "no bundle for gamma.mesh"},
	} {
		t.Run(name, func(t *testing.T) {
			opts := a.options(t.TempDir())
			opts.Timeout = 5 * time.Second
			tc.mod(&opts)
			before := a.issued.Load()
			_, err := Fetch(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if name != "missing output dir" && a.issued.Load() != before {
				t.Error("something was signed")
			}
		})
	}
}

func mapFile(t *testing.T, a *agent) string {
	t.Helper()
	m, err := trust.NewBundleSet(trust.NewBundle(tdA, a.ca.Roots(), 1, 0)).MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(a.dir, "map.json")
	writeFile(t, p, string(m))
	return p
}

// TestRunRenewsAtHalfLife drives Run with a fake clock: a fetch at start, none before half-life,
// one after; a failed renewal is retried with backoff until it succeeds.
func TestRunRenewsAtHalfLife(t *testing.T) {
	a := startAgent(t)
	out := t.TempDir()
	clk := clocktesting.NewFakeClock(time.Now())
	type attempt struct {
		res *Result
		err error
	}
	attempts := make(chan attempt, 10)
	opts := a.options(out)
	opts.Clock = clk
	opts.RetryMin, opts.RetryMax = time.Second, 4*time.Second
	opts.OnFetch = func(r *Result, err error) { attempts <- attempt{r, err} }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := Run(ctx, opts); err != nil {
			t.Error(err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	next := func() attempt {
		t.Helper()
		select {
		case at := <-attempts:
			return at
		case <-time.After(10 * time.Second):
			t.Fatal("no fetch attempt")
			return attempt{}
		}
	}
	waitTimer := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !clk.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("Run is not waiting")
			}
			time.Sleep(time.Millisecond)
		}
	}
	first := next()
	if first.err != nil {
		t.Fatal(first.err)
	}
	waitTimer()
	clk.Step(first.res.RenewAt.Sub(clk.Now()) - time.Second)
	select {
	case at := <-attempts:
		t.Fatalf("renewed before half-life: %+v", at)
	case <-time.After(100 * time.Millisecond):
	}
	a.reviewer.refusing.Store(true) // the next renewal fails...
	clk.Step(time.Second)
	if at := next(); at.err == nil {
		t.Fatal("renewal with a refused token succeeded")
	}
	waitTimer()
	clk.Step(time.Second) // ...and is retried after RetryMin
	if at := next(); at.err == nil {
		t.Fatal("expected a second failure")
	}
	a.reviewer.refusing.Store(false)
	waitTimer()
	clk.Step(time.Second) // backoff doubled: not yet
	select {
	case at := <-attempts:
		t.Fatalf("retried before the backoff: %+v", at)
	case <-time.After(100 * time.Millisecond):
	}
	clk.Step(time.Second)
	second := next()
	if second.err != nil {
		t.Fatal(second.err)
	}
	svid, err := x509svid.Load(filepath.Join(out, CertFile), filepath.Join(out, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://alpha.default.mesh/ns/shop/sa/web" {
		t.Fatalf("ID %s", svid.ID)
	}
	if a.issued.Load() != 2 {
		t.Errorf("%d SVIDs signed, want 2 (refusals sign nothing)", a.issued.Load())
	}
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"one", "two"} {
		if err := WriteFileAtomic(dir, "f", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "f"))
		if err != nil || string(got) != content {
			t.Fatalf("read %q %v", got, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries left", len(entries))
	}
}
