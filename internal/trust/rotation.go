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
	"fmt"
	"slices"
	"time"
)

// Phase is where a member's CA rotation stands.
type Phase string

// Rotation phases, in order. A rotation never skips one, so no handshake fails: every peer
// trusts the new root before anything is signed by it, and the old root stays trusted until
// the last SVID it signed has expired.
const (
	// PhaseStable: one CA signs and is the only one published.
	PhaseStable Phase = "Stable"
	// PhasePublishing: the next CA is published beside the current one, which still signs,
	// until every member (and every workload) has the bundle carrying both.
	PhasePublishing Phase = "Publishing"
	// PhaseRetiring: the next CA signs; the previous one stays published until every SVID it
	// signed has expired.
	PhaseRetiring Phase = "Retiring"
)

// ErrWrongPhase is returned for an event the current phase does not accept.
var ErrWrongPhase = errors.New("rotation: event not allowed in this phase")

// Rotation is a member's CA rotation state. It names CAs by opaque IDs (for example the key
// names in the agent's CA Secret) so it can be stored as JSON beside them. Its methods are pure:
// they return the next state and never change the receiver.
type Rotation struct {
	Phase Phase `json:"phase"`
	// Signing is the CA that signs SVIDs.
	Signing string `json:"signing"`
	// Next is the CA being published (Publishing only).
	Next string `json:"next,omitempty"`
	// Retiring is the CA that signed before the switch (Retiring only).
	Retiring string `json:"retiring,omitempty"`
	// SeenAt is when every member was first seen holding the bundle with Next (Publishing only).
	SeenAt time.Time `json:"seenAt,omitzero"`
	// SwitchedAt is when signing moved from Retiring to Signing (Retiring only).
	SwitchedAt time.Time `json:"switchedAt,omitzero"`
	// Forced: the switch happened at the deadline, before every member held the new bundle
	// (Retiring only).
	Forced bool `json:"forced,omitempty"`
	// Sequence is the member's bundle sequence number: it grows whenever Published changes,
	// so "every member has sequence >= N" means every member has this bundle.
	Sequence uint64 `json:"sequence"`
}

// NewRotation is the state of a member with one CA.
func NewRotation(ca string) (Rotation, error) {
	if ca == "" {
		return Rotation{}, errors.New("rotation: a CA ID is required")
	}
	return Rotation{Phase: PhaseStable, Signing: ca, Sequence: 1}, nil
}

// Published lists the CAs whose roots the member's bundle must carry, signing CA first.
func (r Rotation) Published() []string {
	switch r.Phase {
	case PhasePublishing:
		return []string{r.Signing, r.Next}
	case PhaseRetiring:
		return []string{r.Signing, r.Retiring}
	default:
		return []string{r.Signing}
	}
}

// Begin starts a rotation to next (Stable -> Publishing): next is published, not yet used.
func (r Rotation) Begin(next string) (Rotation, error) {
	if r.Phase != PhaseStable {
		return r, fmt.Errorf("%w: begin in %s", ErrWrongPhase, r.Phase)
	}
	if next == "" || next == r.Signing {
		return r, fmt.Errorf("rotation: next CA %q must be new and non-empty", next)
	}
	r.Phase, r.Next = PhasePublishing, next
	r.Sequence++
	return r, nil
}

// Abort gives up a rotation that has not switched yet (Publishing -> Stable), for example when
// the next CA could not be signed; next is unpublished.
func (r Rotation) Abort() (Rotation, error) {
	if r.Phase != PhasePublishing {
		return r, fmt.Errorf("%w: abort in %s", ErrWrongPhase, r.Phase)
	}
	r.Phase, r.Next, r.SeenAt = PhaseStable, "", time.Time{}
	r.Sequence++
	return r, nil
}

