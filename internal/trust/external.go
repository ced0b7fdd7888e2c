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
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Refresh bounds for outside bundles: an endpoint's refresh hint is followed within these (an
// endpoint cannot make the installation reconcile more often than every 5 s), and a
// failed fetch is retried after ExternalRetry (keeping the last good bundle).
const (
	ExternalMinRefresh     = 5 * time.Second
	ExternalMaxRefresh     = time.Hour
	ExternalDefaultRefresh = 5 * time.Minute
	ExternalRetry          = 10 * time.Second
)

// Endpoint is an outside trust domain's bundle endpoint (spec.trust.federatesWith).
type Endpoint struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	// SPIFFEAuth selects the https_spiffe profile (authenticate EndpointID with the last bundle);
	// otherwise https_web (the system's Web PKI roots).
	SPIFFEAuth bool
	EndpointID spiffeid.ID
	// Bootstrap is the bundle known before the first fetch (may be nil for https_web).
	Bootstrap *spiffebundle.Bundle
}

// ExternalState is what is held of one outside trust domain.
type ExternalState struct {
	Bundle      *spiffebundle.Bundle // nil until one is known
	LastFetched time.Time            // zero until a fetch succeeded
	Err         error                // the last fetch's error, nil if it succeeded
	next        time.Time
	fetching    bool
	endpoint    Endpoint
}

// FetchFunc fetches td's bundle from url; federation.FetchBundle in production.
type FetchFunc func(ctx context.Context, td spiffeid.TrustDomain, url string, opts ...federation.FetchOption) (*spiffebundle.Bundle, error)

// FetchTimeout bounds one fetch of an outside bundle endpoint.
const FetchTimeout = 10 * time.Second

// External keeps the bundles of outside trust domains per installation, refreshing each at its
// refresh hint. Reconcilers read it (Snapshot, no I/O); a background loop fetches (FetchDue),
// each endpoint on its own: a failing or hanging endpoint keeps its last good bundle and holds
// up no other, of its installation or any other.
type External struct {
	Fetch FetchFunc

	mu    sync.Mutex
	state map[string]map[spiffeid.TrustDomain]*ExternalState // installation -> trust domain
}

// Snapshot registers the installation's endpoints and returns the state of each, in the order
// given. Endpoints no longer listed are forgotten; a new or changed endpoint (URL, profile, ID
// or bundle) starts over from its spec and is due at once. It does no I/O.
func (e *External) Snapshot(installation string, endpoints []Endpoint) []ExternalState {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == nil {
		e.state = map[string]map[spiffeid.TrustDomain]*ExternalState{}
	}
	held := e.state[installation]
	next := map[spiffeid.TrustDomain]*ExternalState{}
	var out []ExternalState
	for _, ep := range endpoints {
		st := held[ep.TrustDomain]
		if st == nil || !sameEndpoint(st.endpoint, ep) {
			st = &ExternalState{Bundle: ep.Bootstrap, endpoint: ep}
		}
		next[ep.TrustDomain] = st
		out = append(out, *st)
	}
	if len(next) == 0 {
		delete(e.state, installation)
	} else {
		e.state[installation] = next
	}
	return out
}

// FetchDue starts a fetch of every endpoint due at now and not being fetched already, each in
// its own goroutine bounded by FetchTimeout, and returns at once. done(installation) is called
// after each fetch that is still wanted has been recorded.
func (e *External) FetchDue(ctx context.Context, now time.Time, done func(installation string)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for installation, held := range e.state {
		for _, st := range held {
			if st.fetching || now.Before(st.next) {
				continue
			}
			st.fetching = true
			ep, bundle := st.endpoint, st.Bundle
			go func() {
				b, err := e.fetch(ctx, ep, bundle)
				e.mu.Lock()
				st.fetching = false
				wanted := e.state[installation][ep.TrustDomain] == st
				if wanted {
					st.record(b, err, now)
				}
				e.mu.Unlock()
				if wanted {
					done(installation)
				}
			}()
		}
	}
}

func (e *External) fetch(ctx context.Context, ep Endpoint, bundle *spiffebundle.Bundle) (*spiffebundle.Bundle, error) {
	var opts []federation.FetchOption
	if ep.SPIFFEAuth {
		if bundle == nil {
			return nil, fmt.Errorf("no bundle of %s to authenticate its endpoint %s", ep.TrustDomain, ep.EndpointID)
		}
		// The endpoint's ID is usually in the trust domain it serves; it is authenticated with
		// the last bundle of that trust domain.
		opts = append(opts, federation.WithSPIFFEAuth(bundle, ep.EndpointID))
	}
	fctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	b, err := e.Fetch(fctx, ep.TrustDomain, ep.URL, opts...)
	if err == nil && len(b.X509Authorities()) == 0 {
		err = fmt.Errorf("the bundle of %s from %s has no X.509 authorities", ep.TrustDomain, ep.URL)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch the bundle of %s from %s: %w", ep.TrustDomain, ep.URL, err)
	}
	return b, nil
}

// record is a fetch's result, started at now: a new bundle is refreshed at its hint (within
// the bounds), a failure retried after ExternalRetry keeping the last good bundle.
func (st *ExternalState) record(b *spiffebundle.Bundle, err error, now time.Time) {
	if err != nil {
		st.Err, st.next = err, now.Add(ExternalRetry)
		return
	}
	refresh := ExternalDefaultRefresh
	if hint, ok := b.RefreshHint(); ok && hint > 0 {
		refresh = min(max(hint, ExternalMinRefresh), ExternalMaxRefresh)
	}
	st.Bundle, st.LastFetched, st.Err, st.next = b, now, nil, now.Add(refresh)
}

func sameEndpoint(a, b Endpoint) bool {
	if a.TrustDomain != b.TrustDomain || a.URL != b.URL || a.SPIFFEAuth != b.SPIFFEAuth || a.EndpointID != b.EndpointID {
		return false
	}
	if a.Bootstrap == nil || b.Bootstrap == nil {
		return a.Bootstrap == b.Bootstrap
	}
	return a.Bootstrap.Equal(b.Bootstrap)
}
