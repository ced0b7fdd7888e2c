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
	"crypto/tls"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// unknown is the value of a label the proxy cannot know: a peer that presented no verified
// SPIFFE ID (passthrough, a request no upstream answered, a gateway's connections), or an ID
// whose path is not /ns/<namespace>/sa/<service account>.
const unknown = "unknown"

// Metrics are the proxy's golden signals, labelled as Istio's standard metrics are. Label values
// are bounded: they come from verified SPIFFE IDs (trust domain, namespace, service account: one
// per federated member and workload identity) and from the xDS config (the upstream cluster, one
// per service port, or the local application port), never from a request's data.
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

// workload is one side of a request or connection: the labels its SPIFFE ID gives. Its name is
// the service account, which Istio's metrics fall back to when a pod has no workload name.
type workload struct{ name, namespace, trustDomain string }

// unknownWorkload is a peer without a verified SPIFFE ID.
var unknownWorkload = workload{unknown, unknown, unknown}

// workloadOf is the workload of a verified SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>); another
// path keeps the trust domain and leaves namespace and name unknown.
func workloadOf(id spiffeid.ID) workload {
	if id.IsZero() {
		return unknownWorkload
	}
	w := workload{unknown, unknown, id.TrustDomain().Name()}
	rest, ok := strings.CutPrefix(id.Path(), "/ns/")
	if !ok {
		return w
	}
	ns, sa, ok := strings.Cut(rest, "/sa/")
	if !ok || ns == "" || sa == "" || strings.Contains(ns, "/") || strings.Contains(sa, "/") {
		return w
	}
	w.namespace, w.name = ns, sa
	return w
}

// peerWorkload is the workload of the peer that completed an mTLS handshake (its leaf
// certificate was verified by the handshake); a connection without one is unknown.
func peerWorkload(state *tls.ConnectionState) workload {
	if state == nil || len(state.PeerCertificates) == 0 {
		return unknownWorkload
	}
	id, err := x509svid.IDFromCert(state.PeerCertificates[0])
	if err != nil {
		return unknownWorkload
	}
	return workloadOf(id)
}

// localWorkload is the proxy's own workload, from its SVID (unknown before it has one).
func (p *Proxy) localWorkload() workload {
	if p.opts.SVID == nil {
		return unknownWorkload
	}
	s, err := p.opts.SVID.GetX509SVID()
	if err != nil {
		return unknownWorkload
	}
	return workloadOf(s.ID)
}

// seriesKey is a request series' labels, less the response class.
type seriesKey struct {
	direction string
	// service is destination_service: the upstream cluster (outbound) or the local application
	// port (inbound).
	service             string
	source, destination workload
}

// serviceOf is the destination_service label of an upstream cluster: its name, less the pod
// address of a pod's own cluster (outbound|<port>|<pod address>|<host>, what a workload dialling
// a pod directly goes to), so that pods called by address add no series of their own.
func serviceOf(cluster string) string {
	parts := strings.Split(cluster, "|")
	if len(parts) != 4 || parts[0] != "outbound" || parts[2] == "" {
		return cluster
	}
	parts[2] = ""
	return strings.Join(parts, "|")
}

// labels are the key's label values, in the order of requestLabels.
func (k seriesKey) labels(extra ...string) []string {
	return append([]string{k.direction,
		k.source.name, k.source.namespace, k.source.trustDomain,
		k.service, k.destination.name, k.destination.namespace, k.destination.trustDomain}, extra...)
}

// requestLabels are the labels every request and TCP series has.
var requestLabels = []string{"direction",
	"source_workload", "source_namespace", "source_trust_domain",
	"destination_service", "destination_workload", "destination_namespace", "destination_trust_domain"}

func withLabels(extra ...string) []string {
	return append(append([]string{}, requestLabels...), extra...)
}

