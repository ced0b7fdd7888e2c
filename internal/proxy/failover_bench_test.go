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

package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// TestBenchmarkSidecarFailover is `make bench`'s failover figure for plain HTTP
// (FLEETMESH_BENCH=1): member a's client sidecar calls echo.demo, whose endpoints are a's own
// (priority 0, behind a's server sidecar) and member b's in another region (priority 1, behind
// b's server sidecar), with the agent's failover policy built by xds.BuildProxy: its default
// retries and consecutive errors, the ejection shortened to 1 s (spec.failover.baseEjectionTime)
// so that the local server is back in use within a second of its return. An open-loop generator
// sends GETs at a fixed rate over HTTP/1.1 keep-alive connections to the client sidecar while
// a's application is killed again and again: its listener closed and its connections reset, as
// the kernel does to a crashed process's sockets. Each kill is timed to the first successful
// answer from b's application; the application then listens again at the same address, and
// the next kill waits until traffic is back on it. Every request must succeed (a failed one
// fails the test); the times are printed. Client, sidecars and servers share this process.
func TestBenchmarkSidecarFailover(t *testing.T) {
	if os.Getenv("FLEETMESH_BENCH") == "" {
		t.Skip("set FLEETMESH_BENCH=1 (make bench) to run the sidecar benchmark")
	}
	const (
		rate  = 500
		conns = 32
		kills = 25
		// answers of the server taking the traffic before the next step: enough to be sure
		// traffic has moved, few enough to keep a cycle short (100 ms of traffic)
		settled = 50
	)
	f := newFixture(t)
	local := startCrashApp(t, "a")
	remote := startHitApp(t, "b")
	inLocal := f.serverSidecar(f.a, "a-echo", "demo", local.addr)
	inRemote := f.serverSidecar(f.b, "b-echo", "demo", remote.addr())
	policy := xds.FailoverFromSpec(meshv1alpha1.FailoverSpec{BaseEjectionTime: &meshv1alpha1.Duration{Duration: time.Second}})
	_, out := f.clientSidecar("a", f.clientInput("http", policy, endpointsAt("a", "r1", "http", inLocal), endpointsAt("b", "r2", "http", inRemote)), proxy.Options{})

	load := startFailoverLoad(t, "http://"+out.Addr().String()+"/", rate, conns)
	// waitServed waits until member's application has answered n more requests.
	waitServed := func(what, member string, n int) {
		t.Helper()
		base := load.served(member)
		eventually(t, what, func() error {
			if got := load.served(member) - base; got < n {
				return fmt.Errorf("%d answers from %s", got, member)
			}
			return nil
		})
	}
	// A second of traffic first: the generator's connections and the local path are set up
	// (the remote one is not: the first kill finds no connection to it).
	waitServed("traffic on the local server", "a", rate)
	var killedAt []time.Time
	for range kills {
		killedAt = append(killedAt, time.Now())
		local.kill()
		waitServed("failover to the remote server", "b", settled)
		local.restart(t)
		waitServed("traffic back on the local server", "a", settled)
	}
	res := load.stop()

	// The first answer from b after each kill (before the next one: b answers only while a
	// is down, or ejected).
	firsts := make([]time.Duration, 0, kills)
	for i, k := range killedAt {
		var first time.Duration
		for _, r := range res.replies {
			if r.member != "b" || r.done.Before(k) || (i+1 < len(killedAt) && !r.done.Before(killedAt[i+1])) {
				continue
			}
			if d := r.done.Sub(k); first == 0 || d < first {
				first = d
			}
		}
		firsts = append(firsts, first)
	}
	lat := make([]time.Duration, 0, len(res.replies))
	for _, r := range res.replies {
		lat = append(lat, r.latency)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
	fmt.Printf("\nproxy: plain HTTP failover at %d GET/s (HTTP/1.1, %d connections) from a member's own server to another member's, the own application killed %d times (listener closed, connections reset), retries %d, ejection after %d errors for %s; %d cores (client, sidecars and servers in one process):\n",
		rate, conns, kills, policy.Retries, policy.ConsecutiveErrors, policy.BaseEjectionTime, runtime.NumCPU())
	fmt.Printf("proxy:   plain HTTP failover, %d kills: first remote success p50 %s p90 %s p99 %s max %s (first kill, no connection to the remote yet: %s), failed requests %d of %d (target p99 <= 100 ms, 0 failed)\n",
		kills, ms(pctl(firsts, 50)), ms(pctl(firsts, 90)), ms(pctl(firsts, 99)), ms(pctl(firsts, 100)), ms(firsts[0]), res.failed, res.sent)
	fmt.Printf("proxy:   request latency over the whole run (from each request's scheduled time) p50 %s p99 %s p99.9 %s max %s\n",
		ms(pctl(lat, 50)), ms(pctl(lat, 99)), ms(pctl(lat, 99.9)), ms(pctl(lat, 100)))
	if res.failed > 0 {
		t.Errorf("%d of %d requests failed across %d failovers, want 0; the first: %v", res.failed, res.sent, kills, res.errors)
	}
}

// crashApp is an HTTP application at a fixed address that crashes and comes back: it answers
// its name. kill closes its listener and resets its connections; restart listens at the same
// address again.
type crashApp struct {
	name string
	addr netip.AddrPort
	mu   sync.Mutex
	life *appLife
}

// appLife is one run of a crashApp, from listening to its kill.
type appLife struct {
	l     net.Listener
	conns map[net.Conn]bool
	dead  bool
}

func startCrashApp(t *testing.T, name string) *crashApp {
	l := listen(t)
	a := &crashApp{name: name, addr: l.Addr().(*net.TCPAddr).AddrPort()}
	a.serve(l)
	t.Cleanup(a.kill)
	return a
}

func (a *crashApp) serve(l net.Listener) {
	life := &appLife{l: l, conns: map[net.Conn]bool{}}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, a.name)
		}),
		ReadHeaderTimeout: time.Minute,
		ConnState: func(c net.Conn, s http.ConnState) {
			a.mu.Lock()
			defer a.mu.Unlock()
			switch {
			case s == http.StateNew && life.dead:
				reset(c) // accepted as the process died
			case s == http.StateNew:
				life.conns[c] = true
			case s == http.StateClosed || s == http.StateHijacked:
				delete(life.conns, c)
			}
		},
	}
	a.mu.Lock()
	a.life = life
	a.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// kill closes the listener (new connections are refused) and resets every connection, whatever
