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
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Options configure a Proxy.
type Options struct {
	// SVID is the workload's identity (the identity API's, renewed at half-life).
	SVID x509svid.Source
	// OriginalDst recovers a captured connection's original destination (SO_ORIGINAL_DST).
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
	// Dial dials addresses outside the mesh and the local application; nil means net.Dialer.
	// The proxy's own connections must not be captured (the capture exempts its uid).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds one connection attempt upstream (default 2s).
	ConnectTimeout time.Duration
	// MaxConnecting bounds a cluster's connection attempts in flight and MaxRequests its HTTP
	// requests in flight, as Envoy's circuit breakers do (default 1024, Envoy's). Beyond them a
	// connection is closed and a request answered 503 at once, so a flood toward a dead
	// upstream holds a bounded number of goroutines, sockets and request bodies.
	MaxConnecting, MaxRequests int
	// MaxConnections bounds the connections a gateway carries at once (default 16384), and
	// HelloTimeout a gateway's wait for a connection's TLS ClientHello (default 5s).
	MaxConnections int
	HelloTimeout   time.Duration
	Metrics        *Metrics
	Log            logr.Logger
	// AccessLog, if set, receives a JSON line per HTTP request (off by default).
	AccessLog io.Writer
}

// Proxy carries a pod's captured traffic by the Config its ADS client accepted.
type Proxy struct {
	opts Options
	cfg  atomic.Pointer[Config]

	mu        sync.Mutex
	balancers map[string]*Balancer
	logMu     sync.Mutex
	apps      map[netip.AddrPort]appTransports

	outboundHTTP *httpOutbound
	// gatewayConns counts a gateway's connections against MaxConnections.
	gatewayConns gate
}

// New returns a proxy with no config: it refuses mesh traffic until SetConfig.
func New(opts Options) *Proxy {
	if opts.Dial == nil {
		d := &net.Dialer{}
		opts.Dial = d.DialContext
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 2 * time.Second
	}
	if opts.MaxConnecting <= 0 {
		opts.MaxConnecting = 1024
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = 1024
	}
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = gatewayHelloTimeout
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = 16384
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	p := &Proxy{opts: opts, balancers: map[string]*Balancer{}}
	p.outboundHTTP = newHTTPOutbound(p)
	return p
}

// SetConfig makes c the proxy's config; balancers keep their outlier state.
func (p *Proxy) SetConfig(c *Config) {
	p.mu.Lock()
	seen := map[string]bool{}
	for name, ps := range c.Endpoints {
		b := p.balancers[name]
		if b == nil {
			b = NewBalancer(nil)
			p.balancers[name] = b
		}
		b.Update(ps)
		seen[name] = true
	}
	// An ORIGINAL_DST cluster has no endpoints, but its circuit breakers count all the same.
	for _, cl := range c.Clusters {
		if cl.OriginalDst && p.balancers[cl.EDSName] == nil {
			p.balancers[cl.EDSName] = NewBalancer(nil)
		}
		seen[cl.EDSName] = seen[cl.EDSName] || cl.OriginalDst
	}
	for name := range p.balancers {
		if !seen[name] {
			delete(p.balancers, name)
		}
	}
	p.mu.Unlock()
	p.cfg.Store(c)
}

// Config is the config in use (nil before the first).
func (p *Proxy) Config() *Config { return p.cfg.Load() }

// Ready reports whether the proxy has a complete config and an SVID that has not expired (an
// expired one, while the identity API is away, is refused by every peer: not ready).
// A gateway, which has no SVID, is ready with its config.
func (p *Proxy) Ready() bool {
	c := p.cfg.Load()
	if !c.Ready() {
		return false
	}
	if c.Gateway != nil {
		return true
	}
	s, err := p.opts.SVID.GetX509SVID()
	return err == nil && len(s.Certificates) > 0 && time.Now().Before(s.Certificates[0].NotAfter)
}

func (p *Proxy) balancer(name string) *Balancer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.balancers[name]
}

// GetX509BundleForTrustDomain verifies peers against the validation secret's bundles.
func (p *Proxy) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	c := p.cfg.Load()
	if c == nil || c.Bundles == nil {
		return nil, errors.New("no trust bundles from the agent yet")
	}
	return c.Bundles.GetX509BundleForTrustDomain(td)
}

// clientTLS is the mTLS config toward a server sidecar of cluster c: our SVID, the peer verified
// against its trust domain's bundle and, when the cluster names them, its SPIFFE ID matched
// against the cluster's server identities (the service's namespace).
func (p *Proxy) clientTLS(c *Cluster) *tls.Config {
	authorize := tlsconfig.AuthorizeAny()
	if c.ServerIDs != nil {
		authorize = func(id spiffeid.ID, _ [][]*x509.Certificate) error {
			if !c.ServerIDs.Allows(id) {
				return fmt.Errorf("server %s is not an identity of cluster %s", id, c.Name)
			}
			return nil
		}
	}
	cfg := meshTLS(tlsconfig.MTLSClientConfig(p.opts.SVID, p, authorize))
	if c.ALPN != "" {
		cfg.NextProtos = []string{c.ALPN}
	}
	// The peer is verified by its SPIFFE ID (VerifyPeerCertificate), never by this name: it
	// only routes the connection through an east-west gateway on the way.
	cfg.ServerName = c.SNI
	return cfg
}

