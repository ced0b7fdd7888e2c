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
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var web = Workload{Namespace: "shop", ServiceAccount: "web"}

func TestSignIssuesExactlyTheWorkloadsID(t *testing.T) {
	ca := mustSelfSigned(t, tdA, 24*time.Hour)
	iss := mustIssuer(t, ca, time.Hour, fixed(t0))
	key := mustKey(t)
	for name, csr := range map[string][]byte{
		"DER, no SANs":                  csrFor(t, key),
		"PEM, no SANs":                  pemCSR(csrFor(t, key)),
		"asks for the same ID":          csrFor(t, key, "spiffe://alpha.default.mesh/ns/shop/sa/web"),
		"asks for another SA":           csrFor(t, key, "spiffe://alpha.default.mesh/ns/kube-system/sa/admin"),
		"asks for another trust domain": csrFor(t, key, "spiffe://beta.default.mesh/ns/shop/sa/web"),
		"asks for two IDs":              csrFor(t, key, "spiffe://alpha.default.mesh/ns/shop/sa/web", "spiffe://alpha.default.mesh/ns/a/sa/b"),
	} {
		t.Run(name, func(t *testing.T) {
			chain, err := iss.Sign(csr, web)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 1 {
				t.Fatalf("chain of %d, want the leaf only (self-signed CA)", len(chain))
			}
			leaf := chain[0]
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://alpha.default.mesh/ns/shop/sa/web" {
				t.Fatalf("URIs %v", leaf.URIs)
			}
			if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature || len(leaf.DNSNames) != 0 || leaf.Subject.CommonName != "" {
				t.Errorf("leaf: IsCA=%v usage=%v DNS=%v CN=%q", leaf.IsCA, leaf.KeyUsage, leaf.DNSNames, leaf.Subject.CommonName)
			}
			if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ext key usage %v", leaf.ExtKeyUsage)
			}
			if !leaf.NotBefore.Equal(t0.Add(-Backdate)) || !leaf.NotAfter.Equal(t0.Add(time.Hour)) {
				t.Errorf("validity %s - %s", leaf.NotBefore, leaf.NotAfter)
			}
			if !key.PublicKey.Equal(leaf.PublicKey) {
				t.Error("leaf is not for the CSR's key")
			}
			// go-spiffe accepts it as an SVID and verifies it against the member's bundle.
			if _, err := x509svid.ParseRaw(leaf.Raw, mustPKCS8(t, key)); err != nil {
				t.Errorf("go-spiffe refuses the SVID: %v", err)
			}
			id, _, err := x509svid.Verify(chain, NewBundle(tdA, ca.Roots(), 1, 0), x509svid.WithTime(t0))
			if err != nil || id.String() != "spiffe://alpha.default.mesh/ns/shop/sa/web" {
				t.Errorf("verify: id %s err %v", id, err)
			}
		})
	}
}

func TestSignRefusals(t *testing.T) {
	ca := mustSelfSigned(t, tdA, 24*time.Hour)
	key := mustKey(t)
	good := csrFor(t, key)
	badSig := slices.Clone(good)
	badSig[len(badSig)-3] ^= 0x55 // inside the signature value
	tests := []struct {
		name   string
		csr    []byte
		strict bool
		w      Workload
		reason CSRRefusal // "" means a non-CSR error
	}{
		{name: "empty", csr: nil, reason: CSRMalformed},
		{name: "garbage", csr: []byte("hello"), reason: CSRMalformed},
		{name: "certificate PEM instead of CSR", csr: EncodeCertificatesPEM([]*x509.Certificate{ca.Certificate()}), reason: CSRMalformed},
		{name: "oversized", csr: make([]byte, MaxCSRSize+1), reason: CSRMalformed},
		{name: "bad signature", csr: badSig, reason: CSRBadSignature},
		{name: "RSA key", csr: csrFor(t, mustRSA(t, 2048)), reason: CSRUnsupportedKey},
		{name: "P-384 key", csr: csrFor(t, mustECDSA(t, elliptic.P384())), reason: CSRUnsupportedKey},
		{name: "foreign ID, strict", csr: csrFor(t, key, "spiffe://alpha.default.mesh/ns/kube-system/sa/admin"), strict: true, reason: CSRForeignID},
		{name: "no namespace", csr: good, w: Workload{ServiceAccount: "web"}},
		{name: "namespace that is not a path segment", csr: good, w: Workload{Namespace: "a/b", ServiceAccount: "web"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss, err := NewIssuer(ca, IssuerOptions{SVIDTTL: time.Hour, Now: fixed(t0), RefuseForeignIDs: tc.strict})
			if err != nil {
				t.Fatal(err)
			}
			w := tc.w
			if w == (Workload{}) {
				w = web
			}
			chain, err := iss.Sign(tc.csr, w)
			if err == nil || chain != nil {
				t.Fatalf("signed %d certificates, err %v; want a refusal", len(chain), err)
			}
			var ce *CSRError
			if tc.reason == "" {
				if errors.As(err, &ce) {
					t.Fatalf("got CSR error %v, want a workload error", err)
				}
				return
			}
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Fatalf("error %v, want CSR refusal %s", err, tc.reason)
			}
		})
	}
	t.Run("strict still signs a CSR naming the workload's own ID", func(t *testing.T) {
		iss, _ := NewIssuer(ca, IssuerOptions{SVIDTTL: time.Hour, Now: fixed(t0), RefuseForeignIDs: true})
		if _, err := iss.Sign(csrFor(t, key, "spiffe://alpha.default.mesh/ns/shop/sa/web"), web); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSignCapsAtCAExpiryAndRefusesAfter(t *testing.T) {
	ca := mustSelfSigned(t, tdA, 2*time.Hour)
	now := t0.Add(90 * time.Minute)
	iss := mustIssuer(t, ca, time.Hour, func() time.Time { return now })
	chain, err := iss.Sign(csrFor(t, mustKey(t)), web)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", chain[0].NotAfter, ca.Certificate().NotAfter)
	}
	now = t0.Add(2 * time.Hour)
	if _, err := iss.Sign(csrFor(t, mustKey(t)), web); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("signing with an expired CA: %v", err)
	}
}

