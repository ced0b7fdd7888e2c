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
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestSelfSign(t *testing.T) {
	ca := mustSelfSigned(t, tdA, 90*24*time.Hour)
	c := ca.Certificate()
	switch {
	case !c.IsCA || !c.BasicConstraintsValid:
		t.Error("root is not a CA")
	case c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
		t.Errorf("key usage %v", c.KeyUsage)
	case len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://alpha.default.mesh":
		t.Errorf("URIs %v", c.URIs)
	case !slices.Equal(c.PermittedURIDomains, []string{"alpha.default.mesh"}):
		t.Errorf("permitted URI domains %v", c.PermittedURIDomains)
	case !c.PermittedDNSDomainsCritical:
		t.Error("name constraints are not critical")
	case !c.NotBefore.Equal(t0.Add(-Backdate)) || !c.NotAfter.Equal(t0.Add(90*24*time.Hour)):
		t.Errorf("validity %s - %s", c.NotBefore, c.NotAfter)
	case !c.MaxPathLenZero:
		t.Error("a self-signed root should not be allowed to sign CAs")
	}
	if len(ca.Intermediates()) != 0 {
		t.Errorf("a self-signed CA has no intermediates, got %d", len(ca.Intermediates()))
	}
	if !slices.EqualFunc(ca.Roots(), []*x509.Certificate{c}, (*x509.Certificate).Equal) {
		t.Error("roots should be the certificate itself")
	}
}

func TestSelfSignRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		key *ecdsa.PrivateKey
		ttl time.Duration
	}{
		"nil key":  {nil, time.Hour},
		"P-384":    {mustECDSA(t, elliptic.P384()), time.Hour},
		"zero TTL": {mustKey(t), 0},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := SelfSign(tdA, tc.key, t0, tc.ttl, nil); err == nil {
				t.Fatal("expected an error")
			}
		})
	}
}

