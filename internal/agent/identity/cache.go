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

package identity

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// CachingReviewer remembers authenticated reviews for a short TTL, so a workload retrying or
// many replicas sharing a token do not cost an API-server round trip each. Only authenticated
// results are kept (a flood of bad tokens cannot fill it with garbage, and a refused token is
// always asked again); the price is that a token revoked (its pod deleted) keeps working for up
// to TTL. Keys are SHA-256 digests: the cache holds no token.
type CachingReviewer struct {
	Next TokenReviewer
	// TTL of an entry; keep it short (seconds).
	TTL time.Duration
	// MaxEntries bounds memory; when full, the cache is emptied. Default 10000.
	MaxEntries int
	// Clock defaults to the real clock.
	Clock clock.PassiveClock

	mu      sync.Mutex
	entries map[[32]byte]cachedReview
}

type cachedReview struct {
	result  ReviewResult
	expires time.Time
}

// Review implements TokenReviewer.
func (c *CachingReviewer) Review(ctx context.Context, token string, audiences []string) (ReviewResult, error) {
	now := c.now()
	key := sha256.Sum256([]byte(strings.Join(audiences, "\x00") + "\x00\x00" + token))
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.result, nil
	}
	res, err := c.Next.Review(ctx, token, audiences)
	if err != nil || !res.Authenticated {
		return res, err
	}
	limit := c.MaxEntries
	if limit <= 0 {
		limit = 10000
	}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= limit {
		c.entries = map[[32]byte]cachedReview{}
	}
	c.entries[key] = cachedReview{result: res, expires: now.Add(c.TTL)}
	c.mu.Unlock()
	return res, nil
}

func (c *CachingReviewer) now() time.Time {
	if c.Clock == nil {
		return time.Now()
	}
	return c.Clock.Now()
}
