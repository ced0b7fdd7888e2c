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

// Package identityclient is what a workload uses to get its X.509-SVID from its member's agent:
// it sends a fresh key's CSR with its ServiceAccount token, writes cert.pem, key.pem and
// bundle-map.json atomically into a directory (the files gRPC's pemfile provider and Envoy
// read), and renews at half-life.
package identityclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/utils/clock"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// Files written into Options.Dir.
const (
	CertFile      = "cert.pem"        // SVID chain, leaf first
	KeyFile       = "key.pem"         // PKCS#8, mode 0600
	BundleMapFile = "bundle-map.json" // gRPC's spiffe_trust_bundle_map_file
)

// Options configure a client.
type Options struct {
	// Address of the agent's identity API, host:port.
	Address string
	// TrustDomain is the member's trust domain.
	TrustDomain spiffeid.TrustDomain
	// TokenFile holds the ServiceAccount token (a projected token with audience "fleetmesh");
	// it is read again for every request, since the kubelet rotates it.
	TokenFile string
	// TrustFile holds the member's roots, to authenticate the agent before sending the token:
	// PEM certificates, a SPIFFE bundle document, or a bundle map. Read for every request. Empty
	// means the bundle map written by a previous fetch into Dir.
	TrustFile string
	// Dir receives CertFile, KeyFile and BundleMapFile.
	Dir string
	// Clock drives renewal; nil means the real clock.
	Clock clock.Clock
	// RetryMin and RetryMax bound the backoff after a failed fetch (default 1s and 1m).
	RetryMin, RetryMax time.Duration
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
	// DialOptions are added to the connection's (the transport credentials are set here).
	DialOptions []grpc.DialOption
	// OnFetch, if set, is called after every attempt of Run.
	OnFetch func(*Result, error)
	Log     logr.Logger
}

// Result describes a written SVID.
type Result struct {
	ID                  spiffeid.ID
	NotBefore, NotAfter time.Time
	// RenewAt is the SVID's half-life.
	RenewAt time.Time
}

func (o *Options) defaults() error {
	switch {
	case o.Address == "":
		return errors.New("identity client: an address is required")
	case o.TrustDomain.IsZero():
		return errors.New("identity client: a trust domain is required")
	case o.TokenFile == "":
		return errors.New("identity client: a token file is required")
	case o.Dir == "":
		return errors.New("identity client: an output directory is required")
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(time.Minute, o.RetryMin)
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return nil
}

// Fetch gets one SVID and writes it.
func Fetch(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return fetch(ctx, &opts)
}

func fetch(ctx context.Context, opts *Options) (*Result, error) {
	token, err := os.ReadFile(opts.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	token = bytes.TrimSpace(token)
	if len(token) == 0 {
		return nil, fmt.Errorf("token file %s is empty", opts.TokenFile)
	}
	trustFile := opts.TrustFile
	if trustFile == "" {
		trustFile = filepath.Join(opts.Dir, BundleMapFile)
	}
	roots, err := LoadTrust(opts.TrustDomain, trustFile)
	if err != nil {
		return nil, err
	}
	agentID, err := spiffeid.FromSegments(opts.TrustDomain, "ns", identityv1.AgentNamespace, "sa", identityv1.AgentServiceAccount)
	if err != nil {
		return nil, err
	}

	key, err := trust.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}

	// The token goes only to the agent of our own trust domain, authenticated by its SVID.
	creds := credentials.NewTLS(tlsconfig.TLSClientConfig(roots, tlsconfig.AuthorizeID(agentID)))
	cc, err := grpc.NewClient(opts.Address, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to the agent at %s: %w", opts.Address, err)
	}
	defer func() { _ = cc.Close() }()
	rctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	resp, err := identityv1.NewClient(cc).IssueX509SVID(rctx, &identityv1.IssueRequest{CSR: csr, Token: string(token)})
	if err != nil {
		return nil, fmt.Errorf("issue SVID at %s: %w", opts.Address, err)
	}

	// Never write an SVID that does not verify against the bundle map written beside it.
	var chain []*x509.Certificate
	for _, der := range resp.SVIDChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("the agent returned a bad certificate: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("the agent returned no certificate")
	}
	set, err := trust.ParseBundleMap(resp.BundleMap)
	if err != nil {
		return nil, fmt.Errorf("the agent returned a bad bundle map: %w", err)
	}
	id, _, err := x509svid.Verify(chain, set, x509svid.WithTime(opts.Clock.Now()))
	if err != nil {
		return nil, fmt.Errorf("the agent returned an SVID that does not verify against its bundle map: %w", err)
	}
	if id.TrustDomain() != opts.TrustDomain {
		return nil, fmt.Errorf("the agent returned an SVID for %s, outside trust domain %s", id, opts.TrustDomain)
	}
	if !key.PublicKey.Equal(chain[0].PublicKey) {
		return nil, errors.New("the agent returned an SVID for another key")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}

	// Bundle first, so peers' new roots are trusted before the new SVID is presented. A reader
	// between the key and cert renames sees a mismatched pair; gRPC's pemfile provider refuses
	// such a pair and keeps the previous one until its next refresh.
	if err := WriteFileAtomic(opts.Dir, BundleMapFile, resp.BundleMap, 0o644); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(opts.Dir, KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(opts.Dir, CertFile, trust.EncodeCertificatesPEM(chain), 0o644); err != nil {
		return nil, err
	}
	return &Result{ID: id, NotBefore: chain[0].NotBefore, NotAfter: chain[0].NotAfter, RenewAt: RenewAt(chain[0])}, nil
}

// RenewAt is a certificate's half-life.
func RenewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// Run fetches an SVID, then renews it at half-life until ctx ends; a failed fetch is retried
// with exponential backoff (never waiting past the current SVID's half-life for no reason, and
// never giving up: a workload without an SVID cannot do anything better).
func Run(ctx context.Context, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	backoff := opts.RetryMin
	for {
		res, err := fetch(ctx, &opts)
		if opts.OnFetch != nil {
			opts.OnFetch(res, err)
		}
		var wait time.Duration
		if err != nil {
			opts.Log.Error(err, "fetch SVID failed", "retryIn", backoff)
			wait = backoff
			backoff = min(2*backoff, opts.RetryMax)
		} else {
			backoff = opts.RetryMin
			wait = max(res.RenewAt.Sub(opts.Clock.Now()), 0)
			opts.Log.V(1).Info("SVID written", "id", res.ID.String(), "notAfter", res.NotAfter, "renewAt", res.RenewAt)
		}
		t := opts.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// LoadTrust reads the member's roots for td from PEM certificates, a SPIFFE bundle document
// or a bundle map.
func LoadTrust(td spiffeid.TrustDomain, path string) (x509bundle.Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read trust file: %w", err)
	}
	b, err := trust.ParseRoots(td, data)
	if err != nil {
		return nil, fmt.Errorf("trust file %s: %w", path, err)
	}
	return b, nil
}

// WriteFileAtomic replaces dir/name with data: written to a temporary file in dir, synced, then
// renamed over the old one, so a reader sees the old content or the new, never a part.
func WriteFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	ok = true
	// Persist the rename itself; best effort (not every filesystem syncs directories).
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
