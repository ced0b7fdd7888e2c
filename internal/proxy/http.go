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
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
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
)

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
		ErrorLog: nil,
	}
	return h
}

func (h *httpOutbound) serve(c net.Conn, r *Route, cl *Cluster) {
	h.once.Do(func() { go func() { _ = h.server.Serve(chanListener(h.conns)) }() })
	h.conns <- &routed{Conn: c, route: r, cluster: cl}
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
				return h.p.dialMesh(ctx, ap, cl)
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
	m := h.p.opts.Metrics
	code := h.forward(w, r, rc.route, cl)
	m.request("outbound", cl.Name, "", code, time.Since(start))
}

// forward sends r upstream with retries and writes the answer; it returns the status sent.
func (h *httpOutbound) forward(w http.ResponseWriter, r *http.Request, route *Route, cl *Cluster) int {
	b := h.p.balancer(cl.EDSName)
	if b == nil {
		http.Error(w, "fleetmesh proxy: no endpoints for "+cl.Name, http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable
	}
	body, replayable := bufferBody(r)
	retries := route.Retries
	if !replayable {
		retries = 0
	}
	tp := r.Header.Get(HeaderTraceparent)
	if tp == "" {
		tp = newTraceparent()
	}
	tried := map[netip.AddrPort]bool{}
	t := h.transport(cl)
	for attempt := 0; ; attempt++ {
		host, ok := b.Pick(tried)
		if !ok {
			http.Error(w, "fleetmesh proxy: no healthy upstream for "+cl.Name, http.StatusServiceUnavailable)
			return http.StatusServiceUnavailable
		}
		tried[host] = true
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme = "https"
		out.URL.Host = host.String()
		out.Host = r.Host
		for _, hh := range hopHeaders {
			out.Header.Del(hh)
		}
		out.Header.Del(HeaderXFCC) // only the server sidecar sets it
		out.Header.Set(HeaderTraceparent, tp)
		if replayable {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
			if len(body) == 0 {
				out.Body = http.NoBody
			}
		}
		resp, err := t.RoundTrip(out)
		last := attempt >= retries
		if err != nil {
			b.Report(host, false, cl.Outlier)
			h.p.opts.Log.Info("upstream request failed", "cluster", cl.Name, "host", host.String(), "attempt", attempt, "error", err.Error())
			if last {
				http.Error(w, "fleetmesh proxy: upstream failed: "+err.Error(), http.StatusServiceUnavailable)
				return http.StatusServiceUnavailable
			}
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable && !last {
			b.Report(host, false, cl.Outlier)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			continue
		}
		b.Report(host, resp.StatusCode < 500, cl.Outlier)
		writeResponse(w, resp)
		return resp.StatusCode
	}
}

// bufferBody reads a body of at most maxRetryBody so the request can be sent again.
func bufferBody(r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	if r.ContentLength > maxRetryBody {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRetryBody+1))
	if err != nil {
		return nil, false
	}
	if len(data) > maxRetryBody {
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data), r.Body))
		return nil, false
	}
	return data, true
}

func writeResponse(w http.ResponseWriter, resp *http.Response) {
	defer func() { _ = resp.Body.Close() }()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	for _, hh := range hopHeaders {
		w.Header().Del(hh)
	}
	for k := range resp.Trailer {
		w.Header().Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			break
		}
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			w.Header().Add(http.TrailerPrefix+k, v)
		}
	}
}

func newTraceparent() string {
	var id [24]byte
	_, _ = rand.Read(id[:])
	return "00-" + hex.EncodeToString(id[:16]) + "-" + hex.EncodeToString(id[16:]) + "-01"
}

// serveInboundHTTP serves HTTP/2 from a client sidecar on an authorized mTLS connection and
// hands each request to the application at dst as HTTP/1.1, with the caller's identity in
// x-forwarded-client-cert. A refused application connection is a 503, which the client sidecar
// retries on another host.
func (p *Proxy) serveInboundHTTP(tc *tls.Conn, dst netip.AddrPort, peer spiffeid.ID) {
	defer func() { _ = tc.Close() }()
	own := ""
	if s, err := p.opts.SVID.GetX509SVID(); err == nil {
		own = s.ID.String()
	}
	app := p.appTransport(dst)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme = "http"
		out.URL.Host = dst.String()
		out.Host = r.Host
		out.Header.Set(HeaderXFCC, "By="+own+";URI="+peer.String())
		resp, err := app.RoundTrip(out)
		code := http.StatusServiceUnavailable
		if err != nil {
			http.Error(w, "fleetmesh proxy: application unavailable", code)
		} else {
			code = resp.StatusCode
			writeResponse(w, resp)
		}
		p.opts.Metrics.request("inbound", ":"+strconv.Itoa(int(dst.Port())), peer.TrustDomain().Name(), code, time.Since(start))
	})
	srv := &http2.Server{IdleTimeout: 5 * time.Minute}
	srv.ServeConn(tc, &http2.ServeConnOpts{Handler: handler})
}

// appTransport is the HTTP/1.1 pool to the local application at dst.
func (p *Proxy) appTransport(dst netip.AddrPort) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.apps == nil {
		p.apps = map[netip.AddrPort]*http.Transport{}
	}
	t := p.apps[dst]
	if t == nil {
		t = &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return p.opts.Dial(ctx, network, dst.String())
			},
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
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

// statusClass is 2xx, 3xx, 4xx or 5xx.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "5xx"
	}
	return strconv.Itoa(code/100) + "xx"
}
