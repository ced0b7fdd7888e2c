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

// Package trust is a member's SPIFFE trust machinery as pure functions and values: its CA
// (self-signed, or an intermediate signed through a CSR), X.509-SVID signing for authenticated
// workloads, SPIFFE bundles and the federated bundle set, and the CA rotation state machine.
// It makes no client calls: callers store and publish what it returns.
package trust

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Backdate is how far before "now" certificates start, so a peer whose clock is slightly
// behind does not refuse a certificate that was just issued.
const Backdate = 30 * time.Second

// Object identifiers of the extensions an intermediate CSR carries.
var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
)

// CA is a member's certificate authority: the key that signs SVIDs, its certificate chain, and
// the roots a bundle must carry for what it signs to verify.
type CA struct {
	trustDomain spiffeid.TrustDomain
	key         *ecdsa.PrivateKey
	// chain starts with the signing certificate, followed by the certificates that link it to
	// one of roots (without the root). A self-signed CA's chain is its root.
	chain []*x509.Certificate
	roots []*x509.Certificate
}

// NewKey generates a CA or workload key: ECDSA P-256. (Since Go 1.26 key generation always
// uses a secure random source, so there is nothing to inject here.)
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// caTemplate is the signing certificate every fleetmesh CA has: a CA for one trust domain whose
// name constraints permit only URIs in that trust domain, so even a CA under a shared issuer
// root cannot sign another member's IDs.
func caTemplate(td spiffeid.TrustDomain, serial *big.Int, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               caSubject(td),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
		// RFC 5280 says name constraints MUST be critical; Go names the flag after DNS
		// but it marks the whole extension.
		PermittedDNSDomainsCritical: true,
		PermittedURIDomains:         []string{td.Name()},
	}
}

func caSubject(td spiffeid.TrustDomain) pkix.Name {
	n := pkix.Name{Organization: []string{"fleetmesh"}}
	if len(td.Name()) <= 64 { // ub-common-name
		n.CommonName = td.Name()
	}
	return n
}

// SelfSign makes a self-signed root CA for td with key, valid from now (minus Backdate) for ttl.
// rnd supplies the serial number (nil means crypto/rand).
func SelfSign(td spiffeid.TrustDomain, key *ecdsa.PrivateKey, now time.Time, ttl time.Duration, rnd io.Reader) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("self-sign CA: trust domain is required")
	}
	if err := checkCAKey(key); err != nil {
		return nil, fmt.Errorf("self-sign CA for %s: %w", td, err)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("self-sign CA for %s: TTL must be positive, got %s", td, ttl)
	}
	serial, err := newSerial(rnd)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA for %s: %w", td, err)
	}
	tmpl := caTemplate(td, serial, now.Add(-Backdate), now.Add(ttl))
	// A root that signs workloads directly never needs to sign another CA.
	tmpl.MaxPathLenZero = true
	der, err := x509.CreateCertificate(orRand(rnd), tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA for %s: %w", td, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA for %s: parse: %w", td, err)
	}
	return &CA{trustDomain: td, key: key, chain: []*x509.Certificate{cert}, roots: []*x509.Certificate{cert}}, nil
}

