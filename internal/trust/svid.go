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

package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MaxCSRSize bounds the CSRs Sign reads: a P-256 CSR is a few hundred bytes.
const MaxCSRSize = 16 << 10

// Workload is an authenticated Kubernetes identity: what a TokenReview proved, never what a
// CSR claims.
type Workload struct {
	Namespace      string
	ServiceAccount string
}

const serviceAccountPrefix = "system:serviceaccount:"

// WorkloadFromUsername reads the workload out of an authenticated ServiceAccount user
// name, system:serviceaccount:<namespace>:<name>; any other user (a person, a node) is refused.
func WorkloadFromUsername(username string) (Workload, error) {
	rest, ok := strings.CutPrefix(username, serviceAccountPrefix)
	if !ok {
		return Workload{}, fmt.Errorf("user %q is not a ServiceAccount: only workloads get SVIDs", username)
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok || strings.Contains(sa, ":") {
		return Workload{}, fmt.Errorf("ServiceAccount user name %q is not %s<namespace>:<name>", username, serviceAccountPrefix)
	}
	if errs := isDNS1123Label(ns); len(errs) > 0 {
		return Workload{}, fmt.Errorf("ServiceAccount user name %q: namespace: %s", username, strings.Join(errs, "; "))
	}
	if errs := isDNS1123Subdomain(sa); len(errs) > 0 {
		return Workload{}, fmt.Errorf("ServiceAccount user name %q: name: %s", username, strings.Join(errs, "; "))
	}
	return Workload{Namespace: ns, ServiceAccount: sa}, nil
}

// ID is the workload's SPIFFE ID in td: spiffe://<td>/ns/<namespace>/sa/<serviceaccount>.
func (w Workload) ID(td spiffeid.TrustDomain) (spiffeid.ID, error) {
	if w.Namespace == "" || w.ServiceAccount == "" {
		return spiffeid.ID{}, fmt.Errorf("workload identity needs a namespace and a service account, got %q/%q", w.Namespace, w.ServiceAccount)
	}
	id, err := spiffeid.FromSegments(td, "ns", w.Namespace, "sa", w.ServiceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("workload %s/%s: %w", w.Namespace, w.ServiceAccount, err)
	}
	return id, nil
}

// CSRRefusal says why Sign refused a CSR.
type CSRRefusal string

// Reasons a CSR is refused. They are also metric label values: keep them stable.
const (
	CSRMalformed      CSRRefusal = "csr-malformed"
	CSRBadSignature   CSRRefusal = "csr-bad-signature"
	CSRUnsupportedKey CSRRefusal = "csr-unsupported-key"
	// CSRForeignID: the CSR names an ID other than the workload's and the issuer was told to
	// refuse such CSRs rather than sign for the workload's own ID.
	CSRForeignID CSRRefusal = "csr-foreign-id"
)

// CSRError is returned for a CSR that was refused; nothing was signed.
type CSRError struct {
	Reason CSRRefusal
	Err    error
}

func (e *CSRError) Error() string { return fmt.Sprintf("CSR refused (%s): %v", e.Reason, e.Err) }
func (e *CSRError) Unwrap() error { return e.Err }

func refuse(reason CSRRefusal, format string, args ...any) error {
	return &CSRError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ParseCSR reads a PEM or DER CSR and checks what signing depends on: its self-signature
// (the requester holds the key) and its key (ECDSA P-256 only). Every failure is a *CSRError.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, refuse(CSRMalformed, "empty CSR")
	}
	if len(data) > MaxCSRSize {
		return nil, refuse(CSRMalformed, "CSR of %d bytes exceeds %d", len(data), MaxCSRSize)
	}
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, refuse(CSRMalformed, "PEM block %q is not a CERTIFICATE REQUEST", block.Type)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, refuse(CSRMalformed, "%v", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, refuse(CSRUnsupportedKey, "the key must be ECDSA P-256, got %s", csr.PublicKeyAlgorithm)
	}
	if pub.Curve != elliptic.P256() {
		return nil, refuse(CSRUnsupportedKey, "the key must be ECDSA P-256, got curve %s", pub.Curve.Params().Name)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refuse(CSRBadSignature, "%v", err)
	}
	return csr, nil
}

