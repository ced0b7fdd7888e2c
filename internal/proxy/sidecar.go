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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/identityclient"
	"github.com/fleetmesh/fleetmesh/internal/proxy/capture"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// SidecarOptions are the flags of `proxy sidecar`.
type SidecarOptions struct {
	agentOptions
	IdentityAddress           string
	TokenFile                 string
	WorkDir                   string
	OutboundPort, InboundPort int
	// DNSPort answers the pod's captured DNS (0: off).
	DNSPort int
	// Delta selects incremental ADS.
	Delta bool
	// AccessLog writes a JSON line per HTTP request to stdout.
	AccessLog bool
}

// ParseSidecarFlags parses `proxy sidecar`'s flags (args exclude the subcommand) and the pod's
// environment.
func ParseSidecarFlags(args []string) (SidecarOptions, error) {
	var o SidecarOptions
	fs := flag.NewFlagSet("proxy sidecar", flag.ContinueOnError)
	o.bindAgentFlags(fs)
	fs.StringVar(&o.IdentityAddress, "identity-address", "", "the member agent's identity API address, host:port")
	fs.StringVar(&o.TokenFile, "token-file", "", "the pod's ServiceAccount token with audience "+identityv1.Audience)
	fs.StringVar(&o.WorkDir, "work-dir", "", "where the SVID is written")
	fs.IntVar(&o.OutboundPort, "outbound-port", wire.OutboundPort, "port of the captured outbound traffic")
	fs.IntVar(&o.InboundPort, "inbound-port", wire.InboundPort, "port of the captured inbound traffic")
	fs.BoolVar(&o.AccessLog, "access-log", false, "write a JSON line per HTTP request to stdout")
	fs.BoolVar(&o.Delta, "xds-delta", false, "use incremental (delta) ADS instead of the state of the world")
	fs.IntVar(&o.DNSPort, "dns-port", 15053, "port of the captured DNS queries (0: no DNS answerer)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	return o, o.checkAgentFlags(map[string]string{"identity-address": o.IdentityAddress, "token-file": o.TokenFile, "work-dir": o.WorkDir},
		map[string]int{"outbound-port": o.OutboundPort, "inbound-port": o.InboundPort})
}

// appProbeHandler answers the kubelet's rewritten probes (wire.AppProbePrefix) by sending
// each to the application on the pod's loopback: its answer is the probe's.
type appProbeHandler struct {
	probes wire.AppProbers
	client *http.Client
}

func appProbers(env string) (*appProbeHandler, error) {
	h := &appProbeHandler{probes: wire.AppProbers{}, client: &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}} //nolint:gosec // the kubelet does not verify probe certificates either
	if env == "" {
		return h, nil
	}
	if err := json.Unmarshal([]byte(env), &h.probes); err != nil {
		return nil, fmt.Errorf("%s: %w", wire.AppProbersEnv, err)
	}
	return h, nil
}

func (h *appProbeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := h.probes[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Port)))
	switch {
	case p.TCP:
		c, err := net.DialTimeout("tcp", addr, h.client.Timeout)
		if err != nil {
			http.Error(w, "application probe: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_ = c.Close()
		return
	case p.GRPC:
		if err := grpcHealthCheck(r.Context(), addr, p.Service, h.client.Timeout); err != nil {
			http.Error(w, "application probe: "+err.Error(), http.StatusServiceUnavailable)
		}
		return
	}
	scheme := "http"
	if strings.EqualFold(p.Scheme, "https") {
		scheme = "https"
	}
	resp, err := h.client.Get(scheme + "://" + addr + p.Path)
	if err != nil {
		http.Error(w, "application probe: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_ = resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
}

// grpcHealthCheck is the kubelet's gRPC probe: grpc.health.v1.Health/Check of service, SERVING.
func grpcHealthCheck(ctx context.Context, addr, service string, timeout time.Duration) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("gRPC health of %q: %s", service, resp.GetStatus())
	}
	return nil
}

// svidHolder is the SVID the identity client last wrote.
type svidHolder struct{ p atomic.Pointer[x509svid.SVID] }

func (h *svidHolder) GetX509SVID() (*x509svid.SVID, error) {
	if s := h.p.Load(); s != nil {
		return s, nil
	}
	return nil, errors.New("no SVID yet")
}

// fileRoots reads the member's roots again at every use: the agent's TLS is checked rarely and
// the file changes when the member's CA rotates.
type fileRoots struct {
	td   spiffeid.TrustDomain
	path string
}

func (f fileRoots) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	src, err := identityclient.LoadTrust(f.td, f.path)
	if err != nil {
		return nil, err
	}
	return src.GetX509BundleForTrustDomain(td)
}

