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

// Package netnstest runs a test in network namespaces of its own. The test calls Run: outside,
// Run re-executes the test binary, for that test alone, under `unshare --net` (plus the flags it
// is given) with an environment variable naming the launcher's namespace, and reports false; in
// the re-executed test, Run checks that the namespace is a fresh one the test may change (not
// the launcher's, nothing but loopback) and reports true. Nothing is ever done in the
// machine's own namespace.
package netnstest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Options says how to re-execute the test.
type Options struct {
	// Env is the variable that marks the re-executed test; each test package has its own.
	Env string
	// Unshare are the namespaces unshare creates besides the network one (e.g. "--mount").
	Unshare []string
	// Tools are the commands the test needs besides unshare (e.g. "ip", "nsenter"): it is
	// skipped without them.
	Tools []string
	// Prepare, when set, runs once the machine is known to be able to, before the re-execution,
	// and returns more environment for it (e.g. a binary it built).
	Prepare func(t *testing.T) []string
}

// Run reports whether the calling test is in its own fresh network namespace, where it goes
// on. Otherwise it runs the test there and returns its output once it passed (the caller
// returns); it skips the test where namespaces cannot be had (not root, no unshare or Tools).
func Run(t *testing.T, o Options) (inside bool, out []byte) {
	t.Helper()
	if os.Getenv(o.Env) != "" {
		requireFresh(t, o.Env)
		return true, nil
	}
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("no unshare (util-linux) to create network namespaces: %v", err)
	}
	for _, tool := range o.Tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s to set the namespaces up: %v", tool, err)
		}
	}
	flags := append([]string{"--net"}, o.Unshare...)
	if out, err := exec.Command(unshare, append(flags, "true")...).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here: unshare: %v: %s", err, out)
	}
	var env []string
	if o.Prepare != nil {
		env = o.Prepare(t)
	}

	ctx := context.Background()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-5*time.Second))
		defer cancel()
	}
	args := append(flags, "--", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	// unshare execs the test binary in its own process, so the context kills the test itself.
	cmd := exec.CommandContext(ctx, unshare, args...)
	launcher, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("cannot tell which network namespace this is: %v", err)
	}
	cmd.Env = append(append(os.Environ(), o.Env+"="+launcher), env...)
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in new network namespaces: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("PASS")) || bytes.Contains(out, []byte("no tests to run")) {
		t.Fatalf("in new network namespaces, the test did not run:\n%s", out)
	}
	t.Logf("in new network namespaces:\n%s", out)
	return false, out
}

// requireFresh stops the test unless this process is in a namespace it may change: not the one
// of the process that launched it, and with no interface but loopback.
func requireFresh(t *testing.T, env string) {
	t.Helper()
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("cannot tell which network namespace this is: %v", err)
	}
	launcher := os.Getenv(env)
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if self == launcher || len(ifaces) != 1 || ifaces[0].Flags&net.FlagLoopback == 0 {
		t.Fatalf("%s is set but this is not a fresh network namespace (%s, launched from %s, %d interfaces): refusing to change it", env, self, launcher, len(ifaces))
	}
}
