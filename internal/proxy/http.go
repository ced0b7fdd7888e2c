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
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
)

// Header names the proxy reads or writes.
const (
	// HeaderXFCC carries the caller's SPIFFE ID to the application, Envoy's
	// x-forwarded-client-cert with SANITIZE_SET and URI: By=<own ID>;URI=<caller's ID>.
	HeaderXFCC = "X-Forwarded-Client-Cert"
	// HeaderTraceparent is W3C trace context: propagated, and started when missing.
	HeaderTraceparent = "Traceparent"
	// headerAppUnreached, on a server sidecar's 503, says the request never reached the
	// application (its port refused the connection): the client sidecar may then send even a
	// non-idempotent request to another host. It never reaches an application.
	headerAppUnreached = "X-Fleetmesh-App-Unreached"
)

// statusClientClosed is what the metrics record for a request its client abandoned (nginx's 499).
const statusClientClosed = 499

// maxRetryBody is the largest request body kept for a retry; a larger one is sent once.
const maxRetryBody = 64 << 10

// hopHeaders are connection-specific (RFC 9110 7.6.1): never forwarded.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

type ctxKey struct{}

// routed is a captured connection with the route its original destination chose.
type routed struct {
	net.Conn
	route   *Route
	cluster *Cluster
	// series counts the connection's requests, by the upstream peer that answered each.
	series *upstreamSeries
	// fixed, when valid, is the one host of the route's ORIGINAL_DST cluster (the pod the
	// workload dialled): no balancing.
	fixed netip.AddrPort
}

// httpOutbound serves the pod's HTTP/1.1 and cleartext HTTP/2 connections to HTTP services: each
// request is balanced and retried on its own, and sent as HTTP/2 over mTLS to a server sidecar.
type httpOutbound struct {
	p      *Proxy
	conns  chan net.Conn
	server *http.Server
	once   sync.Once
	// upstream pools HTTP/2 connections per host; ALPN is per cluster, so one transport each.
	mu        sync.Mutex
	upstreams map[string]*http2.Transport
}

func newHTTPOutbound(p *Proxy) *httpOutbound {
	h := &httpOutbound{p: p, conns: make(chan net.Conn), upstreams: map[string]*http2.Transport{}}
	protocols := &http.Protocols{}
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	h.server = &http.Server{
		Handler:           h,
		Protocols:         protocols,
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       5 * time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, c)
		},
	}
	return h
}

func (h *httpOutbound) serve(c net.Conn, r *Route, cl *Cluster, fixed netip.AddrPort) {
	h.once.Do(func() { go func() { _ = h.server.Serve(chanListener(h.conns)) }() })
	h.conns <- &routed{Conn: c, route: r, cluster: cl, fixed: fixed, series: h.p.opts.Metrics.upstreamSeries("outbound", serviceOf(cl.Name), h.p.localWorkload())}
}

func (h *httpOutbound) transport(cl *Cluster) *http2.Transport {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.upstreams[cl.Name]
	if t == nil {
		t = &http2.Transport{
			DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil {
					return nil, err
				}
				c, err := h.p.dialMesh(ctx, ap, cl)
				if err != nil {
					return nil, connectError{err}
				}
				return c, nil
			},
			ReadIdleTimeout: 30 * time.Second,
			PingTimeout:     5 * time.Second,
		}
		h.upstreams[cl.Name] = t
	}
	return t
}

func (h *httpOutbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc, _ := r.Context().Value(ctxKey{}).(*routed)
	if rc == nil {
		http.Error(w, "fleetmesh proxy: no route", http.StatusBadGateway)
		return
	}
	cl := rc.cluster
	if d := rc.route.Timeout; d > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		r = r.WithContext(ctx)
	}
	if r.Header.Get(HeaderTraceparent) == "" {
		r.Header.Set(HeaderTraceparent, newTraceparent()) // started here: logged and sent upstream
	}
	code, upstream := h.forward(w, r, rc.route, cl, rc.fixed)
	h.p.record(rc.series.of(upstream), "", r, code, start)
}