// meshTLS sets what both ends of an mTLS leg between sidecars share: TLS records as large as
// the data written (up to 16 KiB) from a connection's first byte. Go's default starts every
// connection with records of one TCP segment for its first 128 KiB (for a browser's first paint
// over a slow link); between sidecars that only multiplies records and writes: a short opaque
// TCP connection would send most of its bytes in 1.2 KiB records, one write each.
func meshTLS(cfg *tls.Config) *tls.Config {
	cfg.DynamicRecordSizingDisabled = true
	return cfg
}

// errOverflow is a connection attempt refused by the cluster's MaxConnecting.
var errOverflow = errors.New("too many connection attempts in flight to the cluster")

// connectError is a failure to reach a server sidecar (dial, mTLS handshake, overflow) or, on
// the inbound side, the application: nothing of the request has left the proxy, so it is
// always safe to try again elsewhere.
type connectError struct{ err error }

func (e connectError) Error() string { return e.err.Error() }
func (e connectError) Unwrap() error { return e.err }

// dialMesh opens an mTLS connection to a host of cluster c.
func (p *Proxy) dialMesh(ctx context.Context, h netip.AddrPort, c *Cluster) (*tls.Conn, error) {
	if b := p.balancer(c.EDSName); b != nil {
		if !b.connecting.enter(p.opts.MaxConnecting) {
			return nil, errOverflow
		}
		defer b.connecting.leave()
	}
	dctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	defer cancel()
	raw, err := p.opts.Dial(dctx, "tcp", h.String())
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, p.clientTLS(c))
	if err := tc.HandshakeContext(dctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("mTLS handshake with %s: %w", h, err)
	}
	return tc, nil
}

// pickAndDial tries hosts of the cluster, each once, up to 1+retries attempts; a failed attempt
// counts toward the host's outlier ejection.
func (p *Proxy) pickAndDial(ctx context.Context, c *Cluster, retries int) (*tls.Conn, netip.AddrPort, error) {
	b := p.balancer(c.EDSName)
	if b == nil {
		return nil, netip.AddrPort{}, fmt.Errorf("cluster %s has no endpoints", c.Name)
	}
	tried := map[netip.AddrPort]bool{}
	var last error
	for range retries + 1 {
		h, ok := b.Pick(tried)
		if !ok {
			break
		}
		tried[h] = true
		conn, err := p.dialMesh(ctx, h, c)
		if err == nil {
			return conn, h, nil
		}
		if errors.Is(err, errOverflow) {
			return nil, netip.AddrPort{}, err // the cluster's limit, not the host's fault
		}
		b.Report(h, false, c.Outlier)
		last = err
	}
	if last == nil {
		last = fmt.Errorf("cluster %s has no healthy endpoint", c.Name)
	}
	return nil, netip.AddrPort{}, last
}

// ServeOutbound accepts the pod's captured outbound connections until ln closes.
func (p *Proxy) ServeOutbound(ln net.Listener) error {
	return serve(ln, p.handleOutbound)
}

// ServeInbound accepts the pod's captured inbound connections until ln closes.
func (p *Proxy) ServeInbound(ln net.Listener) error {
	return serve(ln, p.handleInbound)
}

func serve(ln net.Listener, handle func(*net.TCPConn)) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors under a connection flood (EMFILE), or a connection
			// aborted before it was accepted: wait a little and accept again, as net/http's
			// Server does. Returning would stop the pod's captured traffic for good.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			_ = c.Close()
			continue
		}
		go handle(tc)
	}
}

func (p *Proxy) handleOutbound(c *net.TCPConn) {
	dst, err := p.opts.OriginalDst(c)
	if err != nil {
		p.opts.Log.V(1).Info("outbound connection without an original destination", "error", err.Error())
		_ = c.Close()
		return
	}
	cfg := p.cfg.Load()
	var r *Route
	if cfg != nil {
		r = cfg.Outbound[dst]
	}
	if r == nil {
		p.passthrough(c, dst)
		return
	}
	cl := cfg.Clusters[r.Cluster]
	if cl == nil || cl.Plain {
		// A plaintext cluster is a gateway's: a sidecar sends nothing of the mesh unencrypted.
		p.opts.Log.Info("route to an unknown or plaintext cluster", "chain", r.Chain, "cluster", r.Cluster)
		_ = c.Close()
		return
	}
	var fixed netip.AddrPort // the one host of an ORIGINAL_DST cluster: the pod dialled
	if cl.OriginalDst {
		fixed = dst
	}
	if r.HTTP {
		p.outboundHTTP.serve(c, r, cl, fixed)
		return
	}
	p.outboundTCP(c, r, cl, fixed)
}