// NewMetrics registers the proxy's series with reg (nil: a private registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	const by = "by direction, source and destination workload, namespace and trust domain (from their SPIFFE IDs) and destination service (the upstream cluster outbound, the application port inbound)"
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_requests_total",
			Help: "HTTP requests the sidecar carried, " + by + ", and response class."},
			withLabels("response_class")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fleetmesh_proxy_request_duration_seconds",
			Help:    "HTTP request latency through the sidecar, " + by + ".",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}},
			withLabels()),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_connections_opened_total",
			Help: "TCP connections the sidecar opened upstream, " + by + "."}, withLabels()),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_connections_closed_total",
			Help: "TCP connections the sidecar carried to their end, " + by + "."}, withLabels()),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_connections_failed_total",
			Help: "TCP connections the sidecar could not open upstream (every host tried), " + by + "."}, withLabels()),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmesh_proxy_tcp_bytes_total",
			Help: "Bytes the sidecar carried over TCP, " + by + ", and flow (sent upstream, received from upstream)."}, withLabels("flow")),
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

// requestSeries is the request counters and latency histogram of one set of labels. A
// connection resolves it once (outbound HTTP: once per upstream peer, see upstreamSeries) and
// every request on it counts through it, so a request costs no label hashing or lookup. Each
// child is still created on its first request, as WithLabelValues per request would: no series
// appears before it has a sample.
func (m *Metrics) requestSeries(k seriesKey) *requestSeries {
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
		v := prometheus.Counter(s.m.requests.WithLabelValues(s.key.labels(responseClasses[i])...))
		c = &v
		s.classes[i].Store(c)
	}
	(*c).Inc()
	o := s.duration.Load()
	if o == nil {
		v := s.m.duration.WithLabelValues(s.key.labels()...)
		o = &v
		s.duration.Store(o)
	}
	(*o).Observe(d.Seconds())
}

// upstreamSeries are one downstream connection's outbound request series, by the server
// sidecar that answered: the connection's requests are balanced over pooled upstream
// connections, so its peer is known per request, from the response's TLS state. A few slots
// hold the series of the peers seen last, found by comparing the peer's SPIFFE ID as its
// certificate holds it (no lock, no hashing); the proxy's series map is asked only for a peer
// not among them. A cluster's servers share a few identities (one per member, usually), however
// many hosts it has.
type upstreamSeries struct {
	m                  *Metrics
	direction, service string
	source             workload
	slots              [8]atomic.Pointer[peerSeries]
	next               atomic.Uint32
}

// peerSeries is the series of the peer whose SPIFFE ID URI has host and path (both empty: no
// verified peer).
type peerSeries struct {
	host, path string
	series     *requestSeries
}

func (m *Metrics) upstreamSeries(direction, service string, source workload) *upstreamSeries {
	return &upstreamSeries{m: m, direction: direction, service: service, source: source}
}

// of is the series of a request answered over an upstream connection of state (nil: answered
// by no upstream).
func (u *upstreamSeries) of(state *tls.ConnectionState) *requestSeries {
	host, path := "", ""
	if state != nil && len(state.PeerCertificates) > 0 {
		if uris := state.PeerCertificates[0].URIs; len(uris) == 1 {
			host, path = uris[0].Host, uris[0].Path
		}
	}
	for i := range u.slots {
		if e := u.slots[i].Load(); e != nil && e.host == host && e.path == path {
			return e.series
		}
	}
	dst := unknownWorkload
	if host != "" {
		dst = peerWorkload(state)
	}
	s := u.m.requestSeries(seriesKey{direction: u.direction, service: u.service, source: u.source, destination: dst})
	u.slots[u.next.Add(1)%uint32(len(u.slots))].Store(&peerSeries{host: host, path: path, series: s})
	return s
}

type counter interface{ Add(float64) }

type tcpMetrics struct {
	opened, closed, failed prometheus.Counter
	sent, received         counter
}

// tcp is the TCP series of a connection whose ends are unknown (a gateway's, a test's).
func (m *Metrics) tcp(direction, service string) tcpMetrics {
	return m.tcpOf(seriesKey{direction: direction, service: service, source: unknownWorkload, destination: unknownWorkload})
}

// tcpOf is the TCP series of one set of labels.
func (m *Metrics) tcpOf(k seriesKey) tcpMetrics {
	l := k.labels()
	return tcpMetrics{
		opened:   m.connections.WithLabelValues(l...),
		closed:   m.closed.WithLabelValues(l...),
		failed:   m.failed.WithLabelValues(l...),
		sent:     m.bytes.WithLabelValues(append(l[:len(l):len(l)], "sent")...),
		received: m.bytes.WithLabelValues(append(l[:len(l):len(l)], "received")...),
	}
}
