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
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestRotationTransitions(t *testing.T) {
	const ttl = time.Hour
	switched := t0.Add(10 * time.Minute)
	stable := Rotation{Phase: PhaseStable, Signing: "ca-1", Sequence: 1}
	publishing := Rotation{Phase: PhasePublishing, Signing: "ca-1", Next: "ca-2", Sequence: 2}
	retiring := Rotation{Phase: PhaseRetiring, Signing: "ca-2", Retiring: "ca-1", SwitchedAt: switched, Sequence: 2}
	after := Rotation{Phase: PhaseStable, Signing: "ca-2", Sequence: 3}

	type step func(Rotation) (Rotation, error)
	begin := func(id string) step { return func(r Rotation) (Rotation, error) { return r.Begin(id) } }
	confirm := func(seen uint64, now time.Time, propagation time.Duration) step {
		return func(r Rotation) (Rotation, error) { return r.Confirm(seen, now, propagation, time.Time{}) }
	}
	confirmBy := func(seen uint64, now time.Time, propagation time.Duration, deadline time.Time) step {
		return func(r Rotation) (Rotation, error) { return r.Confirm(seen, now, propagation, deadline) }
	}
	forced := Rotation{Phase: PhaseRetiring, Signing: "ca-2", Retiring: "ca-1", SwitchedAt: switched, Forced: true, Sequence: 2}
	const prop = 30 * time.Minute
	seenAt := switched.Add(-prop)
	waiting := Rotation{Phase: PhasePublishing, Signing: "ca-1", Next: "ca-2", SeenAt: seenAt, Sequence: 2}
	expire := func(now time.Time) step { return func(r Rotation) (Rotation, error) { return r.Expire(now, ttl), nil } }
	abort := func(r Rotation) (Rotation, error) { return r.Abort() }

	tests := []struct {
		name      string
		from      Rotation
		step      step
		want      Rotation
		wrongPh   bool
		otherErr  bool
		published []string
	}{
		{name: "stable: begin publishes the next CA beside the current", from: stable, step: begin("ca-2"), want: publishing, published: []string{"ca-1", "ca-2"}},
		{name: "stable: begin with the signing CA", from: stable, step: begin("ca-1"), want: stable, otherErr: true},
		{name: "stable: begin with no CA", from: stable, step: begin(""), want: stable, otherErr: true},
		{name: "stable: confirm", from: stable, step: confirm(9, t0, 0), want: stable, wrongPh: true},
		{name: "stable: abort", from: stable, step: abort, want: stable, wrongPh: true},
		{name: "stable: expire is a no-op", from: stable, step: expire(t0.Add(100 * time.Hour)), want: stable, published: []string{"ca-1"}},

		{name: "publishing: a member still has the old bundle", from: publishing, step: confirm(1, switched, 0), want: publishing, published: []string{"ca-1", "ca-2"}},
		{name: "publishing: every member has it, no propagation wait: signing switches", from: publishing, step: confirm(2, switched, 0), want: retiring, published: []string{"ca-2", "ca-1"}},
		{name: "publishing: a later sequence also confirms", from: publishing, step: confirm(5, switched, 0), want: retiring},
		{name: "publishing: every member has it, workloads may not: wait starts", from: publishing, step: confirm(2, seenAt, prop), want: waiting, published: []string{"ca-1", "ca-2"}},
		{name: "publishing: waiting, propagation not over", from: waiting, step: confirm(2, switched.Add(-time.Nanosecond), prop), want: waiting},
		{name: "publishing: waiting, propagation over: signing switches", from: waiting, step: confirm(2, switched, prop), want: retiring},
		{name: "publishing: waiting, a member falls behind: wait restarts", from: waiting, step: confirm(1, switched, prop), want: publishing},
		{name: "publishing: waiting, abort", from: waiting, step: abort, want: Rotation{Phase: PhaseStable, Signing: "ca-1", Sequence: 3}},
		{name: "publishing: a member still has the old bundle, deadline not reached: wait", from: publishing,
			step: confirmBy(1, switched, 0, switched.Add(time.Nanosecond)), want: publishing},
		{name: "publishing: a member still has the old bundle at the deadline: switched anyway, forced", from: publishing,
			step: confirmBy(1, switched, 0, switched), want: forced, published: []string{"ca-2", "ca-1"}},
		{name: "publishing: waiting for propagation at the deadline: switched anyway, forced", from: waiting,
			step: confirmBy(2, switched.Add(-time.Minute), prop, switched.Add(-time.Minute)), want: Rotation{Phase: PhaseRetiring, Signing: "ca-2", Retiring: "ca-1", SwitchedAt: switched.Add(-time.Minute), Forced: true, Sequence: 2}},
		{name: "publishing: every member caught up before the deadline: not forced", from: waiting,
			step: confirmBy(2, switched, prop, switched), want: retiring},
		{name: "retiring (forced): expiry clears it", from: forced, step: expire(switched.Add(ttl + time.Nanosecond)), want: after},
		{name: "publishing: begin again", from: publishing, step: begin("ca-3"), want: publishing, wrongPh: true},
		{name: "publishing: abort unpublishes", from: publishing, step: abort, want: Rotation{Phase: PhaseStable, Signing: "ca-1", Sequence: 3}, published: []string{"ca-1"}},
		{name: "publishing: expire is a no-op", from: publishing, step: expire(t0.Add(100 * time.Hour)), want: publishing},

		{name: "retiring: at switch + TTL the old CA stays", from: retiring, step: expire(switched.Add(ttl)), want: retiring, published: []string{"ca-2", "ca-1"}},
		{name: "retiring: just after switch + TTL it is dropped", from: retiring, step: expire(switched.Add(ttl + time.Nanosecond)), want: after, published: []string{"ca-2"}},
		{name: "retiring: begin", from: retiring, step: begin("ca-3"), want: retiring, wrongPh: true},
		{name: "retiring: confirm", from: retiring, step: confirm(9, t0, 0), want: retiring, wrongPh: true},
		{name: "retiring: abort", from: retiring, step: abort, want: retiring, wrongPh: true},

		{name: "after: a new rotation can begin", from: after, step: begin("ca-3"),
			want: Rotation{Phase: PhasePublishing, Signing: "ca-2", Next: "ca-3", Sequence: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.from
			got, err := tc.step(tc.from)
			switch {
			case tc.wrongPh && !errors.Is(err, ErrWrongPhase):
				t.Fatalf("error %v, want ErrWrongPhase", err)
			case tc.otherErr && (err == nil || errors.Is(err, ErrWrongPhase)):
				t.Fatalf("error %v, want a validation error", err)
			case !tc.wrongPh && !tc.otherErr && err != nil:
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if !tc.from.Equal(before) {
				t.Error("the receiver was changed")
			}
			if tc.published != nil && !slices.Equal(got.Published(), tc.published) {
				t.Errorf("published %v, want %v", got.Published(), tc.published)
			}
		})
	}
}

// TestRotationWalk drives a whole rotation with a clock and checks the invariant that makes it
// safe: at every moment the CA that signs is published, and a CA is unpublished only after the
// last SVID it could have signed has expired.
func TestRotationWalk(t *testing.T) {
	const ttl = time.Hour
	now := t0
	r, err := NewRotation("ca-1")
	if err != nil {
		t.Fatal(err)
	}
	lastSignedBy := map[string]time.Time{}
	check := func() {
		t.Helper()
		if !slices.Contains(r.Published(), r.Signing) {
			t.Fatalf("signing CA %s is not published: %+v", r.Signing, r)
		}
		lastSignedBy[r.Signing] = now
		for id, last := range lastSignedBy {
			if !slices.Contains(r.Published(), id) && !now.After(last.Add(ttl)) {
				t.Fatalf("%s unpublished at %s while its SVID from %s is valid", id, now, last)
			}
		}
	}
	check()
	seq0 := r.Sequence
	if r, err = r.Begin("ca-2"); err != nil {
		t.Fatal(err)
	}
	propagation := ttl / 2
	for i := 0; i < 5; i++ { // members catch up slowly
		now = now.Add(time.Second)
		if r, err = r.Confirm(seq0, now, propagation, time.Time{}); err != nil || r.Phase != PhasePublishing {
			t.Fatalf("switched before every member had the bundle: %+v %v", r, err)
		}
		check()
	}
	allSeen := now
	for r.Phase == PhasePublishing { // then workloads renew and get it
		now = now.Add(4 * time.Minute)
		if r, err = r.Confirm(r.Sequence, now, propagation, time.Time{}); err != nil {
			t.Fatal(err)
		}
		check()
	}
	if now.Sub(allSeen) < propagation {
		t.Fatalf("switched %s after every member had the bundle, before the %s propagation", now.Sub(allSeen), propagation)
	}
	for r.Phase == PhaseRetiring {
		now = now.Add(7 * time.Minute)
		r = r.Expire(now, ttl)
		check()
	}
	if r.Signing != "ca-2" || r.Sequence != seq0+2 {
		t.Errorf("final state %+v", r)
	}
	if _, err := NewRotation(""); err == nil {
		t.Error("a rotation without a CA")
	}
}

func TestRotationDue(t *testing.T) {
	ca := mustSelfSigned(t, tdA, 90*time.Hour)
	c := ca.Certificate()
	life := c.NotAfter.Sub(c.NotBefore)
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{c.NotBefore, false},
		{c.NotBefore.Add(life / 2), false},
		{c.NotBefore.Add(life/3*2 - time.Second), false},
		{c.NotBefore.Add(life / 3 * 2), true},
		{c.NotAfter, true},
	} {
		if got := RotationDue(c, tc.at); got != tc.want {
			t.Errorf("at %s: due %v, want %v", tc.at, got, tc.want)
		}
	}
}

func TestSwitchDeadlineIsFiveSixthsOfTheCAsLife(t *testing.T) {
	ca := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(60 * time.Hour)}
	if got, want := SwitchDeadline(ca), t0.Add(50*time.Hour); !got.Equal(want) {
		t.Errorf("SwitchDeadline = %s, want %s", got, want)
	}
	// A rotation begins at two thirds of the life: the deadline is after it, before expiry.
	if due := t0.Add(40 * time.Hour); !RotationDue(ca, due) || !SwitchDeadline(ca).After(due) || !SwitchDeadline(ca).Before(ca.NotAfter) {
		t.Errorf("the deadline %s must fall between the rotation's start and the CA's expiry", SwitchDeadline(ca))
	}
}
