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
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// fetchNow runs FetchDue at now and waits for the fetches it starts (their done calls).
func fetchNow(t *testing.T, e *External, now time.Time, want int) {
	t.Helper()
	done := make(chan string, 8)
	e.FetchDue(context.Background(), now, func(installation string) { done <- installation })
	for range want {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a due fetch did not finish")
		}
	}
}

// TestExternalRefresh: the bootstrap bundle is served until the first fetch, fetched bundles
// replace it at their refresh hint, and a failing endpoint keeps the last good one.
func TestExternalRefresh(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("spire.example.org")
	boot, fresh := testBundle(t, td.Name()), testBundle(t, td.Name())
	fresh.SetRefreshHint(30 * time.Second)
	var (
		mu    sync.Mutex
		serve error
		calls int
	)
	e := &External{Fetch: func(_ context.Context, got spiffeid.TrustDomain, _ string, _ ...federation.FetchOption) (*spiffebundle.Bundle, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if got != td {
			t.Errorf("fetched %s", got)
		}
		return fresh, serve
	}}
	ep := Endpoint{TrustDomain: td, URL: "https://spire.example.org:8443", SPIFFEAuth: true,
		EndpointID: spiffeid.RequireFromPath(td, "/spire/server"), Bootstrap: boot}
	now := time.Now()
	snapshot := func() ExternalState {
		st := e.Snapshot("mesh", []Endpoint{ep})
		if len(st) != 1 {
			t.Fatalf("states %+v", st)
		}
		return st[0]
	}

	if st := snapshot(); !st.Bundle.Equal(boot) || st.Err != nil {
		t.Fatalf("before any fetch: %+v, want the bootstrap bundle", st)
	}
	serve = errors.New("connection refused")
	fetchNow(t, e, now, 1)
	if st := snapshot(); !st.Bundle.Equal(boot) || st.Err == nil {
		t.Fatalf("endpoint down at first: %+v, want the bootstrap bundle and the error", st)
	}
	fetchNow(t, e, now.Add(time.Second), 0)
	if calls != 1 {
		t.Fatalf("fetched again before the retry was due (%d calls)", calls)
	}

	mu.Lock()
	serve = nil
	mu.Unlock()
	fetchNow(t, e, now.Add(ExternalRetry), 1)
	if st := snapshot(); !st.Bundle.Equal(fresh) || st.Err != nil || st.LastFetched.IsZero() {
		t.Fatalf("endpoint up: %+v, want the fetched bundle", st)
	}
	fetchNow(t, e, now.Add(ExternalRetry+29*time.Second), 0) // refreshed at its hint, not before
	mu.Lock()
	serve = errors.New("bad certificate")
	mu.Unlock()
	fetchNow(t, e, now.Add(ExternalRetry+30*time.Second), 1)
	if st := snapshot(); !st.Bundle.Equal(fresh) || st.Err == nil || calls != 3 {
		t.Fatalf("endpoint failing later: %+v (%d calls), want the last good bundle kept and the error", st, calls)
	}

	if st := e.Snapshot("mesh", nil); len(st) != 0 {
		t.Fatalf("no endpoints: %+v", st)
	}
	if len(e.state) != 0 {
		t.Fatalf("a removed endpoint is still held: %v", e.state)
	}
}

// A hanging endpoint of one installation holds up neither the other installation's fetch nor
// Snapshot, which reconcilers call.
func TestExternalHangingEndpointBlocksNoOther(t *testing.T) {
	dead := spiffeid.RequireTrustDomainFromString("dead.example.org")
	live := spiffeid.RequireTrustDomainFromString("live.example.org")
	bundle := testBundle(t, live.Name())
	release := make(chan struct{})
	e := &External{Fetch: func(ctx context.Context, td spiffeid.TrustDomain, _ string, _ ...federation.FetchOption) (*spiffebundle.Bundle, error) {
		if td == dead {
			<-release
			return nil, errors.New("timed out")
		}
		return bundle, nil
	}}
	e.Snapshot("a", []Endpoint{{TrustDomain: dead, URL: "https://dead.example.org"}})
	e.Snapshot("b", []Endpoint{{TrustDomain: live, URL: "https://live.example.org"}})
	done := make(chan string, 2)
	e.FetchDue(context.Background(), time.Now(), func(installation string) { done <- installation })
	select {
	case got := <-done:
		if got != "b" {
			t.Fatalf("first done: %s, want b", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the live endpoint's fetch waited for the dead one")
	}
	if st := e.Snapshot("b", []Endpoint{{TrustDomain: live, URL: "https://live.example.org"}}); st[0].Bundle == nil {
		t.Fatalf("b: %+v, want the fetched bundle", st)
	}
	close(release)
	if got := <-done; got != "a" {
		t.Fatalf("second done: %s", got)
	}
}
