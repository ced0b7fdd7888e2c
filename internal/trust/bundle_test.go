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
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestNewBundleFingerprintExpiry(t *testing.T) {
	old := mustSelfSigned(t, tdA, 10*time.Hour)
	next := mustSelfSigned(t, tdA, 20*time.Hour)
	b := NewBundle(tdA, append(old.Roots(), next.Roots()...), 7, 5*time.Minute)
	if seq, ok := b.SequenceNumber(); !ok || seq != 7 {
		t.Errorf("sequence %d %v", seq, ok)
	}
	if h, ok := b.RefreshHint(); !ok || h != 5*time.Minute {
		t.Errorf("refresh hint %s %v", h, ok)
	}
	reversed := NewBundle(tdA, append(next.Roots(), old.Roots()...), 7, 5*time.Minute)
	if Fingerprint(b) != Fingerprint(reversed) {
		t.Error("fingerprint depends on root order")
	}
	if len(Fingerprint(b)) != 64 {
		t.Errorf("fingerprint %q is not hex SHA-256", Fingerprint(b))
	}
	if Fingerprint(b) == Fingerprint(NewBundle(tdA, old.Roots(), 7, 0)) {
		t.Error("fingerprint ignores a root")
	}
	if exp, ok := EarliestExpiry(b); !ok || !exp.Equal(old.Certificate().NotAfter) {
		t.Errorf("earliest expiry %s, want %s", exp, old.Certificate().NotAfter)
	}
	if _, ok := EarliestExpiry(spiffebundle.New(tdA)); ok {
		t.Error("an empty bundle has no expiry")
	}
	// Duplicates collapse: the same root published twice is one authority.
	if n := len(NewBundle(tdA, append(old.Roots(), old.Roots()...), 1, 0).X509Authorities()); n != 1 {
		t.Errorf("%d authorities, want 1", n)
	}
}

