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

package agent

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"

	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// TestRotationSteps walks a requested rotation through its phases and checks, at each step,
// what the bundle publishes and which CA signs, and that the Secret round-trips.
func TestRotationSteps(t *testing.T) {
	const svidTTL, caTTL = time.Minute, 24 * time.Hour
	td := spiffeid.RequireTrustDomainFromString("member-1.fleet.mesh")
	now := time.Now()
	id, ca, err := newCA(td, caTTL, now)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := trust.NewRotation(id)
	r.Sequence = 100
	s := &caStore{td: td, state: caState{Rotation: r}, cas: map[string]*trust.CA{id: ca}}

	step := func(in rotationInput, at time.Time) *caStore {
		t.Helper()
		next, err := nextRotation(s, in, svidTTL, caTTL, false, at)
		if err != nil {
			t.Fatal(err)
		}
		if next != nil {
			// What is saved is what is loaded back.
			data, err := next.secretData()
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := parseCAStore(td, &corev1.Secret{Data: data}, at)
			if err != nil {
				t.Fatal(err)
			}
			if !loaded.state.Rotation.Equal(next.state.Rotation) || len(loaded.cas) != len(next.cas) {
				t.Fatalf("the Secret does not round-trip: %+v vs %+v", loaded.state, next.state)
			}
		}
		return next
	}
	roots := func(st *caStore) int { return len(st.bundle().X509Authorities()) }

	if next := step(rotationInput{held: 100}, now); next != nil {
		t.Fatalf("nothing asked and the CA is young, yet the state changed to %+v", next.state)
	}
	s = step(rotationInput{held: 100, request: "r1"}, now)
	if s == nil || s.state.Rotation.Phase != trust.PhasePublishing || roots(s) != 2 || s.signing() != ca || s.state.Rotation.Sequence != 101 {
		t.Fatalf("after a request: %+v, want Publishing two roots at 101, old CA signing", s)
	}
	// Other members still hold sequence 100: no switch, however long.
	if next := step(rotationInput{held: 100, request: "r1"}, now.Add(time.Hour)); next != nil {
		t.Fatalf("switched before every member held the new bundle: %+v", next.state)
	}
	// Held everywhere: the wait starts, and signing switches svidTTL/2 + margin later.
	s = step(rotationInput{held: 101, request: "r1"}, now)
	if s == nil || s.state.Rotation.Phase != trust.PhasePublishing || s.state.Rotation.SeenAt.IsZero() {
		t.Fatalf("held everywhere: %+v, want the wait recorded", s)
	}
	if next := step(rotationInput{held: 101, request: "r1"}, now.Add(svidTTL/2)); next != nil {
		t.Fatalf("switched before workloads renewed: %+v", next.state)
	}
	switchAt := now.Add(svidTTL/2 + rotationMargin + time.Second)
	s = step(rotationInput{held: 101, request: "r1"}, switchAt)
	if s == nil || s.state.Rotation.Phase != trust.PhaseRetiring || s.signing() == ca || roots(s) != 2 {
		t.Fatalf("after the wait: %+v, want Retiring, new CA signing, both roots published", s)
	}
	if next := step(rotationInput{held: 101, request: "r1"}, switchAt.Add(svidTTL)); next != nil {
		t.Fatalf("old root dropped before the last SVID it signed expired: %+v", next.state)
	}
	s = step(rotationInput{held: 101, request: "r1"}, switchAt.Add(svidTTL+rotationMargin+time.Second))
	if s == nil || s.state.Rotation.Phase != trust.PhaseStable || roots(s) != 1 || len(s.cas) != 1 || s.state.Rotation.Sequence != 102 {
		t.Fatalf("after expiry: %+v, want Stable with one root at 102", s)
	}
	// The same request does not rotate again; a new one does.
	if next := step(rotationInput{held: 102, request: "r1"}, switchAt.Add(time.Hour)); next != nil {
		t.Fatalf("the same request rotated again: %+v", next.state)
	}
	if next := step(rotationInput{held: 102, request: "r2"}, switchAt.Add(time.Hour)); next == nil || next.state.Rotation.Phase != trust.PhasePublishing {
		t.Fatal("a new request did not start a rotation")
	}
	// A CA two thirds through its life rotates unasked.
	if next := step(rotationInput{held: 102, request: "r1"}, now.Add(caTTL*2/3+time.Minute)); next == nil || next.state.Rotation.Phase != trust.PhasePublishing {
		t.Fatal("an ageing CA did not start a rotation")
	}
}

// TestRotationStalledByAMemberSwitchesAtTheDeadline: a member that never catches up (held stays
// below the rotation's sequence) delays the switch only until five sixths of the signing CA's
// life; the status says the deadline while waiting and that the switch was forced after it.
func TestRotationStalledByAMemberSwitchesAtTheDeadline(t *testing.T) {
	const svidTTL, caTTL = time.Minute, 24 * time.Hour
	td := spiffeid.RequireTrustDomainFromString("member-1.fleet.mesh")
	now := time.Now()
	id, ca, err := newCA(td, caTTL, now)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := trust.NewRotation(id)
	s := &caStore{td: td, state: caState{Rotation: r}, cas: map[string]*trust.CA{id: ca}}
	due := now.Add(caTTL*2/3 + time.Minute)
	if s, err = nextRotation(s, rotationInput{held: 1}, svidTTL, caTTL, false, due); err != nil || s == nil || s.state.Rotation.Phase != trust.PhasePublishing {
		t.Fatalf("an ageing CA did not start a rotation: %+v %v", s, err)
	}
	deadline := trust.SwitchDeadline(ca.Certificate())
	if got := s.rotationStatus()[wire.StatusKeyCARotationDeadline]; got != deadline.UTC().Format(time.RFC3339) {
		t.Errorf("status while publishing: deadline %q, want %s", got, deadline)
	}
	// One member still holds sequence 1: no switch until the deadline.
	if next, err := nextRotation(s, rotationInput{held: 1}, svidTTL, caTTL, false, deadline.Add(-time.Second)); err != nil || next != nil {
		t.Fatalf("switched before the deadline with a member behind: %+v %v", next, err)
	}
	next, err := nextRotation(s, rotationInput{held: 1}, svidTTL, caTTL, false, deadline)
	if err != nil || next == nil || next.state.Rotation.Phase != trust.PhaseRetiring || !next.state.Rotation.Forced || next.signing() == ca {
		t.Fatalf("at the deadline: %+v %v, want Retiring, forced, the new CA signing", next, err)
	}
	if st := next.rotationStatus(); st[wire.StatusKeyCARotationForced] != "true" || st[wire.StatusKeyCARotation] != string(trust.PhaseRetiring) {
		t.Errorf("status after a forced switch: %v", st)
	}
	// The forced flag survives the Secret (a restarted agent still says so).
	data, err := next.secretData()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := parseCAStore(td, &corev1.Secret{Data: data}, deadline)
	if err != nil || !loaded.state.Rotation.Forced {
		t.Fatalf("loaded back: %+v %v", loaded, err)
	}
}
