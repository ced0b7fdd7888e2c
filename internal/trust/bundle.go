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
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxBundleDocumentSize bounds every bundle document and bundle map this package parses; a
// ConfigMap cannot hold more anyway.
const MaxBundleDocumentSize = 1 << 20

// NewBundle is a member's SPIFFE bundle: the roots of its published CAs (deduplicated), with
// the sequence number that orders its versions and the refresh hint for bundle-endpoint
// clients.
func NewBundle(td spiffeid.TrustDomain, roots []*x509.Certificate, sequence uint64, refreshHint time.Duration) *spiffebundle.Bundle {
	b := spiffebundle.New(td)
	for _, r := range roots {
		b.AddX509Authority(r)
	}
	b.SetSequenceNumber(sequence)
	if refreshHint > 0 {
		b.SetRefreshHint(refreshHint)
	}
	return b
}

// Fingerprint identifies a bundle's X.509 roots, whatever their order: the hex SHA-256 of the
// roots' DER encodings, sorted and concatenated (DER is self-delimiting). Status shows it.
func Fingerprint(b *spiffebundle.Bundle) string {
	ders := make([][]byte, 0)
	for _, c := range b.X509Authorities() {
		ders = append(ders, c.Raw)
	}
	slices.SortFunc(ders, bytes.Compare)
	h := sha256.New()
	for _, d := range ders {
		h.Write(d)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// EarliestExpiry is when the first of the bundle's X.509 roots expires; false if it has none.
func EarliestExpiry(b *spiffebundle.Bundle) (time.Time, bool) {
	var out time.Time
	for _, c := range b.X509Authorities() {
		if out.IsZero() || c.NotAfter.Before(out) {
			out = c.NotAfter
		}
	}
	return out, !out.IsZero()
}

// canonicalDoc is the top level of a SPIFFE bundle document, with its keys left as raw JSON:
// go-spiffe encodes and decodes the keys; this only fixes their order.
type canonicalDoc struct {
	Keys        []json.RawMessage `json:"keys"`
	Sequence    *uint64           `json:"spiffe_sequence,omitempty"`
	RefreshHint *int64            `json:"spiffe_refresh_hint,omitempty"`
}

// MarshalBundle encodes b as a SPIFFE bundle document (go-spiffe's encoding) with its keys in a
// canonical order, so the same bundle always gives the same bytes and an unchanged bundle never
// looks changed to a diff loop.
func MarshalBundle(b *spiffebundle.Bundle) ([]byte, error) {
	if len(b.X509Authorities()) == 0 {
		return nil, fmt.Errorf("bundle for %s has no X.509 authorities", b.TrustDomain())
	}
	raw, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal bundle for %s: %w", b.TrustDomain(), err)
	}
	var doc canonicalDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("marshal bundle for %s: %w", b.TrustDomain(), err)
	}
	slices.SortFunc(doc.Keys, func(a, b json.RawMessage) int { return bytes.Compare(a, b) })
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshal bundle for %s: %w", b.TrustDomain(), err)
	}
	return out, nil
}