func TestMarshalBundleIsCanonicalAndRoundTrips(t *testing.T) {
	r1 := mustSelfSigned(t, tdA, time.Hour).Roots()[0]
	r2 := mustSelfSigned(t, tdA, time.Hour).Roots()[0]
	a, err := MarshalBundle(NewBundle(tdA, []*x509.Certificate{r1, r2}, 3, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalBundle(NewBundle(tdA, []*x509.Certificate{r2, r1}, 3, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same bundle marshals to different bytes")
	}
	var doc map[string]any
	if err := json.Unmarshal(a, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["spiffe_sequence"] != 3.0 || doc["spiffe_refresh_hint"] != 60.0 || len(doc["keys"].([]any)) != 2 {
		t.Errorf("document %s", a)
	}
	if k := doc["keys"].([]any)[0].(map[string]any); k["use"] != "x509-svid" || k["kty"] != "EC" || k["crv"] != "P-256" {
		t.Errorf("key %v", k)
	}
	back, err := ParseBundle(tdA, a)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(back) != Fingerprint(NewBundle(tdA, []*x509.Certificate{r1, r2}, 0, 0)) {
		t.Error("round trip changed the roots")
	}
	if _, err := MarshalBundle(spiffebundle.New(tdA)); err == nil {
		t.Error("marshalled a bundle without X.509 authorities")
	}
}

func TestParseBundleRefusals(t *testing.T) {
	root := mustSelfSigned(t, tdA, time.Hour).Roots()[0]
	good, err := MarshalBundle(NewBundle(tdA, []*x509.Certificate{root}, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	withHint := func(h string) []byte {
		return bytes.Replace(good, []byte(`"spiffe_sequence":1`), []byte(`"spiffe_sequence":1,"spiffe_refresh_hint":`+h), 1)
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"not JSON":           {[]byte("{"), "unexpected end"},
		"no keys":            {[]byte(`{"spiffe_sequence":1}`), "no authorities"},
		"only a JWT key":     {[]byte(`{"keys":[{"use":"jwt-svid","kty":"EC","kid":"k","crv":"P-256","x":"` + ecX + `","y":"` + ecY + `"}]}`), "no X.509 authorities"},
		"negative hint":      {withHint("-1"), "out of range"},
		"hint overflows":     {withHint("9223372036854775807"), "out of range"},
		"oversized":          {append(good, bytes.Repeat([]byte(" "), MaxBundleDocumentSize)...), "exceeds"},
		"two certs in a key": {[]byte(strings.Replace(string(good), `"x5c":[`, `"x5c":["AAAA",`, 1)), "x5c"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseBundle(tdA, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := ParseBundle(tdA, withHint("300")); err != nil {
		t.Errorf("a valid hint was refused: %v", err)
	}
}

// A P-256 public point (the generator), for a JWT authority that parses.
const (
	ecX = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY"
	ecY = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"
)

func federatedSet(t *testing.T) (*BundleSet, *CA, *CA) {
	t.Helper()
	a := mustSelfSigned(t, tdA, time.Hour)
	b := mustSelfSigned(t, tdB, time.Hour)
	return NewBundleSet(NewBundle(tdA, a.Roots(), 1, time.Minute), NewBundle(tdB, b.Roots(), 4, time.Minute)), a, b
}

func TestBundleSetBundleMap(t *testing.T) {
	set, caA, _ := federatedSet(t)
	m, err := set.MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	var shape struct {
		TrustDomains map[string]json.RawMessage `json:"trust_domains"`
	}
	if err := json.Unmarshal(m, &shape); err != nil || len(shape.TrustDomains) != 2 {
		t.Fatalf("bundle map %s: %v", m, err)
	}
	if !strings.HasPrefix(string(m), `{"trust_domains":{"alpha.default.mesh":{"keys":[`) {
		t.Errorf("unexpected layout: %.80s", m)
	}
	// Each entry is a SPIFFE bundle go-spiffe parses on its own (what gRPC does with it).
	if _, err := spiffebundle.Parse(tdB, shape.TrustDomains["beta.default.mesh"]); err != nil {
		t.Error(err)
	}
	back, err := ParseBundleMap(m)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(set) {
		t.Error("bundle map round trip changed the set")
	}
	again, _ := back.MarshalBundleMap()
	if !bytes.Equal(m, again) {
		t.Error("bundle map is not deterministic")
	}
	// The set is a bundle source for go-spiffe verification.
	iss := mustIssuer(t, caA, time.Minute, fixed(t0))
	chain, err := iss.Sign(csrFor(t, mustKey(t)), web)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(chain, back, x509svid.WithTime(t0)); err != nil {
		t.Error(err)
	}
	back.Remove(tdA)
	if _, _, err := x509svid.Verify(chain, back, x509svid.WithTime(t0)); err == nil {
		t.Error("verified against a set without the trust domain")
	}
	if got := back.TrustDomains(); len(got) != 1 || got[0] != tdB {
		t.Errorf("trust domains %v", got)
	}
}

func TestBundleSetDocuments(t *testing.T) {
	set, _, _ := federatedSet(t)
	docs, err := set.MarshalDocuments()
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs["alpha.default.mesh"] == nil || docs["beta.default.mesh"] == nil {
		t.Fatalf("documents %v", docs)
	}
	back, err := ParseDocuments(docs)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(set) {
		t.Error("documents round trip changed the set")
	}
}

func TestParseBundleMapRefusals(t *testing.T) {
	set, _, _ := federatedSet(t)
	docs, _ := set.MarshalDocuments()
	doc := string(docs["alpha.default.mesh"])
	for name, tc := range map[string]struct {
		data string
		want string
	}{
		"not JSON":            {`[`, "unexpected end"},
		"no trust_domains":    {`{}`, "trust_domains"},
		"SPIFFE ID as key":    {`{"trust_domains":{"spiffe://alpha.default.mesh":` + doc + `}}`, "canonical"},
		"upper-case key":      {`{"trust_domains":{"Alpha.default.mesh":` + doc + `}}`, "trust domain"},
		"empty key":           {`{"trust_domains":{"":` + doc + `}}`, "trust domain"},
		"bad bundle":          {`{"trust_domains":{"alpha.default.mesh":{"keys":[]}}}`, "no X.509 authorities"},
		"bundle not a object": {`{"trust_domains":{"alpha.default.mesh":1}}`, "parse bundle"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseBundleMap([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if s, err := ParseBundleMap([]byte(`{"trust_domains":{}}`)); err != nil || s.Len() != 0 {
		t.Errorf("an empty map: %v", err)
	}
}

func TestParseRoots(t *testing.T) {
	ca := mustSelfSigned(t, tdA, time.Hour)
	doc, err := MarshalBundle(NewBundle(tdA, ca.Roots(), 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewBundleSet(NewBundle(tdA, ca.Roots(), 1, 0)).MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"PEM":             EncodeCertificatesPEM(ca.Roots()),
		"SPIFFE bundle":   doc,
		"bundle map":      m,
		"with whitespace": append(append([]byte("\n  "), m...), '\n'),
	} {
		b, err := ParseRoots(tdA, data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := b.X509Authorities(); len(got) != 1 || !got[0].Equal(ca.Certificate()) {
			t.Errorf("%s: authorities %d", name, len(got))
		}
	}
	for name, data := range map[string]string{"empty": "", "junk JSON": "{", "JSON without keys": `{"a":1}`} {
		if _, err := ParseRoots(tdA, []byte(data)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	other, err := NewBundleSet(NewBundle(tdB, ca.Roots(), 1, 0)).MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRoots(tdA, other); err == nil || !strings.Contains(err.Error(), "no bundle for "+tdA.String()) {
		t.Errorf("a bundle map without td: %v", err)
	}
}
