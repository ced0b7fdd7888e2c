//go:build linux

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

package identity

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// The benchmarks run the agent's identity API in a child process (this test binary again), so
// the agent's own CPU time can be read apart from the clients' and "per core" means per core of
// the agent.
const benchServerEnv = "FLEETMESH_IDENTITY_BENCH_SERVER"

// TestBenchServerProcess is the child: it serves until its stdin is closed.
func TestBenchServerProcess(t *testing.T) {
	if os.Getenv(benchServerEnv) == "" {
		t.Skip("helper process of the benchmarks")
	}
	a := startAgent(t, tdA)
	a.reviewer.results["web"] = saReview("shop", "web")
	fmt.Printf("%s %s\n", a.addr, base64.StdEncoding.EncodeToString(trust.EncodeCertificatesPEM(a.ca.Roots())))
	_, _ = io.Copy(io.Discard, os.Stdin)
}

type benchAgent struct {
	addr   string
	bundle *x509bundle.Bundle
	pid    int
}

func startBenchAgent(b *testing.B) *benchAgent {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), benchServerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("bench agent: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	addr, roots, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		b.Fatalf("bench agent said %q", line)
	}
	pem, err := base64.StdEncoding.DecodeString(roots)
	if err != nil {
		b.Fatal(err)
	}
	certs, err := trust.ParseCertificatesPEM(pem)
	if err != nil {
		b.Fatal(err)
	}
	return &benchAgent{addr: addr, bundle: x509bundle.FromX509Authorities(tdA, certs), pid: cmd.Process.Pid}
}

// cpu is the agent process's user+system CPU time (/proc/<pid>/stat, in 1/100 s ticks).
func (a *benchAgent) cpu(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of the whole line
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func (a *benchAgent) creds() credentials.TransportCredentials {
	id, _ := AgentWorkload.ID(tdA)
	return credentials.NewTLS(tlsconfig.TLSClientConfig(a.bundle, tlsconfig.AuthorizeID(id)))
}

// selfCPU is this (client) process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs op b.N times from 4 goroutines and reports throughput and CPU per issuance.
func measure(b *testing.B, a *benchAgent, op func() error) {
	b.SetParallelism(2) // 2 x GOMAXPROCS goroutines
	b.ResetTimer()
	start, agent0, self0 := time.Now(), a.cpu(b), selfCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	wall, agentCPU, clientCPU := time.Since(start), a.cpu(b)-agent0, selfCPU()-self0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/wall.Seconds(), "issuances/s")
	if agentCPU > 0 {
		b.ReportMetric(float64(b.N)/agentCPU.Seconds(), "issuances/agent-cpu-s")
	}
	b.ReportMetric(float64(clientCPU.Microseconds())/float64(b.N), "client-cpu-µs/op")
	b.ReportMetric(float64(runtime.NumCPU()), "cpus")
}

// BenchmarkIssueSVID is issuance end to end through the identity API, as a workload sees it on
// an open connection: gRPC over TLS, token review (a fake reviewer: no API-server latency, no
// cache), CSR check, ECDSA P-256 signing, the response with the bundle map. The CSR is made once,
// outside the loop: it is the workload's cost, not the agent's.
func BenchmarkIssueSVID(b *testing.B) {
	a := startBenchAgent(b)
	req := &identityv1.IssueRequest{CSR: newCSR(b, newKey(b)), Token: "web"}
	const conns = 4
	pool := make(chan *identityv1.Client, conns)
	for range conns {
		cc, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(a.creds()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cc.Close() })
		c := identityv1.NewClient(cc)
		if _, err := c.IssueX509SVID(context.Background(), req); err != nil { // handshake now
			b.Fatal(err)
		}
		pool <- c
	}
	measure(b, a, func() error {
		c := <-pool
		defer func() { pool <- c }()
		_, err := c.IssueX509SVID(context.Background(), req)
		return err
	})
}

// BenchmarkIssueSVIDNewConnection dials a new TLS connection for every issuance, as svid-fetch
// does for each renewal: the TLS handshake is included.
func BenchmarkIssueSVIDNewConnection(b *testing.B) {
	a := startBenchAgent(b)
	req := &identityv1.IssueRequest{CSR: newCSR(b, newKey(b)), Token: "web"}
	creds := a.creds()
	measure(b, a, func() error {
		cc, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer func() { _ = cc.Close() }()
		_, err = identityv1.NewClient(cc).IssueX509SVID(context.Background(), req)
		return err
	})
}