// passthrough carries traffic to addresses outside the mesh unchanged.
func (p *Proxy) passthrough(c *net.TCPConn, dst netip.AddrPort) {
	defer func() { _ = c.Close() }()
	if isSelf(c, dst) {
		return // a connection to the proxy's own listener: never loop
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.ConnectTimeout)
	up, err := p.opts.Dial(ctx, "tcp", dst.String())
	cancel()
	if err != nil {
		return
	}
	// Outside the mesh: no peer identity.
	m := p.opts.Metrics.tcpOf(seriesKey{direction: "outbound", service: "passthrough", source: p.localWorkload(), destination: unknownWorkload})
	splice(c, up, m)
}

// portLabel is the destination_service label of inbound traffic: the application's port (its
// address would make a series per pod IP).
func portLabel(dst netip.AddrPort) string { return ":" + strconv.Itoa(int(dst.Port())) }

func isSelf(c *net.TCPConn, dst netip.AddrPort) bool {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	return ok && local.AddrPort() == dst
}

func (p *Proxy) outboundTCP(c *net.TCPConn, r *Route, cl *Cluster, fixed netip.AddrPort) {
	defer func() { _ = c.Close() }()
	var up *tls.Conn
	var h netip.AddrPort
	var err error
	if fixed.IsValid() {
		h = fixed
		up, err = p.dialMesh(context.Background(), fixed, cl)
	} else {
		up, h, err = p.pickAndDial(context.Background(), cl, r.Retries)
	}
	k := seriesKey{direction: "outbound", service: serviceOf(cl.Name), source: p.localWorkload(), destination: unknownWorkload}
	if err != nil {
		p.opts.Metrics.failed.WithLabelValues(k.labels()...).Inc() // no server answered: its identity is unknown
		p.opts.Log.Info("no upstream for a TCP connection", "cluster", cl.Name, "error", err.Error())
		return
	}
	p.balancer(cl.EDSName).Report(h, true, cl.Outlier)
	state := up.ConnectionState()
	k.destination = peerWorkload(&state)
	splice(c, up, p.opts.Metrics.tcpOf(k))
}

func (p *Proxy) handleInbound(c *net.TCPConn) {
	dst, err := p.opts.OriginalDst(c)
	if err != nil {
		_ = c.Close()
		return
	}
	cfg := p.cfg.Load()
	if cfg == nil || cfg.Inbound == nil {
		_ = c.Close() // no policy yet: nothing is allowed
		return
	}
	if isSelf(c, dst) {
		_ = c.Close() // sent to the inbound listener itself (its port is not captured): never loop
		return
	}
	var peer spiffeid.ID
	tlsCfg := tlsconfig.MTLSServerConfig(p.opts.SVID, p, func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if !p.cfg.Load().Inbound.Allows(id) {
			p.opts.Metrics.denied.WithLabelValues(id.TrustDomain().Name()).Inc()
			return fmt.Errorf("%s is not authorized by the mesh's policy", id)
		}
		peer = id
		return nil
	})
	tlsCfg = meshTLS(tlsCfg)
	tlsCfg.NextProtos = []string{wire.InboundHTTPALPN, wire.InboundTCPALPN}
	tc := tls.Server(c, tlsCfg)
	hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		p.opts.Metrics.handshakeFailures.Inc()
		p.opts.Log.Info("inbound mTLS handshake refused", "from", c.RemoteAddr().String(), "error", err.Error())
		_ = c.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == wire.InboundHTTPALPN {
		p.serveInboundHTTP(tc, dst, peer)
		return
	}
	if p.cfg.Load().Inbound.HTTPOnly(dst.Port()) {
		// A declared HTTP port: only the HTTP chain exists for it (Envoy would match no chain).
		p.opts.Metrics.handshakeFailures.Inc()
		p.opts.Log.Info("inbound opaque TCP to an HTTP-only port refused", "from", c.RemoteAddr().String(), "port", dst.Port(), "peer", peer.String())
		_ = tc.Close()
		return
	}
	defer func() { _ = tc.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.ConnectTimeout)
	app, err := p.opts.Dial(ctx, "tcp", dst.String())
	cancel()
	m := p.opts.Metrics.tcpOf(seriesKey{direction: "inbound", service: portLabel(dst), source: workloadOf(peer), destination: p.localWorkload()})
	if err != nil {
		m.failed.Inc()
		return
	}
	splice(tc, app, m)
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways until both directions end; a half-close (EOF) is passed on, an error
// (a reset) on either side closes both, as Envoy's tcp_proxy does: the other direction would
// otherwise wait for a peer that may never speak or close again.
func splice(down, up net.Conn, m tcpMetrics) {
	m.opened.Inc()
	defer func() { _ = up.Close() }()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn, bytes counter) {
		defer wg.Done()
		n, err := io.Copy(dst, src)
		bytes.Add(float64(n))
		if err != nil {
			_ = down.Close()
			_ = up.Close()
			return
		}
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go cp(up, down, m.sent)
	go cp(down, up, m.received)
	wg.Wait()
	m.closed.Inc()
}
