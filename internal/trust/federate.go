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
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MemberBundle is what the operator knows of one member's bundle.
type MemberBundle struct {
	// Member names the member in messages (its MeshCluster).
	Member      string
	TrustDomain spiffeid.TrustDomain
	// Bundle is nil when unknown: not published yet, or the member has been unreachable since
	// the operator started.
	Bundle *spiffebundle.Bundle
}

// FederatedFor is the set a member with trust domain self must hold: every other member's
// bundle plus the external ones. A member whose bundle is unknown keeps the entry current (what
// the member holds now) has for it, so an unreachable member is never cut off from the fleet by
// an operator restart; missing lists the members for which there is nothing at all. A trust
// domain that belongs to no member any more (it left) is not carried over.
func FederatedFor(self spiffeid.TrustDomain, members []MemberBundle, external []*spiffebundle.Bundle, current *BundleSet) (set *BundleSet, missing []string) {
	set = NewBundleSet()
	for _, b := range external {
		if b.TrustDomain() != self {
			set.Put(b)
		}
	}
	for _, m := range members {
		if m.TrustDomain == self {
			continue
		}
		b := m.Bundle
		if b == nil && current != nil {
			b, _ = current.Get(m.TrustDomain)
		}
		if b == nil {
			missing = append(missing, m.Member)
			continue
		}
		set.Put(b)
	}
	slices.Sort(missing)
	return set, missing
}

// HeldSequence is the lowest sequence number of td's bundle among the sets other members hold
// (the ones their agents confirmed loading): once it reaches a rotation's sequence, every member
// trusts the new root. A member whose set is unknown (nil), or that holds no bundle for td,
// counts as 0. With no other members, own is returned: nobody else needs to learn it.
func HeldSequence(td spiffeid.TrustDomain, own uint64, held []*BundleSet) uint64 {
	seen := own
	for _, set := range held {
		var s uint64
		if set != nil {
			if b, ok := set.Get(td); ok {
				s, _ = b.SequenceNumber()
			}
		}
		seen = min(seen, s)
	}
	return seen
}
