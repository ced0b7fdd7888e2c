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

package xdstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// spiffeEnv turns on SPIFFE bundle maps in gRPC (gRFC A87). gRPC reads it once, when its
// packages initialise, so TestMain runs this test binary again with it set.
const spiffeEnv = "GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE"

func TestMain(m *testing.M) {
	if os.Getenv(spiffeEnv) != "true" {
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, os.Args, append(os.Environ(), spiffeEnv+"=true"))
		}
		fmt.Fprintf(os.Stderr, "re-exec with %s=true: %v\n", spiffeEnv, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

const (
	target      = "xds:///echo.demo.svc.clusterset.local:8080"
	callTimeout = 2 * time.Second
	// waitFor bounds every wait; they all poll, and typically take milliseconds.
	waitFor = 20 * time.Second
)

var (
	tdA = spiffeid.RequireTrustDomainFromString("a.fleet")
	tdB = spiffeid.RequireTrustDomainFromString("b.fleet")
)

// pki is two members' CAs and the federated bundle map both hold.
type pki struct {
	issuers   map[spiffeid.TrustDomain]*trust.Issuer
	bundleMap []byte
}

func newPKI(t *testing.T) *pki {
	p := &pki{issuers: map[spiffeid.TrustDomain]*trust.Issuer{}}
	set := trust.NewBundleSet()
	for _, td := range []spiffeid.TrustDomain{tdA, tdB} {
		key, err := trust.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		ca, err := trust.SelfSign(td, key, time.Now(), 24*time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.issuers[td], err = trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		set.Put(trust.NewBundle(td, ca.Roots(), 1, 0))
	}
	var err error
	if p.bundleMap, err = set.MarshalBundleMap(); err != nil {
		t.Fatal(err)
	}
	return p
}

// workload writes an SVID for ns/sa in td and the bundle map, and returns the bootstrap of a
// workload in member cluster with that identity.
func (p *pki) workload(t *testing.T, ads string, td spiffeid.TrustDomain, cluster, node, ns, sa string) []byte {
	svid, err := p.issuers[td].NewSVID(trust.Workload{Namespace: ns, ServiceAccount: sa})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := xds.TLSFiles{
		CertificateFile:          filepath.Join(dir, "cert.pem"),
		PrivateKeyFile:           filepath.Join(dir, "key.pem"),
		SPIFFETrustBundleMapFile: filepath.Join(dir, "bundles.json"),
	}
	for path, data := range map[string][]byte{files.CertificateFile: certPEM, files.PrivateKeyFile: keyPEM, files.SPIFFETrustBundleMapFile: p.bundleMap} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := xds.Bootstrap(xds.BootstrapOptions{ServerURI: ads, NodeID: node, Cluster: cluster, Certificates: files})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// backend is an xDS-configured gRPC health server that can be told to fail every call with
// UNAVAILABLE, and remembers the SPIFFE ID of its last caller.
type backend struct {
	addr    string
	srv     *grpcxds.GRPCServer
	failing atomic.Bool
	caller  atomic.Value // string
}

func startBackend(t *testing.T, lis net.Listener, bootstrap []byte) *backend {
	b := &backend{addr: lis.Addr().String()}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	serving := make(chan struct{})
	var once atomic.Bool
	b.srv, err = grpcxds.NewGRPCServer(
		grpc.Creds(creds),
		grpcxds.BootstrapContentsForTesting(bootstrap),
		grpcxds.ServingModeCallback(func(_ net.Addr, args grpcxds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing && once.CompareAndSwap(false, true) {
				close(serving)
			}
		}),
		grpc.UnaryInterceptor(b.intercept),
	)
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(b.srv, health.NewServer())
	go func() { _ = b.srv.Serve(lis) }()
	t.Cleanup(b.srv.Stop)
	select {
	case <-serving:
	case <-time.After(waitFor):
		t.Fatalf("backend %s never got its server Listener", b.addr)
	}
	return b
}

func (b *backend) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && info.SPIFFEID != nil {
			b.caller.Store(info.SPIFFEID.String())
		}
	}
	if b.failing.Load() {
		return nil, status.Error(codes.Unavailable, "failing on purpose")
	}
	return h(ctx, req)
}

// client is a proxyless gRPC client of target with its own bootstrap.
type client struct{ health healthpb.HealthClient }

func newClient(t *testing.T, bootstrap []byte) *client {
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &client{health: healthpb.NewHealthClient(conn)}
}

// call returns the backend that answered and its SPIFFE ID.
func (c *client) call() (addr, id string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var p peer.Peer
	if _, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", "", err
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && info.SPIFFEID != nil {
		id = info.SPIFFEID.String()
	}
	return p.Addr.String(), id, nil
}

// eventuallyServedBy polls until a call is answered by want, then requires the next calls to
// be answered by it too; it returns how long that took and how many calls failed meanwhile.
func (c *client) eventuallyServedBy(t *testing.T, want *backend) (time.Duration, int) {
	t.Helper()
	start, failed := time.Now(), 0
	for {
		addr, _, err := c.call()
		if err == nil && addr == want.addr {
			break
		}
		if err != nil {
			failed++
		}
		if time.Since(start) > waitFor {
			t.Fatalf("calls still not answered by %s after %s (last: %s, %v)", want.addr, waitFor, addr, err)
		}
	}
	took := time.Since(start)
	for range 20 {
		if addr, _, err := c.call(); err != nil || addr != want.addr {
			t.Fatalf("after switching to %s, a call went to %q (%v)", want.addr, addr, err)
		}
	}
	return took, failed
}

// mcsSlice is the MCS EndpointSlice fleetmesh's federation writes for one source cluster.
func mcsSlice(cluster, region string, port int) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo-" + cluster, Labels: map[string]string{
			mcsv1beta1.LabelServiceName: "echo", mcsv1beta1.LabelSourceCluster: cluster, corev1.LabelTopologyRegion: region,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(port))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
}