// forward sends r upstream with retries and writes the answer; it returns the status sent and
// the TLS state of the upstream connection that answered (nil: the proxy answered itself).
func (h *httpOutbound) forward(w http.ResponseWriter, r *http.Request, route *Route, cl *Cluster, fixed netip.AddrPort) (int, *tls.ConnectionState) {
	b := h.p.balancer(cl.EDSName)
	if b == nil {
		http.Error(w, "fleetmesh proxy: no endpoints for "+cl.Name, http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable, nil
	}
	if !b.requests.enter(h.p.opts.MaxRequests) {
		http.Error(w, "fleetmesh proxy: too many requests in flight to "+cl.Name, http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable, nil
	}
	defer b.requests.leave()
	body, replayable, err := bufferBody(r)
	if err != nil {
		http.Error(w, "fleetmesh proxy: reading the request body: "+err.Error(), http.StatusBadRequest)
		return http.StatusBadRequest, nil
	}
	retries := route.Retries
	if !replayable {
		retries = 0
	}
	// A request that may have reached an application is sent again only when that is harmless
	// (RFC 9110 9.2.2); one that never left for it (connect failure, refused by the app's port)
	// always may be.
	idempotent := isIdempotent(r)
	// The headers sent upstream, the same for every attempt (no transport changes a request's
	// headers): the client's without the hop-by-hop ones and without x-forwarded-client-cert,
	// which only the server sidecar sets.
	header := r.Header.Clone()
	removeHopHeaders(header)
	header.Del(HeaderXFCC)
	tried := map[netip.AddrPort]bool{}
	t := h.transport(cl)
	for attempt := 0; ; attempt++ {
		var host netip.AddrPort
		var hostAddr string
		var ok bool
		if fixed.IsValid() {
			host, hostAddr, ok = fixed, fixed.String(), !tried[fixed]
		} else {
			host, hostAddr, ok = b.pick(tried)
		}
		if !ok {
			http.Error(w, "fleetmesh proxy: no healthy upstream for "+cl.Name, http.StatusServiceUnavailable)
			return http.StatusServiceUnavailable, nil
		}
		tried[host] = true
		out := outboundRequest(r, header, "https", hostAddr)
		if replayable {
			setReplayableBody(out, body)
		}
		resp, err := t.RoundTrip(out)
		last := attempt >= retries
		if err != nil && r.Context().Err() != nil {
			// The route's timeout passed, or the client went away: not the host's fault (no
			// outlier failure), and nothing to try again.
			if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
				http.Error(w, "fleetmesh proxy: upstream request timeout", http.StatusGatewayTimeout)
				return http.StatusGatewayTimeout, nil
			}
			return statusClientClosed, nil
		}
		if err != nil {
			overflow := errors.Is(err, errOverflow)
			if !overflow {
				b.Report(host, false, cl.Outlier)
			}
			h.p.opts.Log.Info("upstream request failed", "cluster", cl.Name, "host", host.String(), "attempt", attempt, "error", err.Error())
			if last || overflow || (!idempotent && !errors.As(err, new(connectError))) {
				http.Error(w, "fleetmesh proxy: upstream failed: "+err.Error(), http.StatusServiceUnavailable)
				return http.StatusServiceUnavailable, nil
			}
			continue
		}
		unreached := resp.Header.Get(headerAppUnreached) != ""
		resp.Header.Del(headerAppUnreached)
		if resp.StatusCode == http.StatusServiceUnavailable && !last && (idempotent || unreached) {
			b.Report(host, false, cl.Outlier)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			continue
		}
		b.Report(host, resp.StatusCode < 500, cl.Outlier)
		writeResponse(w, resp)
		return resp.StatusCode, resp.TLS
	}
}

// outboundRequest is r as sent to scheme://host with header: what r.Clone and rewriting its
// URL, Host and headers gave, without copying what no transport changes. The URL is a copy;
// the trailer map is a copy as well (as Clone's), and the body is r's.
func outboundRequest(r *http.Request, header http.Header, scheme, host string) *http.Request {
	out := r.WithContext(r.Context()) // a shallow copy
	u := *r.URL
	u.Scheme, u.Host = scheme, host
	out.URL = &u
	out.RequestURI = ""
	out.Host = r.Host
	out.Header = header
	if r.Trailer != nil {
		out.Trailer = r.Trailer.Clone()
	}
	return out
}

// isIdempotent reports whether sending r twice has the effect of sending it once: its method
// says so (RFC 9110 9.2.2), or it carries an idempotency key (as net/http's Transport takes it).
func isIdempotent(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// bufferBody reads a body of known length up to maxRetryBody, so the request can be sent again.
// A body of unknown length (chunked, or an HTTP/2 stream without content-length) is not waited
// for: its client may keep it open while it reads the answer (a gRPC or other streaming call),
// so it is sent once, as it comes. An error reading the body is the client's.
func bufferBody(r *http.Request) ([]byte, bool, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, true, nil
	}
	if r.ContentLength < 0 || r.ContentLength > maxRetryBody {
		return nil, false, nil
	}
	// io.ReadAll's loop, into a slice sized for the declared length and the read that sees EOF.
	data := make([]byte, 0, r.ContentLength+1)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := r.Body.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err != nil {
			if err == io.EOF {
				return data, true, nil
			}
			return nil, false, err
		}
	}
}