// ParseBundle reads one SPIFFE bundle document for td (go-spiffe's parser), refusing what
// fleetmesh cannot use: an oversized document, a bundle without X.509 authorities, or a refresh
// hint that is negative or too large to be a duration.
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	if td.IsZero() {
		return nil, errors.New("parse bundle: trust domain is required")
	}
	if len(data) > MaxBundleDocumentSize {
		return nil, fmt.Errorf("parse bundle for %s: %d bytes exceeds %d", td, len(data), MaxBundleDocumentSize)
	}
	var hint struct {
		RefreshHint *int64 `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(data, &hint); err != nil {
		return nil, fmt.Errorf("parse bundle for %s: %w", td, err)
	}
	if h := hint.RefreshHint; h != nil && (*h < 0 || *h > math.MaxInt64/int64(time.Second)) {
		return nil, fmt.Errorf("parse bundle for %s: refresh hint %d s is out of range", td, *h)
	}
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("parse bundle for %s: %w", td, err)
	}
	if len(b.X509Authorities()) == 0 {
		return nil, fmt.Errorf("parse bundle for %s: no X.509 authorities", td)
	}
	return b, nil
}

// BundleSet is the federated set: one bundle per trust domain. It is an x509bundle.Source and
// a spiffebundle.Source, so go-spiffe's tlsconfig and x509svid take it directly. Safe for
// concurrent reads; build a new set rather than mutating one in use.
type BundleSet struct {
	set *spiffebundle.Set
}

var (
	_ x509bundle.Source   = (*BundleSet)(nil)
	_ spiffebundle.Source = (*BundleSet)(nil)
)

// NewBundleSet returns a set of bundles; a later bundle replaces an earlier one of the same
// trust domain.
func NewBundleSet(bundles ...*spiffebundle.Bundle) *BundleSet {
	return &BundleSet{set: spiffebundle.NewSet(bundles...)}
}

// Put adds b, replacing the bundle of its trust domain.
func (s *BundleSet) Put(b *spiffebundle.Bundle) { s.set.Add(b) }

// Remove drops td's bundle (a member that left).
func (s *BundleSet) Remove(td spiffeid.TrustDomain) { s.set.Remove(td) }

// Get returns td's bundle.
func (s *BundleSet) Get(td spiffeid.TrustDomain) (*spiffebundle.Bundle, bool) { return s.set.Get(td) }

// Len is the number of trust domains.
func (s *BundleSet) Len() int { return s.set.Len() }

// Bundles returns the bundles sorted by trust domain.
func (s *BundleSet) Bundles() []*spiffebundle.Bundle { return s.set.Bundles() }

// TrustDomains returns the trust domains, sorted.
func (s *BundleSet) TrustDomains() []spiffeid.TrustDomain {
	var out []spiffeid.TrustDomain
	for _, b := range s.set.Bundles() {
		out = append(out, b.TrustDomain())
	}
	return out
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *BundleSet) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.set.GetX509BundleForTrustDomain(td)
}

// GetBundleForTrustDomain implements spiffebundle.Source.
func (s *BundleSet) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	return s.set.GetBundleForTrustDomain(td)
}

// Equal reports whether both sets hold equal bundles for the same trust domains.
func (s *BundleSet) Equal(o *BundleSet) bool {
	a, b := s.Bundles(), o.Bundles()
	return slices.EqualFunc(a, b, func(x, y *spiffebundle.Bundle) bool { return x.Equal(y) })
}

// bundleMap is gRPC's SPIFFE bundle map file (spiffe_trust_bundle_map_file, gRFC A87).
type bundleMap struct {
	TrustDomains map[string]json.RawMessage `json:"trust_domains"`
}

// MarshalBundleMap encodes the set as gRPC's bundle map file,
// {"trust_domains": {"<td>": <SPIFFE bundle>}}, byte-for-byte deterministic.
func (s *BundleSet) MarshalBundleMap() ([]byte, error) {
	docs, err := s.MarshalDocuments()
	if err != nil {
		return nil, err
	}
	m := bundleMap{TrustDomains: map[string]json.RawMessage{}}
	for td, d := range docs {
		m.TrustDomains[td] = d
	}
	return json.Marshal(m) // encoding/json sorts map keys
}

// ParseBundleMap reads a bundle map file. Each key must be a trust domain name exactly as
// written in canonical form (not a SPIFFE ID, which go-spiffe would also accept), so two keys
// can never name the same trust domain.
func ParseBundleMap(data []byte) (*BundleSet, error) {
	if len(data) > MaxBundleDocumentSize {
		return nil, fmt.Errorf("parse bundle map: %d bytes exceeds %d", len(data), MaxBundleDocumentSize)
	}
	var m bundleMap
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse bundle map: %w", err)
	}
	if m.TrustDomains == nil {
		return nil, errors.New(`parse bundle map: no "trust_domains" object`)
	}
	docs := make(map[string][]byte, len(m.TrustDomains))
	for td, raw := range m.TrustDomains {
		docs[td] = raw
	}
	s, err := ParseDocuments(docs)
	if err != nil {
		return nil, fmt.Errorf("parse bundle map: %w", err)
	}
	return s, nil
}

// MarshalDocuments encodes the set as one SPIFFE bundle document per trust domain, keyed by
// trust domain name (valid ConfigMap keys: trust domains are [a-z0-9._-]).
func (s *BundleSet) MarshalDocuments() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, b := range s.Bundles() {
		d, err := MarshalBundle(b)
		if err != nil {
			return nil, err
		}
		out[b.TrustDomain().Name()] = d
	}
	return out, nil
}

// ParseDocuments reads one SPIFFE bundle document per trust domain name.
func ParseDocuments(docs map[string][]byte) (*BundleSet, error) {
	s := NewBundleSet()
	for name, d := range docs {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("trust domain %q: %w", name, err)
		}
		if td.Name() != name {
			return nil, fmt.Errorf("trust domain %q is not in canonical form %q", name, td.Name())
		}
		b, err := ParseBundle(td, d)
		if err != nil {
			return nil, err
		}
		s.Put(b)
	}
	return s, nil
}

// ParseRoots reads a trust domain's roots from what a trust file holds: PEM certificates, a
// SPIFFE bundle document, or a bundle map that has td.
func ParseRoots(td spiffeid.TrustDomain, data []byte) (*x509bundle.Bundle, error) {
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("{")) {
		certs, err := ParseCertificatesPEM(trimmed)
		if err != nil {
			return nil, err
		}
		return x509bundle.FromX509Authorities(td, certs), nil
	}
	var probe struct {
		TrustDomains json.RawMessage `json:"trust_domains"`
	}
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return nil, err
	}
	if probe.TrustDomains == nil {
		b, err := ParseBundle(td, trimmed)
		if err != nil {
			return nil, err
		}
		return b.X509Bundle(), nil
	}
	set, err := ParseBundleMap(trimmed)
	if err != nil {
		return nil, err
	}
	b, ok := set.Get(td)
	if !ok {
		return nil, fmt.Errorf("the bundle map has no bundle for %s", td)
	}
	return b.X509Bundle(), nil
}