// Confirm switches signing to the next CA (Publishing -> Retiring) once every member holds
// this member's bundle at a sequence of at least r.Sequence (seen is the lowest sequence any
// member holds) and propagation has passed since that was first seen. Members holding the bundle
// is not enough: workloads that get their bundle map only with their SVID see it at their next
// renewal, so pass the longest of svidTTL/2 plus the client's retry margin, and the bundle's
// refresh hint if outside trust domains federate with this one. Before that it returns r,
// having recorded when every member was first seen (SeenAt); a member falling behind again
// (one that just joined) restarts the wait.
//
// deadline, when not zero, is when the switch happens anyway (see SwitchDeadline): a member
// that never catches up (unreachable for days) must not keep the whole member signing with a
// CA until it expires. The switch then is Forced: members that do not hold the new bundle yet
// refuse the member's new SVIDs until they catch up, which is what waiting would have led to
// at the CA's expiry, for every member.
func (r Rotation) Confirm(seen uint64, now time.Time, propagation time.Duration, deadline time.Time) (Rotation, error) {
	if r.Phase != PhasePublishing {
		return r, fmt.Errorf("%w: confirm in %s", ErrWrongPhase, r.Phase)
	}
	if !deadline.IsZero() && !now.Before(deadline) && (seen < r.Sequence || now.Before(r.SeenAt.Add(propagation))) {
		r.Phase, r.Retiring, r.Signing, r.Next, r.SeenAt, r.SwitchedAt = PhaseRetiring, r.Signing, r.Next, "", time.Time{}, now
		r.Forced = true
		return r, nil
	}
	if seen < r.Sequence {
		r.SeenAt = time.Time{}
		return r, nil
	}
	if r.SeenAt.IsZero() {
		r.SeenAt = now
	}
	if now.Before(r.SeenAt.Add(propagation)) {
		return r, nil
	}
	r.Phase, r.Retiring, r.Signing, r.Next, r.SeenAt, r.SwitchedAt = PhaseRetiring, r.Signing, r.Next, "", time.Time{}, now
	return r, nil
}

// RetireAt is when the retiring CA may be dropped: after the switch plus the longest SVID it
// can have signed. Callers should pass svidTTL plus how long a replica may keep signing with
// the old CA after the switch, if that can happen.
func (r Rotation) RetireAt(svidTTL time.Duration) time.Time {
	return r.SwitchedAt.Add(svidTTL)
}

// Expire drops the retiring CA (Retiring -> Stable) once now is past RetireAt; otherwise, and
// in other phases, it returns r unchanged.
func (r Rotation) Expire(now time.Time, svidTTL time.Duration) Rotation {
	if r.Phase != PhaseRetiring || !now.After(r.RetireAt(svidTTL)) {
		return r
	}
	r.Phase, r.Retiring, r.SwitchedAt, r.Forced = PhaseStable, "", time.Time{}, false
	r.Sequence++
	return r
}

// RotationDue reports whether a CA certificate is old enough to rotate: two thirds of its
// lifetime have passed, leaving a third to publish, switch and outlive the SVIDs it signed.
func RotationDue(ca *x509.Certificate, now time.Time) bool {
	life := ca.NotAfter.Sub(ca.NotBefore)
	return !now.Before(ca.NotBefore.Add(life / 3 * 2))
}

// SwitchDeadline is when a rotation of the CA signing is switched even though not every member
// holds the new bundle: at five sixths of its lifetime. RotationDue begins a rotation at two
// thirds, so half of what is left is for the members to catch up, and the other half for the
// SVIDs the old CA signed to expire while it is still valid and published.
func SwitchDeadline(signing *x509.Certificate) time.Time {
	life := signing.NotAfter.Sub(signing.NotBefore)
	return signing.NotBefore.Add(life / 6 * 5)
}

// Equal reports whether two rotation states are the same.
func (r Rotation) Equal(o Rotation) bool {
	return r.Phase == o.Phase && r.Signing == o.Signing && r.Next == o.Next && r.Retiring == o.Retiring &&
		r.SeenAt.Equal(o.SeenAt) && r.SwitchedAt.Equal(o.SwitchedAt) && r.Forced == o.Forced && r.Sequence == o.Sequence && slices.Equal(r.Published(), o.Published())
}