func TestSelfSignSerialFromInjectedRandomness(t *testing.T) {
	key := mustKey(t)
	a, err := SelfSign(tdA, key, t0, time.Hour, bytes.NewReader(bytes.Repeat([]byte{0xff}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := new(big.Int).SetString("7fffffffffffffffffffffffffffffff", 16)
	if a.Certificate().SerialNumber.Cmp(want) != 0 {
		t.Errorf("serial %x, want %x", a.Certificate().SerialNumber, want)
	}
}

func TestIntermediateCSR(t *testing.T) {
	key := mustKey(t)
	p, err := IntermediateCSR(tdA, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a PEM CSR: %q", p)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://alpha.default.mesh" {
		t.Errorf("URIs %v", csr.URIs)
	}
	seen := map[string]bool{}
	for _, e := range csr.Extensions {
		seen[e.Id.String()] = true
		if e.Id.Equal(oidNameConstraints) && !e.Critical {
			t.Error("name constraints not critical")
		}
	}
	for _, oid := range []string{"2.5.29.19", "2.5.29.15", "2.5.29.30", "2.5.29.17"} {
		if !seen[oid] {
			t.Errorf("CSR lacks extension %s", oid)
		}
	}
	// The CSR's Name Constraints extension says what SelfSign's does: sign a certificate from
	// the CSR's own extensions, as cert-manager does, and read the constraint back.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: t0, NotAfter: t0.Add(time.Hour), ExtraExtensions: csr.Extensions}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, csr.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA || !slices.Equal(c.PermittedURIDomains, []string{"alpha.default.mesh"}) || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("certificate from the CSR: IsCA=%v permitted=%v usage=%v", c.IsCA, c.PermittedURIDomains, c.KeyUsage)
	}
}

// testIssuerRoot is an issuer root as a cert-manager CA Issuer would hold: no name constraints.
func testIssuerRoot(t *testing.T, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	tmpl.Subject.CommonName = "issuer root"
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// signIntermediate signs tmpl (whose public key is pub) with the issuer root, returning PEM.
func signIntermediate(t *testing.T, root *x509.Certificate, rootKey *ecdsa.PrivateKey, tmpl *x509.Certificate, pub any) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, pub, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestNewIntermediate(t *testing.T) {
	root, rootKey := testIssuerRoot(t, t0)
	rootPEM := EncodeCertificatesPEM([]*x509.Certificate{root})
	key := mustKey(t)
	good := func() *x509.Certificate {
		return caTemplate(tdA, big.NewInt(9), t0.Add(-time.Minute), t0.Add(30*24*time.Hour))
	}
	otherKey := mustKey(t)
	otherRoot, otherRootKey := testIssuerRoot(t, t0)

	tests := []struct {
		name    string
		chain   []byte
		roots   []byte
		wantErr string
	}{
		{name: "accepted", chain: signIntermediate(t, root, rootKey, good(), &key.PublicKey), roots: rootPEM},
		{name: "accepted with the root appended to the chain",
			chain: append(signIntermediate(t, root, rootKey, good(), &key.PublicKey), rootPEM...), roots: rootPEM},
		{name: "another key", chain: signIntermediate(t, root, rootKey, good(), &otherKey.PublicKey), roots: rootPEM,
			wantErr: "not for this CA's key"},
		{name: "constraint dropped by the issuer", chain: signIntermediate(t, root, rootKey, func() *x509.Certificate {
			c := good()
			c.PermittedURIDomains = nil
			return c
		}(), &key.PublicKey), roots: rootPEM, wantErr: "name constraints"},
		{name: "constraint widened", chain: signIntermediate(t, root, rootKey, func() *x509.Certificate {
			c := good()
			c.PermittedURIDomains = []string{"alpha.default.mesh", "beta.default.mesh"}
			return c
		}(), &key.PublicKey), roots: rootPEM, wantErr: "name constraints"},
		{name: "for another trust domain", chain: signIntermediate(t, root, rootKey,
			caTemplate(tdB, big.NewInt(9), t0.Add(-time.Minute), t0.Add(time.Hour)), &key.PublicKey), roots: rootPEM,
			wantErr: "name constraints"},
		{name: "not a CA", chain: signIntermediate(t, root, rootKey, func() *x509.Certificate {
			c := good()
			c.IsCA, c.KeyUsage, c.PermittedURIDomains = false, x509.KeyUsageDigitalSignature, nil
			return c
		}(), &key.PublicKey), roots: rootPEM, wantErr: "not a CA"},
		{name: "does not chain to the roots", chain: signIntermediate(t, otherRoot, otherRootKey, good(), &key.PublicKey), roots: rootPEM,
			wantErr: "does not chain"},
		{name: "expired", chain: signIntermediate(t, root, rootKey, func() *x509.Certificate {
			c := good()
			c.NotBefore, c.NotAfter = t0.Add(-48*time.Hour), t0.Add(-24*time.Hour)
			return c
		}(), &key.PublicKey), roots: rootPEM, wantErr: "does not chain"},
		{name: "no roots", chain: signIntermediate(t, root, rootKey, good(), &key.PublicKey), roots: nil, wantErr: "roots"},
		{name: "garbage", chain: []byte("not PEM"), roots: rootPEM, wantErr: "no PEM certificate"},
		{name: "only the root", chain: rootPEM, roots: rootPEM, wantErr: "only roots"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := NewIntermediate(tdA, key, tc.chain, tc.roots, t0)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ca.Intermediates(); len(got) != 1 || !got[0].Equal(ca.Certificate()) {
				t.Errorf("intermediates %d, want the intermediate only", len(got))
			}
			if r := ca.Roots(); len(r) != 1 || !r[0].Equal(root) {
				t.Error("roots should be the issuer root")
			}
		})
	}
}

func TestLoadCARoundTripAndTamper(t *testing.T) {
	ca := mustSelfSigned(t, tdA, time.Hour)
	chain, key, roots, err := ca.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadCA(tdA, chain, key, roots, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Certificate().Equal(ca.Certificate()) || !got.key.Equal(ca.key) {
		t.Fatal("round trip changed the CA")
	}
	other := mustSelfSigned(t, tdA, time.Hour)
	_, otherKey, _, _ := other.MarshalPEM()
	if _, err := LoadCA(tdA, chain, otherKey, roots, t0); err == nil {
		t.Error("a key swapped in the Secret was accepted")
	}
	if _, err := LoadCA(tdB, chain, key, roots, t0); err == nil {
		t.Error("a CA loaded for another trust domain was accepted")
	}
	if _, err := LoadCA(tdA, chain, key, roots, t0.Add(2*time.Hour)); err == nil {
		t.Error("an expired CA was accepted")
	}
	if _, err := LoadCA(tdA, chain, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), roots, t0); err == nil {
		t.Error("a corrupt key was accepted")
	}
}

// TestCheckIntermediate signs the member's CSR as an issuer would, once faithfully and once
// without the name constraint, and checks the operator's checks tell them apart.
func TestCheckIntermediate(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("member-1.fleet.mesh")
	// A platform team's root: no name constraints of its own.
	rootKey, _ := NewKey()
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	key, _ := NewKey()
	csrPEM, err := IntermediateCSR(td, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := CheckIntermediateCSR(td, csrPEM)
	if err != nil {
		t.Fatalf("the agent's own CSR is refused: %v", err)
	}
	if _, err := CheckIntermediateCSR(spiffeid.RequireTrustDomainFromString("member-2.fleet.mesh"), csrPEM); err == nil {
		t.Error("a CSR for member-1 passed as member-2's")
	}
	sign := func(constrained bool) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: csr.Subject, URIs: csr.URIs, NotBefore: time.Now().Add(-time.Minute),
			NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		if constrained {
			tmpl.PermittedURIDomains, tmpl.PermittedDNSDomainsCritical = []string{td.Name()}, true
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, rootCert, csr.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	rootsPEM := EncodeCertificatesPEM([]*x509.Certificate{rootCert})
	if err := CheckIntermediate(td, csr, sign(true), rootsPEM, time.Now()); err != nil {
		t.Errorf("a faithful intermediate is refused: %v", err)
	}
	if err := CheckIntermediate(td, csr, sign(false), rootsPEM, time.Now()); err == nil {
		t.Error("an intermediate without the name constraint passed")
	}
	otherKey, _ := NewKey()
	otherCSR, _ := IntermediateCSR(td, otherKey, nil)
	other, _ := CheckIntermediateCSR(td, otherCSR)
	if err := CheckIntermediate(td, other, sign(true), rootsPEM, time.Now()); err == nil {
		t.Error("an intermediate for another key passed")
	}
}