// IntermediateCSR is the PEM CSR a member sends (through the operator, as a cert-manager
// CertificateRequest with isCA: true and usages "cert sign", "crl sign") to have its CA signed
// by an issuer. It asks for the same certificate SelfSign makes, name constraints included:
// cert-manager copies a CSR's Name Constraints extension into the certificate.
func IntermediateCSR(td spiffeid.TrustDomain, key *ecdsa.PrivateKey, rnd io.Reader) ([]byte, error) {
	if td.IsZero() {
		return nil, errors.New("intermediate CSR: trust domain is required")
	}
	if err := checkCAKey(key); err != nil {
		return nil, fmt.Errorf("intermediate CSR for %s: %w", td, err)
	}
	exts, err := caExtensions(td, key, rnd)
	if err != nil {
		return nil, fmt.Errorf("intermediate CSR for %s: %w", td, err)
	}
	der, err := x509.CreateCertificateRequest(orRand(rnd), &x509.CertificateRequest{
		Subject:         caSubject(td),
		URIs:            []*url.URL{td.ID().URL()},
		ExtraExtensions: exts,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("intermediate CSR for %s: %w", td, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// caExtensions returns the basic constraints, key usage and name constraints extensions of the
// CA template, encoded by Go's own certificate encoder (a throwaway self-signed certificate)
// rather than by hand-written ASN.1.
func caExtensions(td spiffeid.TrustDomain, key *ecdsa.PrivateKey, rnd io.Reader) ([]pkix.Extension, error) {
	// Validity and serial do not matter: only the extensions are kept.
	t0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	tmpl := caTemplate(td, big.NewInt(1), t0, t0.Add(time.Hour))
	der, err := x509.CreateCertificate(orRand(rnd), tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("encode CA extensions: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("encode CA extensions: %w", err)
	}
	var out []pkix.Extension
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidBasicConstraints) || e.Id.Equal(oidKeyUsage) || e.Id.Equal(oidNameConstraints) {
			out = append(out, e)
		}
	}
	if len(out) != 3 {
		return nil, fmt.Errorf("encode CA extensions: got %d of 3", len(out))
	}
	return out, nil
}

// NewIntermediate accepts a signed intermediate back for key: chainPEM is the issued
// certificate first, then any certificates linking it to a root (cert-manager's
// status.certificate); rootsPEM holds the issuer's root(s) (status.ca), which become the
// member's bundle. It refuses a certificate that is not for key, not a CA for exactly td, lacks
// the name constraint to td, or does not chain to the roots at now.
func NewIntermediate(td spiffeid.TrustDomain, key *ecdsa.PrivateKey, chainPEM, rootsPEM []byte, now time.Time) (*CA, error) {
	chain, err := ParseCertificatesPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("intermediate CA for %s: chain: %w", td, err)
	}
	roots, err := ParseCertificatesPEM(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("intermediate CA for %s: roots: %w", td, err)
	}
	// An issuer may return the root at the end of the chain as well: it belongs in roots only.
	chain = slices.DeleteFunc(chain, func(c *x509.Certificate) bool { return containsCert(roots, c) })
	if len(chain) == 0 {
		return nil, fmt.Errorf("intermediate CA for %s: the chain holds only roots", td)
	}
	return newCA(td, key, chain, roots, now)
}

// LoadCA rebuilds a CA from what MarshalPEM returned (as the agent stored it in its Secret) and
// checks it again, so a corrupted or tampered Secret is refused rather than used.
func LoadCA(td spiffeid.TrustDomain, chainPEM, keyPEM, rootsPEM []byte, now time.Time) (*CA, error) {
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA for %s: %w", td, err)
	}
	chain, err := ParseCertificatesPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA for %s: chain: %w", td, err)
	}
	roots, err := ParseCertificatesPEM(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA for %s: roots: %w", td, err)
	}
	return newCA(td, key, chain, roots, now)
}

func newCA(td spiffeid.TrustDomain, key *ecdsa.PrivateKey, chain, roots []*x509.Certificate, now time.Time) (*CA, error) {
	fail := func(format string, args ...any) (*CA, error) {
		return nil, fmt.Errorf("CA for %s: %s", td, fmt.Sprintf(format, args...))
	}
	if td.IsZero() {
		return nil, errors.New("CA: trust domain is required")
	}
	if err := checkCAKey(key); err != nil {
		return fail("%v", err)
	}
	if len(chain) == 0 || len(roots) == 0 {
		return fail("a certificate and at least one root are required")
	}
	signing := chain[0]
	if pub, ok := signing.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return fail("the certificate is not for this CA's key")
	}
	if !signing.IsCA || signing.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fail("the certificate is not a CA certificate with the cert sign usage")
	}
	if !slices.Equal(signing.PermittedURIDomains, []string{td.Name()}) {
		return fail("the certificate's name constraints permit URIs %q, want exactly [%q]: the issuer dropped or changed the constraint",
			signing.PermittedURIDomains, td.Name())
	}
	for _, u := range signing.URIs {
		if u.String() != td.IDString() {
			return fail("the certificate names %q, want only %q", u, td.IDString())
		}
	}
	rootPool := x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := signing.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fail("the certificate does not chain to the roots: %v", err)
	}
	return &CA{trustDomain: td, key: key, chain: slices.Clone(chain), roots: slices.Clone(roots)}, nil
}

// TrustDomain is the trust domain the CA signs for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.trustDomain }

// Certificate is the CA's signing certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.chain[0] }

// Roots are the certificates a bundle must carry for this CA's SVIDs to verify.
func (ca *CA) Roots() []*x509.Certificate { return slices.Clone(ca.roots) }