// it was doing: the application's requests in flight get no answer.
func (a *crashApp) kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.life == nil || a.life.dead {
		return
	}
	a.life.dead = true
	_ = a.life.l.Close()
	for c := range a.life.conns {
		reset(c)
	}
}

// restart listens at the application's address again.
func (a *crashApp) restart(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", a.addr.String())
	if err != nil {
		t.Fatalf("the application listening again at %s: %v", a.addr, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	a.serve(l)
}

// reset closes c with an RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// failoverLoad sends GETs at a fixed rate, each from its scheduled time on its own goroutine
// (open loop), and records which application answered each.
type failoverLoad struct {
	stopped chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	res     failoverResult
	byName  map[string]int
}

type failoverResult struct {
	replies      []failoverReply // the successful answers
	sent, failed int
	errors       []string // the first few failures
}

type failoverReply struct {
	member  string
	done    time.Time
	latency time.Duration // from the request's scheduled time
}

func startFailoverLoad(t *testing.T, url string, rate, conns int) *failoverLoad {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns}}
	l := &failoverLoad{stopped: make(chan struct{}), done: make(chan struct{}), byName: map[string]int{}}
	interval := time.Second / time.Duration(rate)
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		start := time.Now()
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * interval)
			if w := time.Until(at); w > 0 {
				time.Sleep(w) // the schedule, not synchronisation
			}
			select {
			case <-l.stopped:
				return
			default:
			}
			wg.Go(func() {
				member, err := l.get(hc, url)
				l.record(at, member, err)
			})
		}
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

// get sends one GET and returns the answering application's name, or the failure.
func (l *failoverLoad) get(hc *http.Client, url string) (string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

func (l *failoverLoad) record(at time.Time, member string, err error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.sent++
	if err != nil {
		l.res.failed++
		if len(l.res.errors) < 5 {
			l.res.errors = append(l.res.errors, fmt.Sprintf("%s: %v", at.Format("15:04:05.000"), err))
		}
		return
	}
	l.byName[member]++
	l.res.replies = append(l.res.replies, failoverReply{member: member, done: now, latency: now.Sub(at)})
}

// served is the number of requests member's application has answered.
func (l *failoverLoad) served(member string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byName[member]
}

// stop ends the schedule, waits for the requests in flight and returns the results.
func (l *failoverLoad) stop() failoverResult {
	select {
	case <-l.stopped:
	default:
		close(l.stopped)
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}
