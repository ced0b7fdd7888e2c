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
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestExternalRefresh: the bootstrap bundle is served until the first fetch, fetched bundles
// replace it at their refresh hint, and a failing endpoint keeps the last good one.
func TestExternalRefresh(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("spire.example.org")
	boot, fresh := testBundle(t, td.Name()), testBundle(t, td.Name())
	fresh.SetRefreshHint(30 * time.Second)
	var (
		serve error
		calls int
	)
	e := &External{Fetch: func(_ context.Context, got spiffeid.TrustDomain, _ string, _ ...federation.FetchOption) (*spiffebundle.Bundle, error) {
		calls++
		if got != td {
			t.Fatalf("fetched %s", got)
		}
		return fresh, serve
	}}
	ep := Endpoint{TrustDomain: td, URL: "https://spire.example.org:8443", SPIFFEAuth: true,
		EndpointID: spiffeid.RequireFromPath(td, "/spire/server"), Bootstrap: boot}
	now := time.Now()

	serve = errors.New("connection refused")
	st, due := e.Refresh(context.Background(), "mesh", []Endpoint{ep}, now)
	if len(st) != 1 || !st[0].Bundle.Equal(boot) || st[0].Err == nil || !due.Equal(now.Add(ExternalRetry)) {
		t.Fatalf("endpoint down at first: %+v due %s, want the bootstrap bundle, the error, a retry", st, due)
	}
	if st, _ := e.Refresh(context.Background(), "mesh", []Endpoint{ep}, now.Add(time.Second)); calls != 1 || st[0].Err == nil {
		t.Fatalf("fetched again before the retry was due (%d calls)", calls)
	}

	serve = nil
	st, due = e.Refresh(context.Background(), "mesh", []Endpoint{ep}, now.Add(ExternalRetry))
	if !st[0].Bundle.Equal(fresh) || st[0].Err != nil || st[0].LastFetched.IsZero() || !due.Equal(now.Add(ExternalRetry+30*time.Second)) {
		t.Fatalf("endpoint up: %+v due %s, want the fetched bundle, refreshed at its hint", st, due)
	}

	serve = errors.New("bad certificate")
	st, _ = e.Refresh(context.Background(), "mesh", []Endpoint{ep}, now.Add(time.Hour))
	if !st[0].Bundle.Equal(fresh) || st[0].Err == nil {
		t.Fatalf("endpoint failing later: %+v, want the last good bundle kept and the error", st)
	}

	if st, due := e.Refresh(context.Background(), "mesh", nil, now.Add(time.Hour)); len(st) != 0 || !due.IsZero() {
		t.Fatalf("no endpoints: %+v, %s", st, due)
	}
	if len(e.state) != 0 {
		t.Fatalf("a removed endpoint is still held: %v", e.state)
	}
}