func TestIssuerSetCA(t *testing.T) {
	a1 := mustSelfSigned(t, tdA, time.Hour)
	a2 := mustSelfSigned(t, tdA, time.Hour)
	iss := mustIssuer(t, a1, time.Minute, fixed(t0))
	if err := iss.SetCA(mustSelfSigned(t, tdB, time.Hour)); err == nil {
		t.Error("switched to another trust domain")
	}
	if err := iss.SetCA(a2); err != nil {
		t.Fatal(err)
	}
	chain, err := iss.Sign(csrFor(t, mustKey(t)), web)
	if err != nil {
		t.Fatal(err)
	}
	if err := chain[0].CheckSignatureFrom(a2.Certificate()); err != nil {
		t.Errorf("not signed by the new CA: %v", err)
	}
}

func TestNewSVIDWithIntermediate(t *testing.T) {
	ca := mustIntermediate(t, tdA)
	iss := mustIssuer(t, ca, time.Hour, fixed(t0))
	svid, err := iss.NewSVID(Workload{Namespace: "fleetmesh-system", ServiceAccount: "fleetmesh-agent"})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://alpha.default.mesh/ns/fleetmesh-system/sa/fleetmesh-agent" {
		t.Errorf("ID %s", svid.ID)
	}
	if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(ca.Certificate()) {
		t.Fatalf("chain of %d, want leaf + intermediate", len(svid.Certificates))
	}
	if _, _, err := x509svid.Verify(svid.Certificates, NewBundle(tdA, ca.Roots(), 1, 0), x509svid.WithTime(t0)); err != nil {
		t.Error(err)
	}
}

func mustPKCS8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// mustIntermediate is a CA for td signed by a fresh issuer root from its own CSR.
func mustIntermediate(t *testing.T, td spiffeid.TrustDomain) *CA {
	t.Helper()
	root, rootKey := testIssuerRoot(t, t0)
	key := mustKey(t)
	csrPEM, err := IntermediateCSR(td, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: root.SerialNumber, NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(24 * time.Hour),
		URIs: csr.URIs, ExtraExtensions: csr.Extensions}
	chain := signIntermediate(t, root, rootKey, tmpl, csr.PublicKey)
	ca, err := NewIntermediate(td, key, chain, EncodeCertificatesPEM([]*x509.Certificate{root}), t0)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestWorkloadFromUsername(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Workload
		ok   bool
	}{
		{"system:serviceaccount:shop:web", Workload{Namespace: "shop", ServiceAccount: "web"}, true},
		{"system:serviceaccount:kube-system:default", Workload{Namespace: "kube-system", ServiceAccount: "default"}, true},
		{"system:serviceaccount:shop:web.v2", Workload{Namespace: "shop", ServiceAccount: "web.v2"}, true},
		{"alice", Workload{}, false},
		{"system:node:n1", Workload{}, false},
		{"system:serviceaccount:shop", Workload{}, false},
		{"system:serviceaccount:shop:web:extra", Workload{}, false},
		{"system:serviceaccount::web", Workload{}, false},
		{"system:serviceaccount:shop:", Workload{}, false},
		{"system:serviceaccount:Shop:web", Workload{}, false},
		{"system:serviceaccount:shop:../x", Workload{}, false},
		{"system:serviceaccounts:shop:web", Workload{}, false},
	} {
		got, err := WorkloadFromUsername(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: got %+v, %v", tc.in, got, err)
		}
	}
}

// FuzzWorkloadFromUsername: the user name comes from the API server, but it is the only
// part of a token the project parses; whatever it accepts must be a valid SPIFFE path.
func FuzzWorkloadFromUsername(f *testing.F) {
	f.Add("system:serviceaccount:shop:web")
	f.Add("system:serviceaccount:a:b:c")
	f.Add("system:serviceaccount:%2e%2e:web")
	f.Fuzz(func(t *testing.T, username string) {
		w, err := WorkloadFromUsername(username)
		if err != nil {
			return
		}
		if _, err := w.ID(tdA); err != nil {
			t.Fatalf("accepted %q but its ID is invalid: %v", username, err)
		}
	})
}
