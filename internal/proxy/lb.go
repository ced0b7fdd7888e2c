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

package proxy

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer picks a cluster's hosts: weighted round robin within the lowest priority level that
// has a host not ejected by outlier detection, as Envoy's priority load balancing does when a
// level is fully healthy or fully gone (a host of weight w is picked w times as often as one of
// weight 1). Its outlier state survives endpoint updates (by address).
type Balancer struct {
	mu     sync.Mutex
	now    func() time.Time
	levels [][]netip.AddrPort
	hosts  map[netip.AddrPort]*hostState
	next   uint64

	// The cluster's circuit breakers: connection attempts and HTTP requests in flight.
	connecting, requests gate
}

// gate counts work in flight against a limit.
type gate struct{ n atomic.Int64 }

// enter takes a place if fewer than limit are taken; leave gives it back.
func (g *gate) enter(limit int) bool {
	if g.n.Add(1) > int64(limit) {
		g.n.Add(-1)
		return false
	}
	return true
}

func (g *gate) leave() { g.n.Add(-1) }

type hostState struct {
	fails        int
	ejectedUntil time.Time
	// weight is the host's load-balancing weight (at least 1).
	weight uint64
	// addr is the host's address as a string (a request's URL host), made once.
	addr string
}

// NewBalancer returns a balancer with no hosts; now nil means time.Now.
func NewBalancer(now func() time.Time) *Balancer {
	if now == nil {
		now = time.Now
	}
	return &Balancer{now: now, hosts: map[netip.AddrPort]*hostState{}}
}

// Update replaces the hosts, keeping the state of those that stay.
func (b *Balancer) Update(ps []Priority) {
	b.mu.Lock()
	defer b.mu.Unlock()
	hosts := map[netip.AddrPort]*hostState{}
	b.levels = b.levels[:0]
	for _, p := range ps {
		b.levels = append(b.levels, p.Hosts)
		for i, h := range p.Hosts {
			st := b.hosts[h]
			if st == nil {
				st = &hostState{addr: h.String()}
			}
			st.weight = 1
			if i < len(p.Weights) && p.Weights[i] > 1 {
				st.weight = uint64(p.Weights[i])
			}
			hosts[h] = st
		}
	}
	b.hosts = hosts
}

// Pick returns a host not in exclude: from the first level with an available host; when every
// host is ejected, from the first level with any (Envoy's panic mode). ok is false when no host
// is left.
func (b *Balancer) Pick(exclude map[netip.AddrPort]bool) (netip.AddrPort, bool) {
	h, _, ok := b.pick(exclude)
	return h, ok
}

// pick is Pick, with the host's address as a string too. The candidates' weights of a level are
// summed, then the chosen one found by a second pass: no slice per pick.
func (b *Balancer) pick(exclude map[netip.AddrPort]bool) (netip.AddrPort, string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for _, strict := range [2]bool{true, false} {
		for _, level := range b.levels {
			available := func(h netip.AddrPort) bool {
				return !exclude[h] && (!strict || !now.Before(b.hosts[h].ejectedUntil))
			}
			var n uint64 // the available hosts' weights
			for _, h := range level {
				if available(h) {
					n += b.hosts[h].weight
				}
			}
			if n == 0 {
				continue
			}
			b.next++
			k := b.next % n
			for _, h := range level {
				if !available(h) {
					continue
				}
				st := b.hosts[h]
				if k < st.weight {
					return h, st.addr, true
				}
				k -= st.weight
			}
		}
	}
	return netip.AddrPort{}, "", false
}

// Report records the outcome of a connection or request to h: n failures in a row eject it for
// base.
func (b *Balancer) Report(h netip.AddrPort, ok bool, o Outlier) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.hosts[h]
	if st == nil {
		return
	}
	if ok {
		st.fails = 0
		return
	}
	st.fails++
	if o.ConsecutiveErrors > 0 && st.fails >= o.ConsecutiveErrors {
		st.fails = 0
		st.ejectedUntil = b.now().Add(o.BaseEjectionTime)
	}
}

// Ejected reports whether h is ejected now.
func (b *Balancer) Ejected(h netip.AddrPort) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.hosts[h]
	return st != nil && b.now().Before(st.ejectedUntil)
}
