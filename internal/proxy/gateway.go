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
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// The east-west gateway role: connections from other networks arrive on wire.GatewayPort, each
// the start of an mTLS session between a client sidecar and a server sidecar of this member.
// The gateway reads the TLS ClientHello's server name (wire.GatewaySNI), looks it up in its
// config (Config.Gateway, from the agent) and passes the connection, the ClientHello first and
// everything after unchanged, to one of the member's own endpoints of that service port. It
// terminates nothing and holds no workload's key: the two sidecars authenticate each other
// through it. Plaintext, a server name it does not serve, and a ClientHello that does not come
// in time are closed.

// gatewayHelloTimeout is the default bound (Options.HelloTimeout) of the wait for a connection's ClientHello; gatewayHelloMax its size
// (a ClientHello with every extension is a few KiB; TLS caps a handshake message at 16 MiB,
// which the gateway never buffers).
const (
	gatewayHelloTimeout = 5 * time.Second
	gatewayHelloMax     = 16 << 10
)

// errHelloRead stops the TLS server once it has read the ClientHello.
var errHelloRead = errors.New("ClientHello read")

// ServeGateway accepts connections from other networks until ln closes. At most
// Options.MaxConnections are carried at once; beyond them a connection is closed at accept, so
// a flood holds a bounded number of goroutines, sockets and buffers.
func (p *Proxy) ServeGateway(ln net.Listener) error {
	return serve(ln, func(c *net.TCPConn) {
		if !p.gatewayConns.enter(p.opts.MaxConnections) {
			p.opts.Metrics.gatewayRefused.WithLabelValues("overflow").Inc()
			_ = c.Close()
			return
		}
		defer p.gatewayConns.leave()
		p.handleGateway(c)
	})
}

func (p *Proxy) handleGateway(c *net.TCPConn) {
	defer func() { _ = c.Close() }()
	hello, sni, err := readClientHello(c, p.opts.HelloTimeout)
	if err != nil {
		p.opts.Metrics.gatewayRefused.WithLabelValues("not_tls").Inc()
		p.opts.Log.V(1).Info("gateway connection without a TLS ClientHello", "from", c.RemoteAddr().String(), "error", err.Error())
		return
	}
	cfg := p.cfg.Load()
	var r *Route
	if cfg != nil {
		r = cfg.Gateway[sni]
	}
	var cl *Cluster
	if r != nil {
		cl = cfg.Clusters[r.Cluster]
	}
	if cl == nil || !cl.Plain {
		p.opts.Metrics.gatewayRefused.WithLabelValues("unknown_server_name").Inc()
		p.opts.Log.Info("gateway connection for a server name it does not serve", "from", c.RemoteAddr().String(), "serverName", sni)
		return
	}
	up, h, err := p.pickAndDialPlain(cl, r.Retries)
	if err != nil {
		p.opts.Metrics.gatewayRefused.WithLabelValues("no_upstream").Inc()
		p.opts.Log.Info("no upstream for a gateway connection", "cluster", cl.Name, "error", err.Error())
		return
	}
	p.balancer(cl.EDSName).Report(h, true, cl.Outlier)
	if _, err := up.Write(hello); err != nil {
		_ = up.Close()
		return
	}
	splice(c, up, p.opts.Metrics.tcp("gateway", cl.Name))
}

// pickAndDialPlain is pickAndDial for a gateway's cluster: a TCP connection, no handshake (the
// client sidecar's mTLS goes through it).
func (p *Proxy) pickAndDialPlain(c *Cluster, retries int) (net.Conn, netip.AddrPort, error) {
	b := p.balancer(c.EDSName)
	if b == nil {
		return nil, netip.AddrPort{}, errors.New("the cluster has no endpoints")
	}
	tried := map[netip.AddrPort]bool{}
	last := errors.New("the cluster has no healthy endpoint")
	for range retries + 1 {
		h, ok := b.Pick(tried)
		if !ok {
			break
		}
		tried[h] = true
		if !b.connecting.enter(p.opts.MaxConnecting) {
			return nil, netip.AddrPort{}, errOverflow
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.ConnectTimeout)
		conn, err := p.opts.Dial(ctx, "tcp", h.String())
		cancel()
		b.connecting.leave()
		if err == nil {
			return conn, h, nil
		}
		b.Report(h, false, c.Outlier)
		last = err
	}
	return nil, netip.AddrPort{}, last
}

