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
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity"
	"github.com/fleetmesh/fleetmesh/internal/netnstest"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// The real-process benchmark runs in a network namespace of its own, as the capture test does:
// the test binary re-executes itself under `unshare --net` with processNetNSEnv set, so the
// capture rules that `proxy init` writes, the sidecar process and everything this test serves
// live in a fresh "pod" namespace that vanishes with the process. Nothing is done in the
// machine's own namespace.
const (
	processNetNSEnv = "FLEETMESH_PROXY_BENCH_NETNS" // the launcher's namespace: this process is in the benchmark's
	processBinEnv   = "FLEETMESH_PROXY_BENCH_BIN"   // the cmd/proxy binary the launcher built
	processPodIP    = "10.99.1.2"                   // the pod's address (a veth in the namespace)
	processVIPs     = "10.96.0.0/16"                // the clusterset IPs, routed through the veth and captured
	processUID      = 1337                          // the proxy's uid, which the capture exempts
)

// TestBenchmarkSidecarProcess (FLEETMESH_BENCH=1) measures a real sidecar: it builds cmd/proxy
// as the image does (FLEETMESH_BENCH_PROXY_BIN names another build to measure instead),
// writes a pod's capture rules with `proxy init`, and starts `proxy sidecar` as a process (uid
// 1337) against this process's identity API and go-control-plane ADS server (both over TLS with
// the agent's SVID), which serve it 100 imported services of 9 endpoints each. Once the sidecar
// is ready it carries 1,000 HTTP/1.1 requests/s for 10 s, captured from this process (uid 0) to
// one service's clusterset IP and sent over mTLS HTTP/2 to a server sidecar in this process.
// Then it reads the process's VmRSS from /proc/<pid>/status and its CPU from /proc/<pid>/stat.
func TestBenchmarkSidecarProcess(t *testing.T) {
	if os.Getenv("FLEETMESH_BENCH") == "" {
		t.Skip("set FLEETMESH_BENCH=1 (make bench) to run the sidecar benchmark")
	}
	if inside, out := netnstest.Run(t, netnstest.Options{Env: processNetNSEnv, Tools: []string{"ip"}, Prepare: buildProxy}); !inside {
		for line := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(line, "proxy:") {
				fmt.Println(line)
			}
		}
		return
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "fm-pod", "type", "veth", "peer", "name", "fm-node"},
		{"addr", "add", processPodIP + "/24", "dev", "fm-pod"},
		{"link", "set", "fm-pod", "up"},
		{"link", "set", "fm-node", "up"},
		{"route", "add", processVIPs, "dev", "fm-pod"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	bin := os.Getenv(processBinEnv)
	if out, err := exec.Command(bin, "init").CombinedOutput(); err != nil {
		t.Fatalf("proxy init: %v: %s", err, out)
	}

	const (
		rate     = 1000
		conns    = 16
		duration = 10 * time.Second
		services = 100
	)
	f := newFixture(t)
	body := bytes.Repeat([]byte("x"), 1024)
	srv := serveBody(t, body)
	in := f.serverSidecar(f.b, "b", "demo", srv.Addr().(*net.TCPAddr).AddrPort())

	// Member a's agent: the identity API and xDS over TLS with the agent's SVID.
	agentSVID := staticSVID{f.a.svid(t, identity.AgentWorkload.Namespace, identity.AgentWorkload.ServiceAccount)}
	bundleMap, err := trust.NewBundleSet(trust.NewBundle(f.a.ca.TrustDomain(), f.a.ca.Roots(), 1, time.Minute)).MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := identity.NewServer(identity.Options{Signer: f.a.iss, Reviewer: tokenReviewer{}, BundleMap: func() []byte { return bundleMap }})
	if err != nil {
		t.Fatal(err)
	}
	idGRPC := identity.NewGRPCServer(ids, agentSVID)
	idL := listen(t)
	go func() { _ = idGRPC.Serve(idL) }()
	t.Cleanup(idGRPC.Stop)
	xdsGRPC := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsconfig.TLSServerConfig(agentSVID))))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(xdsGRPC, serverv3.NewServer(context.Background(), f.snapshots, nil))
	xdsL := listen(t)
	go func() { _ = xdsGRPC.Serve(xdsL) }()
	t.Cleanup(xdsGRPC.Stop)

	// 100 imported services: echo at 10.96.0.1 served by b's sidecar, the others 9 endpoints each
	// in three members (addresses nothing is dialled at).
	input := f.clientInput("http", xds.Failover{Retries: 2}, endpointsAt("b", "r1", "http", in))
	input.Services[0].IPs = []string{"10.96.0.1"}
	for i := 1; i < services; i++ {
		svc := xds.Service{Namespace: "demo", Name: fmt.Sprintf("svc-%d", i), Scope: xds.ClusterSet, IPs: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			Ports: []xds.Port{{Name: "http", Port: 8080}}}
		for m, cluster := range []string{"a", "b", "c"} {
			set := xds.EndpointSet{Cluster: cluster, Region: "r" + strconv.Itoa(m+1), Ports: []xds.Port{{Name: "http", Port: 8080}}}
			for e := range 3 {
				set.Endpoints = append(set.Endpoints, xds.Endpoint{Address: fmt.Sprintf("10.244.%d.%d", m+1, (i*3+e)%250+1), Ready: true})
			}
			svc.Endpoints = append(svc.Endpoints, set)
		}
		input.Services = append(input.Services, svc)
	}
	const pod, ns, sa = "client-0", "demo", "client"
	f.setSnapshot(fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", processPodIP, pod, ns, ns), input)

	// The pod's files: its token, the member's roots and the SVID's directory, the proxy's own.
	dir, err := os.MkdirTemp("", "fleetmesh-proxy-pod-") // not t.TempDir: its parent is root's alone
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil { //nolint:gosec // read by the proxy's uid, in the benchmark's namespace
			t.Fatal(err)
		}
		return path
	}
	token := write("token", "client-token\n")
	roots := write("roots.pem", string(trust.EncodeCertificatesPEM(f.a.ca.Roots())))
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, processUID, processUID); err != nil {
		t.Fatal(err)
	}

	var logs lockedBuffer
	cmd := exec.Command(bin, "sidecar", "--xds-address", xdsL.Addr().String(), "--identity-address", idL.Addr().String(),
		"--trust-domain", "a.fleet", "--cluster-id", "a", "--trust-file", roots, "--token-file", token, "--work-dir", work)
	// The pod's environment only: the runtime's defaults are the binary's own, whatever GOGC
	// or GOMEMLIMIT this test runs with.
	// FLEETMESH_BENCH_PROXY_ENV adds variables (space-separated, e.g. "GOGC=50 GOMAXPROCS=1")
	// to compare runtime settings.
	cmd.Env = append([]string{"POD_NAME=" + pod, "POD_NAMESPACE=" + ns, "POD_IP=" + processPodIP, "SERVICE_ACCOUNT=" + sa},
		strings.Fields(os.Getenv("FLEETMESH_BENCH_PROXY_ENV"))...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: processUID, Gid: processUID}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			t.Logf("the sidecar stopped: %v", err)
		case <-time.After(10 * time.Second): // bounds the cleanup, not a synchronisation
			_ = cmd.Process.Kill()
			t.Logf("the sidecar did not stop on SIGTERM within 10 s, killed: %v", <-exited)
		}
		if t.Failed() {
			t.Logf("the sidecar's log:\n%s", logs.String())
		}
	})

	hc := &http.Client{Timeout: 5 * time.Second}
	ready := func(url string) error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	eventually(t, "the sidecar ready (SVID and config)", func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("the sidecar exited: %v\n%s", err, logs.String())
		default:
		}
		return ready("http://127.0.0.1:15021/healthz/ready")
	})
	// The last service is in its config: its DNS answers the name (a query of its own).
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", "127.0.0.1:15053")
	}}
	last := fmt.Sprintf("svc-%d.demo.svc.clusterset.local", services-1)
	eventually(t, "all services configured", func() error {
		ips, err := resolver.LookupHost(context.Background(), last)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("10.96.%d.%d", (services-1)/250, (services-1)%250+1); len(ips) != 1 || ips[0] != want {
			return fmt.Errorf("%s: %v, want %s", last, ips, want)
		}
		return nil
	})
	url := "http://10.96.0.1:8080/"
	eventually(t, "a request through the capture and both sidecars", func() error {
		resp, err := hc.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			return err
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
			return fmt.Errorf("status %d, %d bytes", resp.StatusCode, len(got))
		}
		return nil
	})
	configured := procStatus(t, cmd.Process.Pid)

	cpu0, switches0 := procCPU(t, cmd.Process.Pid), procSwitches(t, cmd.Process.Pid)
	lat := openLoop(t, url, body, rate, conns, duration)
	cores := (procCPU(t, cmd.Process.Pid) - cpu0).Seconds() / duration.Seconds() * (1000 / float64(rate))
	switches := float64(procSwitches(t, cmd.Process.Pid)-switches0) / float64(len(lat))
	after := procStatus(t, cmd.Process.Pid)
	gostats := scrape(t, "http://127.0.0.1:15090/metrics", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
		"go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_goroutines", "go_gc_duration_seconds_count")

	mib := func(kb int) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
	fmt.Printf("\nproxy: real sidecar process (cmd/proxy as uid %d, captured by `proxy init`'s rules) with %d imported services (9 endpoints each), %d cores:\n",
		processUID, services, runtime.NumCPU())
	fmt.Printf("proxy:   configured: VmRSS %s (RssAnon %s, RssFile %s)\n", mib(configured["VmRSS"]), mib(configured["RssAnon"]), mib(configured["RssFile"]))
	fmt.Printf("proxy:   after %d requests at %d req/s over %d connections: VmRSS %s (RssAnon %s, RssFile %s), VmHWM %s (target RSS <= 20 MB = %.1f MiB)\n",
		len(lat), rate, conns, mib(after["VmRSS"]), mib(after["RssAnon"]), mib(after["RssFile"]), mib(after["VmHWM"]), 20e6/(1<<20))
	fmt.Printf("proxy:   its Go runtime: heap in use %.1f MiB, idle %.1f MiB (%.1f MiB of it released), stacks %.1f MiB, from the OS %.1f MiB; %.0f goroutines, %.0f GCs\n",
		gostats[0]/(1<<20), gostats[1]/(1<<20), gostats[2]/(1<<20), gostats[3]/(1<<20), gostats[4]/(1<<20), gostats[5], gostats[6])
	fmt.Printf("proxy:   its CPU %.3f cores per 1,000 req/s (the client sidecar process alone; target <= 0.1), %.1f context switches of its threads per request\n", cores, switches)
	fmt.Printf("proxy:   latency through it and the in-process server sidecar p50 %s p90 %s p99 %s\n", pctl(lat, 50), pctl(lat, 90), pctl(lat, 99))

	// The same binary as an east-west gateway of member a exporting the 100 services (their
	// endpoints made a's own), configured by the same ADS server.
	gwIn := input
	gwIn.Member = xds.Member{Cluster: "a", Region: "r1", TrustDomain: "a.fleet"}
	gwIn.Services = nil
	for _, svc := range input.Services {
		svc.Endpoints = []xds.EndpointSet{{Cluster: "a", Region: "r1", Ports: svc.Ports, Endpoints: []xds.Endpoint{{Address: "10.244.1.9", Ready: true}}}}
		gwIn.Services = append(gwIn.Services, svc)
	}
	const gwPod, gwNS = "gateway-0", "fleetmesh-system"
	f.setSnapshotOf(fmt.Sprintf("gateway~127.0.0.1~%s.%s~%s.svc.cluster.local", gwPod, gwNS, gwNS), gwIn, xds.BuildGateway)
	var gwLogs lockedBuffer
	gw := exec.Command(bin, "gateway", "--xds-address", xdsL.Addr().String(), "--trust-domain", "a.fleet", "--cluster-id", "a",
		"--trust-file", roots, "--bind-address", "127.0.0.1", "--admin-port", "15121", "--metrics-port", "15190")
	gw.Env = []string{"POD_NAME=" + gwPod, "POD_NAMESPACE=" + gwNS, "POD_IP=127.0.0.1"}
	gw.Stdout, gw.Stderr = &gwLogs, &gwLogs
	gw.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: processUID, Gid: processUID}}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = gw.Process.Kill()
		_ = gw.Wait()
		if t.Failed() {
			t.Logf("the gateway's log:\n%s", gwLogs.String())
		}
	})
	eventually(t, "the gateway ready (its config)", func() error { return ready("http://127.0.0.1:15121/healthz/ready") })
	// A flood of 1,000 plaintext connections, each refused, then its memory.
	for range 1000 {
		if c, err := net.Dial("tcp", "127.0.0.1:15443"); err == nil {
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			_, _ = c.Read(make([]byte, 1))
			_ = c.Close()
		}
	}
	gwStatus := procStatus(t, gw.Process.Pid)
	fmt.Printf("proxy: real gateway process (cmd/proxy gateway) with %d exported services, after 1,000 refused plaintext connections: VmRSS %s (RssAnon %s, RssFile %s), VmHWM %s (target RSS <= 30 MB = %.1f MiB)\n",
		services, mib(gwStatus["VmRSS"]), mib(gwStatus["RssAnon"]), mib(gwStatus["RssFile"]), mib(gwStatus["VmHWM"]), 30e6/(1<<20))
}