// RunSidecar runs the sidecar until ctx ends: it fetches and renews the pod's SVID, follows its
// agent's proxy resource set over ADS, and carries the captured traffic.
func RunSidecar(ctx context.Context, o SidecarOptions, log logr.Logger) error {
	td := spiffeid.RequireTrustDomainFromString(o.TrustDomain)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)

	holder := &svidHolder{}
	load := func() {
		s, err := x509svid.Load(filepath.Join(o.WorkDir, identityclient.CertFile), filepath.Join(o.WorkDir, identityclient.KeyFile))
		if err != nil {
			log.Error(err, "load the SVID just written")
			return
		}
		holder.p.Store(s)
	}
	idDone := make(chan error, 1)
	go func() {
		idDone <- identityclient.Run(ctx, identityclient.Options{
			Address: o.IdentityAddress, TrustDomain: td, TokenFile: o.TokenFile, TrustFile: o.TrustFile, Dir: o.WorkDir,
			Log: log.WithName("identity"),
			OnFetch: func(r *identityclient.Result, err error) {
				if err != nil {
					log.Info("SVID fetch failed; retrying", "error", err.Error())
					return
				}
				load()
				log.Info("SVID", "id", r.ID.String(), "notAfter", r.NotAfter, "renewAt", r.RenewAt)
			},
		})
	}()

	opts := Options{SVID: holder, OriginalDst: capture.OriginalDst, Metrics: metrics, Log: log}
	if o.AccessLog {
		opts.AccessLog = os.Stdout
	}
	p := New(opts)

	conn, node, err := o.connect(wire.ProxyRoleSidecar)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ads := &ADS{Conn: conn, Node: node, Apply: p.SetConfig, Log: log.WithName("xds"), Delta: o.Delta, OnNACK: func(typeURL string, _ error) { metrics.NACK(typeURL) }}
	go func() { _ = ads.Run(ctx) }()

	lc := net.ListenConfig{}
	out, err := lc.Listen(ctx, "tcp", ":"+strconv.Itoa(o.OutboundPort))
	if err != nil {
		return fmt.Errorf("outbound listener: %w", err)
	}
	in, err := lc.Listen(ctx, "tcp", ":"+strconv.Itoa(o.InboundPort))
	if err != nil {
		return fmt.Errorf("inbound listener: %w", err)
	}
	go func() { _ = p.ServeOutbound(out) }()
	go func() { _ = p.ServeInbound(in) }()
	if o.DNSPort != 0 {
		// On loopback: the capture redirects to 127.0.0.1, and only a reply from the address the
		// query was redirected to is mapped back to the resolver the application asked.
		dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.DNSPort))
		pc, err := lc.ListenPacket(ctx, "udp", dnsAddr)
		if err != nil {
			return fmt.Errorf("DNS listener: %w", err)
		}
		defer func() { _ = pc.Close() }()
		tl, err := lc.Listen(ctx, "tcp", dnsAddr)
		if err != nil {
			return fmt.Errorf("DNS listener: %w", err)
		}
		defer func() { _ = tl.Close() }()
		resolv, _ := os.ReadFile("/etc/resolv.conf")
		dns := &DNS{Proxy: p, Upstream: UpstreamFromResolvConf(string(resolv))}
		go func() { _ = dns.ServeUDP(pc) }()
		go func() { _ = dns.ServeTCP(tl) }()
	}

	probers, err := appProbers(os.Getenv(wire.AppProbersEnv))
	if err != nil {
		return err
	}
	servers, errs := o.serveAdmin(reg, func() bool { return p.Ready() }, "waiting for the SVID and the agent's config", probers)
	log.Info("sidecar started", "node", node.GetId(), "outbound", out.Addr().String(), "inbound", in.Addr().String(), "xds", o.XDSAddress)
	select {
	case <-ctx.Done():
	case err = <-errs:
	case err = <-idDone:
	}
	_ = out.Close()
	_ = in.Close()
	for _, s := range servers {
		_ = s.Close()
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// agentOptions are what every proxy role shares: its agent, its pod and its admin ports.
type agentOptions struct {
	XDSAddress, TrustDomain, ClusterID, TrustFile string
	AdminPort, MetricsPort                        int
	// BindAddress is the host the admin, metrics and (gateway) listeners bind to; empty: all.
	BindAddress string
	// Pod identity, from the downward API (POD_NAME, POD_NAMESPACE, POD_IP, SERVICE_ACCOUNT).
	PodName, PodNamespace, PodIP, ServiceAccount string
}

// connect opens the xDS connection to the agent, which must present the agent's SPIFFE ID
// under the member's roots, and names the node of a proxy of role.
func (o agentOptions) connect(role string) (*grpc.ClientConn, *corev3.Node, error) {
	td, err := spiffeid.TrustDomainFromString(o.TrustDomain)
	if err != nil {
		return nil, nil, err
	}
	agentID, err := spiffeid.FromSegments(td, "ns", identityv1.AgentNamespace, "sa", identityv1.AgentServiceAccount)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(o.XDSAddress, grpc.WithTransportCredentials(credentials.NewTLS(
		tlsconfig.TLSClientConfig(fileRoots{td: td, path: o.TrustFile}, tlsconfig.AuthorizeID(agentID)))))
	if err != nil {
		return nil, nil, fmt.Errorf("xDS client for %s: %w", o.XDSAddress, err)
	}
	md, err := structpb.NewStruct(map[string]any{
		wire.ProxyMetadataKey: role, "NAMESPACE": o.PodNamespace, "SERVICE_ACCOUNT": o.ServiceAccount, "POD_NAME": o.PodName,
	})
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, &corev3.Node{
		Id:       fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", role, o.PodIP, o.PodName, o.PodNamespace, o.PodNamespace),
		Cluster:  o.ClusterID,
		Metadata: md,
	}, nil
}

// serveAdmin serves /healthz/ready (and probers, if any, under wire.AppProbePrefix) on the
// admin port and reg's /metrics on the metrics port; errs receives the first to fail.
func (o agentOptions) serveAdmin(reg *prometheus.Registry, ready func() bool, waiting string, probers http.Handler) ([]*http.Server, <-chan error) {
	admin := http.NewServeMux()
	admin.HandleFunc("/healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: "+waiting, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if probers != nil {
		admin.Handle(wire.AppProbePrefix, probers)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	servers := []*http.Server{
		{Addr: net.JoinHostPort(o.BindAddress, strconv.Itoa(o.AdminPort)), Handler: admin, ReadHeaderTimeout: 5 * time.Second},
		{Addr: net.JoinHostPort(o.BindAddress, strconv.Itoa(o.MetricsPort)), Handler: mux, ReadHeaderTimeout: 5 * time.Second},
	}
	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errs <- s.ListenAndServe() }()
	}
	return servers, errs
}

// bindAgentFlags registers the shared flags on fs and reads the pod's environment.
func (o *agentOptions) bindAgentFlags(fs *flag.FlagSet) {
	*o = agentOptions{PodName: os.Getenv("POD_NAME"), PodNamespace: os.Getenv("POD_NAMESPACE"), PodIP: os.Getenv("POD_IP"), ServiceAccount: os.Getenv("SERVICE_ACCOUNT")}
	fs.StringVar(&o.XDSAddress, "xds-address", "", "the member agent's xDS address, host:port")
	fs.StringVar(&o.TrustDomain, "trust-domain", "", "the member's SPIFFE trust domain")
	fs.StringVar(&o.ClusterID, "cluster-id", "", "the member's cluster ID")
	fs.StringVar(&o.TrustFile, "trust-file", "", "the member's roots (bundle document), to authenticate the agent")
	fs.IntVar(&o.AdminPort, "admin-port", 15021, "port of /healthz/ready")
	fs.IntVar(&o.MetricsPort, "metrics-port", 15090, "port of /metrics")
	fs.StringVar(&o.BindAddress, "bind-address", "", "IP address the admin, metrics and gateway listeners bind to (default: all)")
}

// checkAgentFlags checks the shared flags, and the required ones among extra, after parsing.
func (o agentOptions) checkAgentFlags(required map[string]string, ports map[string]int) error {
	required["xds-address"], required["trust-domain"], required["trust-file"] = o.XDSAddress, o.TrustDomain, o.TrustFile
	for flagName, v := range required {
		if v == "" {
			return fmt.Errorf("--%s is required", flagName)
		}
	}
	if o.BindAddress != "" && net.ParseIP(o.BindAddress) == nil {
		return fmt.Errorf("--bind-address %q: must be an IP address", o.BindAddress)
	}
	if _, err := spiffeid.TrustDomainFromString(o.TrustDomain); err != nil {
		return fmt.Errorf("--trust-domain %q: %w", o.TrustDomain, err)
	}
	ports["admin-port"], ports["metrics-port"] = o.AdminPort, o.MetricsPort
	for name, p := range ports {
		if p < 1 || p > 65535 {
			return fmt.Errorf("--%s %d: must be 1-65535", name, p)
		}
	}
	return nil
}
