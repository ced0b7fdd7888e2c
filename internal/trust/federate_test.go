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
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func testBundle(t *testing.T, name string) *spiffebundle.Bundle {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(name)
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := SelfSign(td, key, time.Now(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return NewBundle(td, ca.Roots(), 1, time.Minute)
}

func TestFederatedFor(t *testing.T) {
	a, b, c, ext := testBundle(t, "a.mesh"), testBundle(t, "b.mesh"), testBundle(t, "c.mesh"), testBundle(t, "spire.example.org")
	staleC := testBundle(t, "c.mesh")
	gone := testBundle(t, "gone.mesh")
	members := []MemberBundle{
		{Member: "ns/a", TrustDomain: a.TrustDomain(), Bundle: a},
		{Member: "ns/b", TrustDomain: b.TrustDomain(), Bundle: b},
		{Member: "ns/c", TrustDomain: c.TrustDomain()}, // unreachable, unknown
	}

	t.Run("unknown member keeps what the target has, a member that left is dropped", func(t *testing.T) {
		current := NewBundleSet(b, staleC, gone)
		got, missing := FederatedFor(a.TrustDomain(), members, []*spiffebundle.Bundle{ext}, current)
		if len(missing) != 0 {
			t.Fatalf("missing = %v, want none", missing)
		}
		want := NewBundleSet(b, staleC, ext)
		if !got.Equal(want) {
			t.Fatalf("got %v, want %v", got.TrustDomains(), want.TrustDomains())
		}
	})
	t.Run("unknown everywhere is reported missing, never the member's own domain", func(t *testing.T) {
		got, missing := FederatedFor(b.TrustDomain(), members, nil, nil)
		if !slices.Equal(missing, []string{"ns/c"}) {
			t.Fatalf("missing = %v, want [ns/c]", missing)
		}
		if _, ok := got.Get(b.TrustDomain()); ok {
			t.Fatal("a member's own trust domain must not be in its federated set")
		}
		if !got.Equal(NewBundleSet(a)) {
			t.Fatalf("got %v, want only a.mesh", got.TrustDomains())
		}
	})
	t.Run("an external bundle claiming a member's own domain is not given to it", func(t *testing.T) {
		got, _ := FederatedFor(a.TrustDomain(), members[:2], []*spiffebundle.Bundle{testBundle(t, "a.mesh")}, nil)
		if !got.Equal(NewBundleSet(b)) {
			t.Fatalf("got %v, want only b.mesh", got.TrustDomains())
		}
	})
}

func TestHeldSequence(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("a.mesh")
	at := func(seq uint64) *spiffebundle.Bundle {
		b := testBundle(t, td.Name())
		b.SetSequenceNumber(seq)
		return b
	}
	other := testBundle(t, "b.mesh")
	for name, tc := range map[string]struct {
		held []*BundleSet
		want uint64
	}{
		"no other members":         {nil, 7},
		"every member has 7":       {[]*BundleSet{NewBundleSet(at(7)), NewBundleSet(at(7), other)}, 7},
		"one member still holds 6": {[]*BundleSet{NewBundleSet(at(7)), NewBundleSet(at(6))}, 6},
		"one member's set unknown": {[]*BundleSet{NewBundleSet(at(7)), nil}, 0},
		"one member lacks a.mesh":  {[]*BundleSet{NewBundleSet(at(7)), NewBundleSet(other)}, 0},
	} {
		if got := HeldSequence(td, 7, tc.held); got != tc.want {
			t.Errorf("%s: HeldSequence = %d, want %d", name, got, tc.want)
		}
	}
}