// readClientHello reads a connection's first TLS handshake message and returns the bytes read
// (to replay upstream) and the server name it asks for. Go's TLS server parses it: it reads
// through a recorder and is stopped, before it writes anything, as soon as it has the hello.
func readClientHello(c net.Conn, timeout time.Duration) ([]byte, string, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, "", err
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	rec := &recordingConn{r: io.LimitReader(c, gatewayHelloMax)}
	var sni string
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errHelloRead
	}}).Handshake()
	if !errors.Is(err, errHelloRead) {
		if err == nil {
			err = errors.New("handshake completed without a ClientHello") // cannot happen
		}
		return nil, "", err
	}
	if sni == "" {
		return nil, "", errors.New("the ClientHello names no server (SNI)")
	}
	return rec.buf.Bytes(), sni, nil
}

// recordingConn is a read-only net.Conn over r that keeps what it read; writes (the TLS server's
// alert) are dropped.
type recordingConn struct {
	net.Conn // nil: only Read, Write and the deadlines are used
	r        io.Reader
	buf      bytes.Buffer
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.buf.Write(b[:n])
	return n, err
}
func (c *recordingConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *recordingConn) Close() error                     { return nil }
func (c *recordingConn) SetDeadline(time.Time) error      { return nil }
func (c *recordingConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }
func (c *recordingConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *recordingConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// GatewayOptions are the flags of `proxy gateway`.
type GatewayOptions struct {
	agentOptions
	// Port takes connections from other networks.
	Port int
	// MaxConnections bounds the connections carried at once.
	MaxConnections int
}

// ParseGatewayFlags parses `proxy gateway`'s flags (args exclude the subcommand) and the pod's
// environment.
func ParseGatewayFlags(args []string) (GatewayOptions, error) {
	var o GatewayOptions
	fs := flag.NewFlagSet("proxy gateway", flag.ContinueOnError)
	o.bindAgentFlags(fs)
	fs.IntVar(&o.Port, "port", wire.GatewayPort, "port of the connections from other networks")
	fs.IntVar(&o.MaxConnections, "max-connections", 16384, "connections carried at once; more are closed at accept")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.MaxConnections < 1 {
		return o, fmt.Errorf("--max-connections %d: must be at least 1", o.MaxConnections)
	}
	return o, o.checkAgentFlags(map[string]string{}, map[string]int{"port": o.Port})
}

// RunGateway runs an east-west gateway until ctx ends: it follows its agent's gateway resource
// set over ADS and carries connections from other networks to the member's own endpoints. It
// has no SVID: it authenticates the agent by the member's roots and terminates no TLS.
func RunGateway(ctx context.Context, o GatewayOptions, log logr.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)
	p := New(Options{Metrics: metrics, Log: log, MaxConnections: o.MaxConnections})
	conn, node, err := o.connect(wire.ProxyRoleGateway)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ads := &ADS{Conn: conn, Node: node, Apply: p.SetConfig, Log: log.WithName("xds"), OnNACK: func(typeURL string, _ error) { metrics.NACK(typeURL) }}
	go func() { _ = ads.Run(ctx) }()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(o.BindAddress, strconv.Itoa(o.Port)))
	if err != nil {
		return fmt.Errorf("gateway listener: %w", err)
	}
	go func() { _ = p.ServeGateway(ln) }()
	servers, errs := o.serveAdmin(reg, p.Ready, "waiting for the agent's config", nil)
	log.Info("gateway started", "node", node.GetId(), "listen", ln.Addr().String(), "xds", o.XDSAddress)
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	_ = ln.Close()
	for _, s := range servers {
		_ = s.Close()
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}
