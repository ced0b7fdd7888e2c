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
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestCachingReviewer(t *testing.T) {
	next := &fakeReviewer{results: map[string]ReviewResult{"good": saReview("shop", "web")}}
	clk := clocktesting.NewFakePassiveClock(time.Now())
	c := &CachingReviewer{Next: next, TTL: 10 * time.Second, MaxEntries: 2, Clock: clk}
	aud := []string{Audience}
	review := func(token string, audiences []string) ReviewResult {
		t.Helper()
		r, err := c.Review(context.Background(), token, audiences)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	first, second := review("good", aud), review("good", aud)
	if !first.Authenticated || !second.Authenticated || next.calls != 1 {
		t.Fatalf("an authenticated review was not cached: %d calls", next.calls)
	}
	review("good", []string{"other"}) // another audience is another question
	if next.calls != 2 {
		t.Fatalf("audiences ignored in the key: %d calls", next.calls)
	}
	for range 2 {
		if review("bad", aud).Authenticated {
			t.Fatal("bad token authenticated")
		}
	}
	if next.calls != 4 {
		t.Fatalf("a refusal was cached: %d calls", next.calls)
	}
	clk.SetTime(clk.Now().Add(10 * time.Second))
	review("good", aud)
	if next.calls != 5 {
		t.Fatalf("an expired entry was used: %d calls", next.calls)
	}
	for k := range c.entries {
		if string(k[:]) == "good" {
			t.Fatal("the token itself is stored")
		}
	}
}