// tokenReviewer accepts "client-token" as the ServiceAccount demo/client.
type tokenReviewer struct{}

func (tokenReviewer) Review(_ context.Context, token string, _ []string) (identity.ReviewResult, error) {
	if token != "client-token" {
		return identity.ReviewResult{Error: "invalid bearer token"}, nil
	}
	return identity.ReviewResult{Authenticated: true, Username: "system:serviceaccount:demo:client", Audiences: []string{"fleetmesh"}}, nil
}

// scrape reads the values of unlabelled series from a Prometheus text exposition.
func scrape(t *testing.T, url string, names ...string) []float64 {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // the sidecar's local metrics port
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	values := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			values[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	out := make([]float64, len(names))
	for i, n := range names {
		v, ok := values[n]
		if !ok {
			t.Fatalf("%s: no %s", url, n)
		}
		out[i] = v
	}
	return out
}

// procStatus reads /proc/<pid>/status's memory lines, in kB.
func procStatus(t *testing.T, pid int) map[string]int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if fields := strings.Fields(v); ok && len(fields) == 2 && fields[1] == "kB" {
			out[k], _ = strconv.Atoi(fields[0])
		}
	}
	if out["VmRSS"] == 0 {
		t.Fatalf("/proc/%d/status has no VmRSS:\n%s", pid, data)
	}
	return out
}

