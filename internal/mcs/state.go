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

package mcs

import "time"

// The state service federation keeps between reconciles, as typed pieces driven by the time
// the caller passes in: no clock is read here, so every rule is table-tested.

// Memory keeps each member's last known exports, so that an unreachable member's endpoints stay
// for the grace period, and when each member was first seen unreachable.
type Memory struct {
	exports   map[string]map[Key]Export
	goneSince map[string]time.Time
	// expired are the exports whose grace period ended while their member stayed away: never
	// restored until the member is seen again.
	expired map[string]map[Key]bool
}

// NewMemory is an empty Memory.
func NewMemory() *Memory {
	return &Memory{exports: map[string]map[Key]Export{}, goneSince: map[string]time.Time{}, expired: map[string]map[Key]bool{}}
}

// Seen records what a reachable member exports of key (ok false: nothing).
func (m *Memory) Seen(cluster string, key Key, e Export, ok bool) {
	delete(m.goneSince, cluster)
	delete(m.expired, cluster)
	if m.exports[cluster] == nil {
		m.exports[cluster] = map[Key]Export{}
	}
	if ok {
		m.exports[cluster][key] = e
	} else {
		delete(m.exports[cluster], key)
	}
}

// Recall returns an unreachable member's last export of key, marked stale, while within grace
// of when it was first found unreachable (now, if this is the first time), and how much of the
// grace period is left. Past it, the export is forgotten.
func (m *Memory) Recall(cluster string, key Key, now time.Time, grace time.Duration) (Export, bool, time.Duration) {
	e, ok := m.exports[cluster][key]
	if !ok {
		return e, false, 0
	}
	since, seen := m.goneSince[cluster]
	if !seen {
		since = now
		m.goneSince[cluster] = now
	}
	left := since.Add(grace).Sub(now)
	if left <= 0 {
		delete(m.exports[cluster], key)
		if m.expired[cluster] == nil {
			m.expired[cluster] = map[Key]bool{}
		}
		m.expired[cluster][key] = true
		return e, false, 0
	}
	e.Stale = true
	return e, true, left
}

// Knows tells whether anything is held of an unreachable member's export of key: a last known
// export, or the end of its grace period.
func (m *Memory) Knows(cluster string, key Key) bool {
	_, held := m.exports[cluster][key]
	return held || m.expired[cluster][key]
}

// Restore holds e as a member's last known export, unreachable since then (the grace period
// counts from there): how an operator that restarted while a member was away keeps its
// endpoints for the rest of the grace period (see Reconstruct). Something already known wins.
func (m *Memory) Restore(cluster string, key Key, e Export, since time.Time) {
	if m.Knows(cluster, key) {
		return
	}
	if m.exports[cluster] == nil {
		m.exports[cluster] = map[Key]Export{}
	}
	m.exports[cluster][key] = e
	if _, ok := m.goneSince[cluster]; !ok {
		m.goneSince[cluster] = since
	}
}

// Changes remembers when a change of each key was first seen and not yet carried out: the start
// of the propagation a metric times.
type Changes[K comparable] struct {
	at map[K]time.Time
}

// Note records a change of k at t, unless an earlier one is pending.
func (c *Changes[K]) Note(k K, t time.Time) {
	if c.at == nil {
		c.at = map[K]time.Time{}
	}
	if at, ok := c.at[k]; !ok || t.Before(at) {
		c.at[k] = t
	}
}

// Take returns (and forgets) when the pending change of k was first seen.
func (c *Changes[K]) Take(k K) (time.Time, bool) {
	at, ok := c.at[k]
	delete(c.at, k)
	return at, ok
}

// Throttle bounds how often something is reported per key: a burst of changes must not become a
// burst of status writes, and the burst's last change must still be reported.
type Throttle struct {
	Every   time.Duration
	last    map[string]time.Time
	pending map[string]bool
}

// Due tells whether a report for key is due at now (always after a failure). When it is not,
// deferAfter > 0 asks the caller to come back then, for the first skipped report only: one
// deferred report per key is enough to carry every change skipped until it.
func (t *Throttle) Due(key string, now time.Time, failed bool) (due bool, deferAfter time.Duration) {
	if t.last == nil {
		t.last, t.pending = map[string]time.Time{}, map[string]bool{}
	}
	wait := t.Every - now.Sub(t.last[key])
	if failed || wait <= 0 {
		t.last[key] = now
		delete(t.pending, key)
		return true, 0
	}
	if t.pending[key] {
		return false, 0
	}
	t.pending[key] = true
	return false, wait
}