// setReplayableBody gives out the buffered body and a GetBody, so that the request can be sent
// again: by this proxy's retries, and by a transport that finds a kept-alive or HTTP/2
// connection gone before the request was processed (GOAWAY, REFUSED_STREAM).
func setReplayableBody(out *http.Request, body []byte) {
	out.ContentLength = int64(len(body))
	if len(body) == 0 {
		out.Body, out.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
	out.GetBody = func() (io.ReadCloser, error) { return newBodyReader(body), nil }
	out.Body = newBodyReader(body)
}

// bodyReader is io.NopCloser(bytes.NewReader(body)) in one allocation.
type bodyReader struct{ bytes.Reader }

func newBodyReader(body []byte) *bodyReader {
	r := &bodyReader{}
	r.Reset(body)
	return r
}

func (*bodyReader) Close() error { return nil }

// removeHopHeaders deletes the connection-specific headers (RFC 9110 7.6.1): the usual ones and
// those the Connection header names. "TE: trailers" is kept: HTTP/2 allows it and gRPC wants it.
func removeHopHeaders(h http.Header) {
	trailers := false
	for _, v := range h.Values("Te") {
		for _, tok := range strings.Split(v, ",") {
			trailers = trailers || strings.EqualFold(textproto.TrimString(tok), "trailers")
		}
	}
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, hh := range hopHeaders {
		h.Del(hh)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
}

// copyBuffers are writeResponse's buffers: one per response in flight, not one allocated each.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeResponse sends resp on w: its headers less the hop-by-hop ones, its body as it comes
// (each chunk flushed, so a stream is not held back) and its trailers. The chunk that completes
// a body of declared length is not flushed on its own: the end of the handler sends it with the
// end of the response (in HTTP/2, in the DATA frame that ends the stream), one write fewer.
func writeResponse(w http.ResponseWriter, resp *http.Response) {
	defer func() { _ = resp.Body.Close() }()
	h := w.Header()
	for k, vs := range resp.Header {
		// resp is this proxy's own: its value slices are handed over, not copied value by
		// value (Header.Add's result, without its allocations).
		k = textproto.CanonicalMIMEHeaderKey(k)
		if have := h[k]; len(have) > 0 {
			h[k] = append(have, vs...)
		} else if len(vs) > 0 {
			h[k] = vs
		}
	}
	removeHopHeaders(h)
	h.Del("Te")
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var written int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			written += int64(n)
			if fl != nil && (resp.ContentLength < 0 || written < resp.ContentLength) {
				fl.Flush()
			}
		}
		if err != nil {
			break
		}
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// newTraceparent is "00-<random 16-byte trace ID>-<random 8-byte parent ID>-01" (W3C).
func newTraceparent() string {
	var id [24]byte
	_, _ = rand.Read(id[:])
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], id[:16])
	b[35] = '-'
	hex.Encode(b[36:52], id[16:])
	copy(b[52:], "-01")
	return string(b[:])
}