// Intermediates are the certificates sent after an SVID so peers can link it to a root:
// empty for a self-signed CA.
func (ca *CA) Intermediates() []*x509.Certificate {
	return slices.DeleteFunc(slices.Clone(ca.chain), func(c *x509.Certificate) bool { return containsCert(ca.roots, c) })
}

// MarshalPEM returns what the agent stores in its CA Secret: the chain (signing certificate
// first), the PKCS#8 key, and the roots. Only the key is secret.
func (ca *CA) MarshalPEM() (chainPEM, keyPEM, rootsPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("marshal CA key for %s: %w", ca.trustDomain, err)
	}
	return EncodeCertificatesPEM(ca.chain), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), EncodeCertificatesPEM(ca.roots), nil
}

// checkCAKey enforces the one key type fleetmesh CAs use.
func checkCAKey(key *ecdsa.PrivateKey) error {
	if key == nil {
		return errors.New("a key is required")
	}
	if key.Curve != elliptic.P256() {
		return fmt.Errorf("the key must be ECDSA P-256, got %s", key.Curve.Params().Name)
	}
	return nil
}

// ParseCertificatesPEM reads every CERTIFICATE block of data; anything else in data is an error.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return nil, errors.New("trailing data after the PEM certificates")
	}
	return out, nil
}

// EncodeCertificatesPEM is the inverse of ParseCertificatesPEM.
func EncodeCertificatesPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ParseKeyPEM reads a PKCS#8 ECDSA P-256 private key.
func ParseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PKCS#8 PRIVATE KEY PEM block found")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key must be ECDSA P-256, got %T", k)
	}
	return ek, checkCAKey(ek)
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(certs, c.Equal)
}

func orRand(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// newSerial returns a positive 128-bit serial number (RFC 5280 allows up to 20 octets).
func newSerial(rnd io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(orRand(rnd), b); err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	b[0] &= 0x7f
	s := new(big.Int).SetBytes(b)
	if s.Sign() == 0 {
		s.SetInt64(1)
	}
	return s, nil
}

// CheckIntermediateCSR is what the operator checks of a member's intermediate CSR before a
// cert-manager issuer signs it as a CA: a well-formed, self-signed P-256 request naming exactly
// the member's trust domain and nothing else (no DNS, IP or email names). That the certificate
// also carries the name constraint is checked on the way back (CheckIntermediate).
func CheckIntermediateCSR(td spiffeid.TrustDomain, csrPEM []byte) (*x509.CertificateRequest, error) {
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != td.ID().String() {
		return nil, fmt.Errorf("the CSR must name exactly %s, it names %v", td.ID(), csr.URIs)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("the CSR may name only %s, it also names DNS %v, IP %v, email %v", td.ID(), csr.DNSNames, csr.IPAddresses, csr.EmailAddresses)
	}
	return csr, nil
}

// CheckIntermediate is what the operator checks of a signed intermediate before it hands it to
// the member: the first certificate of chainPEM is a CA for csr's key, names exactly td, is
// limited by a critical name constraint to td's URIs only, and chains to rootsPEM at now. A
// certificate an issuer signed without the constraint would let the member speak for every trust
// domain of the same root; it never reaches the member.
func CheckIntermediate(td spiffeid.TrustDomain, csr *x509.CertificateRequest, chainPEM, rootsPEM []byte, now time.Time) error {
	chain, err := ParseCertificatesPEM(chainPEM)
	if err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	roots, err := ParseCertificatesPEM(rootsPEM)
	if err != nil {
		return fmt.Errorf("roots: %w", err)
	}
	cert := chain[0]
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	switch {
	case !ok || !pub.Equal(csr.PublicKey):
		return errors.New("the certificate is not for the CSR's key")
	case !cert.IsCA || !cert.BasicConstraintsValid:
		return errors.New("the certificate is not a CA")
	case len(cert.URIs) != 1 || cert.URIs[0].String() != td.ID().String() || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) > 0:
		return fmt.Errorf("the certificate must name exactly %s, it names %v %v %v %v", td.ID(), cert.URIs, cert.DNSNames, cert.IPAddresses, cert.EmailAddresses)
	case !cert.PermittedDNSDomainsCritical || !slices.Equal(cert.PermittedURIDomains, []string{td.Name()}):
		return fmt.Errorf("the certificate must be limited by a critical name constraint to %s, it permits URIs %v", td, cert.PermittedURIDomains)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the certificate does not chain to the issuer's CA: %w", err)
	}
	return nil
}