// IssuerOptions configure an Issuer.
type IssuerOptions struct {
	// SVIDTTL is the lifetime of issued SVIDs (capped by the CA's own expiry).
	SVIDTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand supplies serial numbers; nil means crypto/rand.
	Rand io.Reader
	// RefuseForeignIDs refuses a CSR that names any URI SAN other than the workload's ID
	// (CSRForeignID). Off, such a CSR is signed for the workload's ID and its SANs ignored:
	// either way nothing is ever signed for an ID the CSR asks for.
	RefuseForeignIDs bool
}

// Issuer signs workload X.509-SVIDs with the member's current CA. It is safe for concurrent
// use; SetCA switches the signing CA (rotation) without stopping issuance.
type Issuer struct {
	opts IssuerOptions
	ca   atomic.Pointer[CA]
}

// NewIssuer returns an issuer signing with ca.
func NewIssuer(ca *CA, opts IssuerOptions) (*Issuer, error) {
	if ca == nil {
		return nil, errors.New("issuer: a CA is required")
	}
	if opts.SVIDTTL <= 0 {
		return nil, fmt.Errorf("issuer: SVID TTL must be positive, got %s", opts.SVIDTTL)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	i := &Issuer{opts: opts}
	i.ca.Store(ca)
	return i, nil
}

// CA is the CA currently signing.
func (i *Issuer) CA() *CA { return i.ca.Load() }

// SetCA switches signing to ca, which must be for the same trust domain.
func (i *Issuer) SetCA(ca *CA) error {
	if ca == nil {
		return errors.New("issuer: a CA is required")
	}
	if cur := i.ca.Load(); cur.trustDomain != ca.trustDomain {
		return fmt.Errorf("issuer: cannot switch from trust domain %s to %s", cur.trustDomain, ca.trustDomain)
	}
	i.ca.Store(ca)
	return nil
}

// Sign issues an X.509-SVID for exactly w's ID in the CA's trust domain, for the public key of
// csr (PEM or DER). The CSR proves possession of the key and nothing else: its subject, SANs
// and extensions are never copied. It returns the SVID chain, leaf first, then the CA's
// intermediates. A refused CSR is a *CSRError.
func (i *Issuer) Sign(csr []byte, w Workload) ([]*x509.Certificate, error) {
	req, err := ParseCSR(csr)
	if err != nil {
		return nil, err
	}
	return i.sign(req, w)
}

func (i *Issuer) sign(req *x509.CertificateRequest, w Workload) ([]*x509.Certificate, error) {
	ca := i.ca.Load()
	id, err := w.ID(ca.trustDomain)
	if err != nil {
		return nil, err
	}
	if i.opts.RefuseForeignIDs {
		for _, u := range req.URIs {
			if u.String() != id.String() {
				return nil, refuse(CSRForeignID, "the CSR asks for %q but the caller is %q", u, id)
			}
		}
	}
	now := i.opts.Now()
	caCert := ca.chain[0]
	if !now.Before(caCert.NotAfter) {
		return nil, fmt.Errorf("sign SVID for %s: the CA expired at %s", id, caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(i.opts.SVIDTTL)
	if notAfter.After(caCert.NotAfter) {
		// A leaf outliving its CA would fail verification anyway; shorter is honest.
		notAfter = caCert.NotAfter
	}
	serial, err := newSerial(i.opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("sign SVID for %s: %w", id, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		URIs:                  []*url.URL{id.URL()},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(orRand(i.opts.Rand), tmpl, caCert, req.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign SVID for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sign SVID for %s: parse: %w", id, err)
	}
	return append([]*x509.Certificate{leaf}, ca.Intermediates()...), nil
}

// NewSVID generates a key and issues an SVID for w, for the agent's own serving identity.
func (i *Issuer) NewSVID(w Workload) (*x509svid.SVID, error) {
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new SVID key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(orRand(i.opts.Rand), &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("new SVID CSR: %w", err)
	}
	chain, err := i.Sign(csr, w)
	if err != nil {
		return nil, err
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}