// procSwitches is the context switches (voluntary and not) of a process's threads so far.
func procSwitches(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	n := 0
	for _, task := range tasks {
		data, err := os.ReadFile(task)
		if err != nil {
			continue // a thread that just ended
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				n += c
			}
		}
	}
	return n
}

// procCPU is a process's user and system CPU time from /proc/<pid>/stat.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command (which may hold spaces) start at the state: utime and
	// stime are the 14th and 15th fields, the 12th and 13th after the command.
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// buildProxy builds cmd/proxy as the image does (static, without symbols), or copies the build
// FLEETMESH_BENCH_PROXY_BIN names (another version's, to compare them in this harness), into a
// directory the proxy's uid can run it from, and returns the environment that hands it to the
// benchmark in its namespace.
func buildProxy(t *testing.T) []string {
	dir, err := os.MkdirTemp("", "fleetmesh-proxy-bench-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the proxy's uid runs the binary
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "proxy")
	if prebuilt := os.Getenv("FLEETMESH_BENCH_PROXY_BIN"); prebuilt != "" {
		data, err := os.ReadFile(prebuilt)
		if err == nil {
			err = os.WriteFile(bin, data, 0o755) //nolint:gosec // an executable, run by the proxy's uid
		}
		if err != nil {
			t.Fatal(err)
		}
	} else {
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/fleetmesh/fleetmesh/cmd/proxy")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build cmd/proxy: %v\n%s", err, out)
		}
	}
	if fi, err := os.Stat(bin); err == nil {
		fmt.Printf("\nproxy: cmd/proxy binary %.1f MiB\n", float64(fi.Size())/(1<<20))
	}
	return []string{processBinEnv + "=" + bin}
}
