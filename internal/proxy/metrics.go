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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's golden signals. Label values are bounded: direction, the upstream
// cluster (one per service port) or the local application port, the caller's trust domain (one
// per federated member) and the response class.
type Metrics struct {
	requests          *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	connections       *prometheus.CounterVec
	closed            *prometheus.CounterVec
	failed            *prometheus.CounterVec
	bytes             *prometheus.CounterVec
	denied            *prometheus.CounterVec
	handshakeFailures prometheus.Counter
	nacks             *prometheus.CounterVec
	gatewayRefused    *prometheus.CounterVec

	// series are the request series by label values, resolved once (see requestSeries).
	seriesMu sync.Mutex
	series   map[seriesKey]*requestSeries
}

type seriesKey struct{ direction, destination, sourceTD string }

// NewMetrics registers the proxy's series with reg (nil: a private registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_requests_total",
			Help: "HTTP requests the sidecar carried, by direction, upstream cluster (outbound) or application address (inbound), caller trust domain (inbound) and response class."},
			[]string{"direction", "destination", "source_trust_domain", "response_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fleetmesh_proxy_request_duration_seconds",
			Help:    "HTTP request latency through the sidecar, by direction and destination.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}},
			[]string{"direction", "destination"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_connections_opened_total",
			Help: "TCP connections the sidecar opened upstream, by direction and destination."}, []string{"direction", "destination"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_connections_closed_total",
			Help: "TCP connections the sidecar carried to their end, by direction and destination."}, []string{"direction", "destination"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_connections_failed_total",
			Help: "TCP connections the sidecar could not open upstream (every host tried), by direction and destination."}, []string{"direction", "destination"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_bytes_total",
			Help: "Bytes the sidecar carried over TCP, by direction, destination and flow (sent upstream, received from upstream)."}, []string{"direction", "destination", "flow"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_inbound_denied_total",
			Help: "Inbound mTLS connections refused by the authorization policy, by caller trust domain."}, []string{"source_trust_domain"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmesh_proxy_inbound_handshake_failures_total",
			Help: "Inbound connections whose mTLS handshake failed (plaintext, no or unverifiable SVID, policy)."}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_xds_nacks_total",
			Help: "xDS responses the sidecar rejected, by type; it keeps its last good config."}, []string{"type"}),
		gatewayRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_gateway_refused_total",
			Help: "Connections an east-west gateway closed without carrying them, by reason (not_tls, unknown_server_name, overflow, no_upstream)."}, []string{"reason"}),
	}
	reg.MustRegister(m.Collectors()...)
	return m
}

// Collectors are the proxy's series, for a registry (NewMetrics registers them) or a check.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.connections, m.closed, m.failed, m.bytes, m.denied, m.handshakeFailures, m.nacks, m.gatewayRefused}
}

// NACK counts a rejected xDS response.
func (m *Metrics) NACK(typeURL string) { m.nacks.WithLabelValues(typeURL).Inc() }

// requestSeries is the request counters and latency histogram of one direction, destination and
// caller trust domain. A connection resolves it once and every request on it counts through it,
// so a request costs no label hashing or lookup. Each child is still created on its first
// request, as WithLabelValues per request would: no series appears before it has a sample.
func (m *Metrics) requestSeries(direction, destination, sourceTD string) *requestSeries {
	k := seriesKey{direction, destination, sourceTD}
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	s := m.series[k]
	if s == nil {
		if m.series == nil {
			m.series = map[seriesKey]*requestSeries{}
		}
		s = &requestSeries{m: m, key: k}
		m.series[k] = s
	}
	return s
}

// responseClasses are the response_class label values, by status code / 100 - 1.
var responseClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

type requestSeries struct {
	m        *Metrics
	key      seriesKey
	classes  [len(responseClasses)]atomic.Pointer[prometheus.Counter]
	duration atomic.Pointer[prometheus.Observer]
}

func (s *requestSeries) observe(code int, d time.Duration) {
	i := 4 // statusClass: anything outside 100-599 is a 5xx
	if code >= 100 && code <= 599 {
		i = code/100 - 1
	}
	c := s.classes[i].Load()
	if c == nil {
		v := prometheus.Counter(s.m.requests.WithLabelValues(s.key.direction, s.key.destination, s.key.sourceTD, responseClasses[i]))
		c = &v
		s.classes[i].Store(c)
	}
	(*c).Inc()
	o := s.duration.Load()
	if o == nil {
		v := s.m.duration.WithLabelValues(s.key.direction, s.key.destination)
		o = &v
		s.duration.Store(o)
	}
	(*o).Observe(d.Seconds())
}

type counter interface{ Add(float64) }

type tcpMetrics struct {
	opened, closed, failed prometheus.Counter
	sent, received         counter
}

func (m *Metrics) tcp(direction, destination string) tcpMetrics {
	return tcpMetrics{
		opened:   m.connections.WithLabelValues(direction, destination),
		closed:   m.closed.WithLabelValues(direction, destination),
		failed:   m.failed.WithLabelValues(direction, destination),
		sent:     m.bytes.WithLabelValues(direction, destination, "sent"),
		received: m.bytes.WithLabelValues(direction, destination, "received"),
	}
}
