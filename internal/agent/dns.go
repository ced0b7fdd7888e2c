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
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetmesh/fleetmesh/internal/mcsdns"
)

// dnsServer answers the clusterset.local zone from the latest zone built from the member's
// imports; a rebuild swaps the zone whole, so a query never sees half an update.
type dnsServer struct {
	zone    atomic.Pointer[mcsdns.Zone]
	queries *prometheus.CounterVec
	names   prometheus.Gauge
	latency prometheus.Histogram
}

// serveDNS listens on addr over UDP and TCP until ctx ends. It answers NXDOMAIN for every name
// until the first zone is built.
func serveDNS(ctx context.Context, addr string, reg prometheus.Registerer) (*dnsServer, error) {
	d := &dnsServer{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_agent_dns_queries_total", Help: "clusterset.local DNS queries answered, by response code.",
		}, []string{"rcode"}),
		names: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleetmesh_agent_dns_names", Help: "Owner names in the clusterset.local zone.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleetmesh_agent_dns_update_seconds",
			Help:    "Time from a change of the member's ServiceImports or MCS EndpointSlices (as the agent's watch delivers it) to the zone answering with it.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}),
	}
	reg.MustRegister(d.queries, d.names, d.latency)
	d.zone.Store(mcsdns.Build(mcsdns.Table{}))
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for DNS on udp %s: %w", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("listen for DNS on tcp %s: %w", addr, err)
	}
	servers := []*dns.Server{
		{PacketConn: pc, Handler: d, UDPSize: dns.DefaultMsgSize},
		{Listener: l, Handler: d, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }},
	}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
	}
	go func() {
		<-ctx.Done()
		for _, s := range servers {
			_ = s.Shutdown()
		}
	}()
	return d, nil
}

// update installs the zone built from st; since is when the change it carries was first seen
// (unix nanoseconds, 0 if none).
func (d *dnsServer) update(st memberState, since int64) {
	t := mcsdns.Table{Slices: st.imported}
	for i := range st.imports {
		t.Imports = append(t.Imports, &st.imports[i])
	}
	z := mcsdns.Build(t)
	d.zone.Store(z)
	d.names.Set(float64(z.Names()))
	if since != 0 {
		d.latency.Observe(time.Since(time.Unix(0, since)).Seconds())
	}
}

// ServeDNS answers one query.
func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := d.zone.Load().Reply(req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size) // the client retries over TCP for the rest (RFC 7766)
	}
	d.queries.WithLabelValues(dns.RcodeToString[m.Rcode]).Inc()
	_ = w.WriteMsg(m) // a failure means the client went away: there is no one to tell
}