func port(t *testing.T, lis net.Listener) int {
	_, p, _ := net.SplitHostPort(lis.Addr().String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestProxylessFailover: two members a (region r1) and b (r2), each its own trust domain,
// each serving echo.demo on 127.0.0.1. A client in a, configured only by what xds.Bootstrap
// and xds.Build produce, calls echo.demo.svc.clusterset.local:8080 over SPIFFE mTLS. Calls go
// to a's backend (priority 0); to b's (priority 1) when a's fails every call (outlier
// detection) and back when it recovers; to b's when a's stops. A workload of a namespace the
// policy does not allow is refused by RBAC.
func TestProxylessFailover(t *testing.T) {
	ads := Start(t)
	p := newPKI(t)
	lis0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	// Both members' agents build from the same ServiceImport and MCS slices.
	si := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo"},
		Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.Headless,
			Ports: []mcsv1beta1.ServicePort{{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolTCP}}},
	}
	eps := []*discoveryv1.EndpointSlice{mcsSlice("a", "r1", port(t, lis0)), mcsSlice("b", "r2", port(t, lis1))}
	policy := xds.Policy{
		Failover:      xds.Failover{ConsecutiveErrors: 2, Interval: 100 * time.Millisecond, BaseEjectionTime: 500 * time.Millisecond, Retries: 2},
		Authorization: xds.Authorization{AllowedNamespaces: []string{"demo"}},
	}
	snapshot := func(m xds.Member, federated string) *xds.Resources {
		r, err := xds.Build(xds.Input{
			Member: m, FederatedTrustDomains: []string{federated}, Policy: policy,
			Services: []xds.Service{xds.ImportedService(si, eps, m)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	memberA := xds.Member{Cluster: "a", Region: "r1", TrustDomain: tdA.Name()}
	memberB := xds.Member{Cluster: "b", Region: "r2", TrustDomain: tdB.Name()}
	ads.SetSnapshot(t, snapshot(memberA, tdB.Name()).Snapshot(), "backend-a", "client", "intruder")
	ads.SetSnapshot(t, snapshot(memberB, tdA.Name()).Snapshot(), "backend-b")

	backendA := startBackend(t, lis0, p.workload(t, ads.Addr, tdA, "a", "backend-a", "demo", "echo"))
	backendB := startBackend(t, lis1, p.workload(t, ads.Addr, tdB, "b", "backend-b", "demo", "echo"))
	c := newClient(t, p.workload(t, ads.Addr, tdA, "a", "client", "demo", "client"))

	t.Run("priority 0 is the member's own backend, over SPIFFE mTLS", func(t *testing.T) {
		took, _ := c.eventuallyServedBy(t, backendA)
		t.Logf("first call answered by a after %s", took)
		if _, id, _ := c.call(); id != "spiffe://a.fleet/ns/demo/sa/echo" {
			t.Errorf("server identity %q", id)
		}
		if got := backendA.caller.Load(); got != "spiffe://a.fleet/ns/demo/sa/client" {
			t.Errorf("backend a saw caller %v", got)
		}
	})

	t.Run("outlier detection fails a failing member over", func(t *testing.T) {
		backendA.failing.Store(true)
		took, failed := c.eventuallyServedBy(t, backendB)
		t.Logf("failed over to b %s after a started failing (%d calls failed meanwhile)", took, failed)
		if got := backendB.caller.Load(); got != "spiffe://a.fleet/ns/demo/sa/client" {
			t.Errorf("backend b (trust domain b.fleet) saw caller %v", got)
		}
	})

	t.Run("the member's backend is back after the ejection time", func(t *testing.T) {
		backendA.failing.Store(false)
		took, _ := c.eventuallyServedBy(t, backendA)
		t.Logf("back on a after %s", took)
	})

	t.Run("a stopped backend fails over to the next priority", func(t *testing.T) {
		backendA.srv.Stop()
		took, failed := c.eventuallyServedBy(t, backendB)
		t.Logf("failed over to b %s after a stopped (%d calls failed meanwhile)", took, failed)
	})

	t.Run("RBAC refuses a namespace the policy does not allow", func(t *testing.T) {
		intruder := newClient(t, p.workload(t, ads.Addr, tdA, "a", "intruder", "other", "client"))
		deadline := time.Now().Add(waitFor)
		for {
			_, _, err := intruder.call()
			if err == nil {
				t.Fatal("a caller from namespace other was served")
			}
			if status.Code(err) == codes.PermissionDenied {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("never refused with PermissionDenied: %v", err)
			}
		}
	})

	if nacks := ads.NACKs(); len(nacks) > 0 {
		t.Errorf("gRPC rejected resources: %q", nacks)
	}
}

// TestBootstrapParsesWithGRPC hands both bootstrap flavours to gRPC's own parser: without
// GRPC_XDS_BOOTSTRAP* set, an xDS server only starts on contents that parse.
func TestBootstrapParsesWithGRPC(t *testing.T) {
	if os.Getenv("GRPC_XDS_BOOTSTRAP") != "" || os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") != "" {
		t.Skip("a bootstrap from the environment would stand in for a broken one")
	}
	dir := t.TempDir()
	files := xds.TLSFiles{
		CertificateFile: filepath.Join(dir, "cert.pem"), PrivateKeyFile: filepath.Join(dir, "key.pem"),
		SPIFFETrustBundleMapFile: filepath.Join(dir, "bundles.json"),
	}
	for name, serverTLS := range map[string]*xds.TLSFiles{"insecure": nil, "tls": &files} {
		b, err := xds.Bootstrap(xds.BootstrapOptions{ServerURI: "127.0.0.1:1", NodeID: "n", Certificates: files, ServerTLS: serverTLS})
		if err != nil {
			t.Fatal(err)
		}
		s, err := grpcxds.NewGRPCServer(grpcxds.BootstrapContentsForTesting(b))
		if err != nil {
			t.Errorf("%s: gRPC refused the bootstrap: %v\n%s", name, err, b)
			continue
		}
		s.Stop()
	}
	if _, err := grpcxds.NewGRPCServer(grpcxds.BootstrapContentsForTesting([]byte(`{"xds_servers": []}`))); err == nil {
		t.Error("gRPC accepted a bootstrap without servers: this test proves nothing")
	}
}
