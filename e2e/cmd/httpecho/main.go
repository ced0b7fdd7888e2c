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

// Command httpecho is a user's ordinary application for the sidecar e2e tests: a plain HTTP/1.1
// server built from the standard library only (it links nothing of fleetmesh, so whatever mesh
// behaviour a test sees comes from the data plane around it, not from the app).
//
//	httpecho [--listen :8080] [--tcp-listen :9000] [--member NAME] [--startup-delay D]
//
// answers every HTTP request with a JSON object {"member", "pod" ($POD_NAME), "host", "path",
// "remote", "headers"} and the response header X-Fleetmesh-Member, after the query's delay
// (?delay=2s: a slow server) if any; GET /healthz answers 200
// (503 during --startup-delay). --tcp-listen also echoes raw TCP bytes back. The member comes
// from --member, else from $MEMBER.
//
// It is its own client too, for tests that run it inside a pod's network namespace:
//
//	httpecho get [--timeout 5s] [-H 'Name: value']... URL
//	httpecho load --url URL [--rate 200/s] [--duration 5s] [--timeout 2s]
//	httpecho true
//
// get prints the response body (exit 1 on a transport error or a status of 400 or more); load
// sends requests open-loop at a fixed rate and prints one JSON line per request
// {"at_unix_nano", "latency_ns", "status", "member", "error"}; true exits 0 (an init container
// that succeeds).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HeaderMember names the member of the instance that answered.
const HeaderMember = "X-Fleetmesh-Member"

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "true":
		return
	case len(args) > 0 && args[0] == "get":
		err = get(args[1:])
	case len(args) > 0 && args[0] == "load":
		err = load(args[1:])
	case len(args) > 0 && args[0] == "tcp":
		err = tcpClient(args[1:])
	default:
		err = serve(args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpecho:", err)
		os.Exit(1)
	}
}

// Reply is the JSON body of every answer.
type Reply struct {
	Member  string            `json:"member"`
	Pod     string            `json:"pod"`
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Remote  string            `json:"remote"`
	Headers map[string]string `json:"headers"`
}

func serve(args []string) error {
	fs := flag.NewFlagSet("httpecho", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "HTTP address to serve on")
	tcpListen := fs.String("tcp-listen", "", "optional address of a raw TCP echo server")
	member := fs.String("member", os.Getenv("MEMBER"), "the member this instance runs in (default $MEMBER)")
	startupDelay := fs.Duration("startup-delay", 0, "GET /healthz answers 503 for this long after the start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	started := time.Now()
	pod := os.Getenv("POD_NAME")
	var healthy atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderMember, *member)
		if time.Since(started) < *startupDelay {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if !healthy.Swap(true) { // logged before the first 200 is written
			logf("healthy")
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// ?delay=D answers after D (a slow server, for timeouts); the client going away ends it.
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		headers := make(map[string]string, len(r.Header))
		for name, vs := range r.Header {
			headers[name] = strings.Join(vs, ", ")
		}
		w.Header().Set(HeaderMember, *member)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Reply{Member: *member, Pod: pod, Host: r.Host, Path: r.URL.Path, Remote: r.RemoteAddr, Headers: headers})
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *tcpListen != "" {
		tln, err := net.Listen("tcp", *tcpListen)
		if err != nil {
			return err
		}
		go echoTCP(tln)
		logf("echoing TCP on %s", tln.Addr())
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	logf("serving HTTP on %s", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func echoTCP(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = conn.Close() }()
			_, _ = io.Copy(conn, conn)
		}()
	}
}

// logf prints a line with the wall-clock time in nanoseconds, so a test can order events of
// different processes.
func logf(format string, args ...any) {
	fmt.Printf("%s httpecho: %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, "; ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func get(args []string) error {
	fs := flag.NewFlagSet("httpecho get", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	var headers headerFlags
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable; Host sets the Host header)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: httpecho get [--timeout D] [-H 'Name: value']... URL")
	}
	req, err := http.NewRequest(http.MethodGet, fs.Arg(0), nil)
	if err != nil {
		return err
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("header %q: want 'Name: value'", h)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if strings.EqualFold(name, "Host") {
			req.Host = value
		} else {
			req.Header.Add(name, value)
		}
	}
	hc := &http.Client{Timeout: *timeout}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", fs.Arg(0), resp.Status)
	}
	return nil
}

// Result is one line of load's output.
type Result struct {
	// AtUnixNano is when the request was due (open loop: its slot in the schedule, not when a
	// busy client got round to it), in nanoseconds since the epoch.
	AtUnixNano int64 `json:"at_unix_nano"`
	// LatencyNS is from AtUnixNano to the end of the response body.
	LatencyNS int64  `json:"latency_ns"`
	Status    int    `json:"status"`
	Member    string `json:"member"`
	Error     string `json:"error"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("httpecho load", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET")
	rateFlag := fs.String("rate", "200/s", "requests per period: N/s, N/100ms, N/m or N (per second)")
	duration := fs.Duration("duration", 5*time.Second, "how long to send")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of each request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("load: --url is required")
	}
	interval, err := parseRate(*rateFlag)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: 30 * time.Second,
	}}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		enc = json.NewEncoder(os.Stdout)
	)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= *duration {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d) // the schedule: the next request is due then
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := Result{AtUnixNano: at.UnixNano()}
			resp, err := hc.Get(*url)
			if err == nil {
				r.Status = resp.StatusCode
				r.Member = resp.Header.Get(HeaderMember)
				_, err = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			if err != nil {
				r.Error = err.Error()
			}
			r.LatencyNS = time.Since(at).Nanoseconds()
			mu.Lock()
			defer mu.Unlock()
			_ = enc.Encode(r)
		}()
	}
	wg.Wait()
	return nil
}

// parseRate turns "200/s" into the interval between two requests.
func parseRate(s string) (time.Duration, error) {
	count, per, found := strings.Cut(s, "/")
	period := time.Second
	if found {
		if per != "" && (per[0] < '0' || per[0] > '9') {
			per = "1" + per
		}
		d, err := time.ParseDuration(per)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("rate %q: bad period", s)
		}
		period = d
	}
	n, err := strconv.Atoi(count)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("rate %q: want a positive count", s)
	}
	interval := period / time.Duration(n)
	if interval <= 0 {
		return 0, fmt.Errorf("rate %q: too high", s)
	}
	return interval, nil
}

// tcpClient is `httpecho tcp ADDR MESSAGE`: it sends MESSAGE over one TCP connection, closes its
// side and prints what came back (an echo server sends the message back).
func tcpClient(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: httpecho tcp ADDR MESSAGE")
	}
	c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, args[1]); err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, err = io.Copy(os.Stdout, c)
	return err
}