// serveInboundHTTP serves HTTP/2 from a client sidecar on an authorized mTLS connection and
// hands each request to the application at dst, as HTTP/1.1 (gRPC: as cleartext HTTP/2), with
// the caller's identity in x-forwarded-client-cert. An application port that refuses the
// connection is a 503 marked unreached, which the client sidecar retries on another host.
func (p *Proxy) serveInboundHTTP(tc *tls.Conn, dst netip.AddrPort, peer spiffeid.ID) {
	defer func() { _ = tc.Close() }()
	own := ""
	if s, err := p.opts.SVID.GetX509SVID(); err == nil {
		own = s.ID.String()
	}
	// What every request of the connection shares: its identity header, the application's
	// address and its metric series.
	xfcc := []string{"By=" + own + ";URI=" + peer.String()}
	appHost := dst.String()
	series := p.opts.Metrics.requestSeries(seriesKey{direction: "inbound", service: portLabel(dst), source: workloadOf(peer), destination: p.localWorkload()})
	app := p.appTransport(dst)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// Client sidecars keep their HTTP/2 connections for as long as they are used: the
		// policy in force now decides each request, not the one of the handshake.
		if !p.cfg.Load().Inbound.Allows(peer) {
			p.opts.Metrics.denied.WithLabelValues(peer.TrustDomain().Name()).Inc()
			http.Error(w, "fleetmesh proxy: "+peer.String()+" is not authorized by the mesh's policy", http.StatusForbidden)
			p.record(series, peer.String(), r, http.StatusForbidden, start)
			return
		}
		header := r.Header.Clone()
		header[HeaderXFCC] = xfcc // Set, without a slice per request (no transport changes it)
		out := outboundRequest(r, header, "http", appHost)
		// A small body of known length can be replayed by the transport when a kept-alive
		// connection to the application turns out closed before anything was written to it.
		if body, ok, err := bufferBody(r); err != nil {
			http.Error(w, "fleetmesh proxy: reading the request body: "+err.Error(), http.StatusBadRequest)
			return
		} else if ok {
			setReplayableBody(out, body)
		}
		t := app.http1
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			t = app.h2c // gRPC servers speak HTTP/2 only
		}
		resp, err := t.RoundTrip(out)
		code := http.StatusServiceUnavailable
		if err != nil {
			if errors.As(err, new(connectError)) {
				w.Header().Set(headerAppUnreached, "1")
			}
			http.Error(w, "fleetmesh proxy: application unavailable", code)
		} else {
			code = resp.StatusCode
			resp.Header.Del(headerAppUnreached) // only this proxy says so
			writeResponse(w, resp)
		}
		p.record(series, peer.String(), r, code, start)
	})
	srv := &http2.Server{IdleTimeout: 5 * time.Minute}
	srv.ServeConn(tc, &http2.ServeConnOpts{Handler: handler})
}

// appTransports are the connection pools to the local application at one address.
type appTransports struct{ http1, h2c *http.Transport }

// appTransport is the pools to the local application at dst.
func (p *Proxy) appTransport(dst netip.AddrPort) appTransports {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.apps == nil {
		p.apps = map[netip.AddrPort]appTransports{}
	}
	t, ok := p.apps[dst]
	if !ok {
		dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := p.opts.Dial(ctx, network, dst.String())
			if err != nil {
				return nil, connectError{err} // the request has not reached the application
			}
			return c, nil
		}
		h2c := &http.Protocols{}
		h2c.SetUnencryptedHTTP2(true)
		t = appTransports{
			http1: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, DisableCompression: true},
			h2c:   &http.Transport{DialContext: dial, Protocols: h2c, IdleConnTimeout: 90 * time.Second, DisableCompression: true},
		}
		p.apps[dst] = t
	}
	return t
}

// chanListener is a net.Listener over connections handed to it.
type chanListener chan net.Conn

func (l chanListener) Accept() (net.Conn, error) {
	c, ok := <-l
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// accessLogEntry is one line of the access log (JSON, one object per request).
type accessLogEntry struct {
	Time        string  `json:"time"`
	Direction   string  `json:"direction"`
	Destination string  `json:"destination"`
	Peer        string  `json:"peer,omitempty"`
	Method      string  `json:"method"`
	Authority   string  `json:"authority"`
	Path        string  `json:"path"`
	Status      int     `json:"status"`
	DurationMS  float64 `json:"duration_ms"`
	Traceparent string  `json:"traceparent,omitempty"`
}

// record counts a request in the golden metrics (series: its direction, destination service
// and workloads) and, when an access log is set, writes its line. peer is the caller's SPIFFE ID
// (inbound) or "".
func (p *Proxy) record(series *requestSeries, peer string, r *http.Request, code int, start time.Time) {
	d := time.Since(start)
	series.observe(code, d)
	if p.opts.AccessLog == nil {
		return
	}
	line, _ := json.Marshal(accessLogEntry{ // strings and numbers: always marshals
		Time: start.UTC().Format(time.RFC3339Nano), Direction: series.key.direction, Destination: series.key.service, Peer: peer,
		Method: r.Method, Authority: r.Host, Path: r.URL.Path, Status: code, DurationMS: float64(d.Microseconds()) / 1000,
		Traceparent: r.Header.Get(HeaderTraceparent),
	})
	p.logMu.Lock()
	defer p.logMu.Unlock()
	_, _ = p.opts.AccessLog.Write(append(line, '\n'))
}
