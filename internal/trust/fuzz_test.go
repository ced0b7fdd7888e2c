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
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The parsers below read what crosses a trust boundary: bundle documents and maps written by
// other members or fetched from outside trust domains, CSRs sent by any pod, certificates
// returned by an issuer. They must never panic, and what they accept must round-trip.

func FuzzParseBundle(f *testing.F) {
	root := mustSelfSigned(f, tdA, time.Hour).Roots()[0]
	good, err := MarshalBundle(NewBundle(tdA, []*x509.Certificate{root}, 3, time.Minute))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"keys":[{"use":"jwt-svid","kty":"EC","kid":"k","crv":"P-256","x":"` + ecX + `","y":"` + ecY + `"}]}`))
	f.Add([]byte(`{"keys":[],"spiffe_refresh_hint":-5}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(tdA, data)
		if err != nil {
			return
		}
		out, err := MarshalBundle(b)
		if err != nil {
			t.Fatalf("accepted bundle does not marshal: %v", err)
		}
		again, err := ParseBundle(tdA, out)
		if err != nil {
			t.Fatalf("marshalled bundle does not parse: %v\n%s", err, out)
		}
		if Fingerprint(again) != Fingerprint(b) {
			t.Fatal("round trip changed the roots")
		}
		out2, err := MarshalBundle(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("marshalling is not stable: %v", err)
		}
	})
}

func FuzzParseBundleSet(f *testing.F) {
	a := mustSelfSigned(f, tdA, time.Hour)
	b := mustSelfSigned(f, tdB, time.Hour)
	good, err := NewBundleSet(NewBundle(tdA, a.Roots(), 1, time.Minute), NewBundle(tdB, b.Roots(), 2, 0)).MarshalBundleMap()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"trust_domains":{}}`))
	f.Add([]byte(`{"trust_domains":{"spiffe://x":{"keys":[]}}}`))
	f.Add([]byte(`{"trust_domains":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseBundleMap(data)
		if err != nil {
			return
		}
		out, err := s.MarshalBundleMap()
		if err != nil {
			t.Fatalf("accepted set does not marshal: %v", err)
		}
		again, err := ParseBundleMap(out)
		if err != nil {
			t.Fatalf("marshalled set does not parse: %v", err)
		}
		out2, err := again.MarshalBundleMap()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("marshalling is not stable: %v", err)
		}
		docs, err := again.MarshalDocuments()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseDocuments(docs); err != nil {
			t.Fatalf("documents do not parse: %v", err)
		}
	})
}

func FuzzSignCSR(f *testing.F) {
	ca := mustSelfSigned(f, tdA, 24*time.Hour)
	iss := mustIssuer(f, ca, time.Hour, fixed(t0))
	key := mustKey(f)
	f.Add(csrFor(f, key), "shop", "web")
	f.Add(pemCSR(csrFor(f, key, "spiffe://beta.default.mesh/ns/x/sa/y")), "shop", "web")
	f.Add(csrFor(f, mustRSA(f, 1024)), "shop", "web")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"), "a", "b")
	f.Fuzz(func(t *testing.T, csr []byte, ns, sa string) {
		w := Workload{Namespace: ns, ServiceAccount: sa}
		chain, err := iss.Sign(csr, w)
		if err != nil {
			return
		}
		want, err := w.ID(tdA)
		if err != nil {
			t.Fatalf("signed for an invalid workload %q/%q", ns, sa)
		}
		if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != want.String() {
			t.Fatalf("signed %v, want exactly %s", chain[0].URIs, want)
		}
		req, err := ParseCSR(csr)
		if err != nil {
			t.Fatalf("signed a CSR ParseCSR refuses: %v", err)
		}
		if !req.PublicKey.(*ecdsa.PublicKey).Equal(chain[0].PublicKey) {
			t.Fatal("signed another key than the CSR's")
		}
	})
}

func FuzzParseCertificatesPEM(f *testing.F) {
	ca := mustSelfSigned(f, tdA, time.Hour)
	chain, _, roots, err := ca.MarshalPEM()
	if err != nil {
		f.Fatal(err)
	}
	key := mustKey(f)
	f.Add(chain, roots)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), roots)
	f.Fuzz(func(t *testing.T, chainPEM, rootsPEM []byte) {
		_, _ = ParseCertificatesPEM(chainPEM)
		_, _ = NewIntermediate(spiffeid.RequireTrustDomainFromString("alpha.default.mesh"), key, chainPEM, rootsPEM, t0)
	})
}

// FuzzParseRoots: trust files are mounted from ConfigMaps; any content must be handled.
func FuzzParseRoots(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte(`{"trust_domains":{"alpha.default.mesh":{"keys":[]}}}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseRoots(tdA, data)
	})
}
