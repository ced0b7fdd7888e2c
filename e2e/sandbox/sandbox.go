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

// Package sandbox re-executes a test (or the demo) inside its own PID and network namespace,
// so that every cluster process it starts dies with it, even on a crash or kill -9, and so that
// pod addresses (10.244.0.0/16, routed to lo) exist only inside it.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
)

const (
	envInside  = "FLEETMESH_SANDBOX"
	envPIDFile = "FLEETMESH_SANDBOX_PIDFILE"
	// PodCIDR is routed to the loopback device inside the sandbox: member m's pods use 10.244.m.0/24.
	PodCIDR = "10.244.0.0/16"
)

// Inside reports whether this process runs in the sandbox.
func Inside() bool { return os.Getenv(envInside) == "1" }

// Enter re-executes the current program inside a new PID and network namespace and exits with
// its status; inside the sandbox it prepares the network and returns. Call it first in TestMain
// or main. unshare's --kill-child and PID 1 semantics make the kernel kill every process of the
// sandbox when the re-executed program ends, however it ends.
func Enter() {
	if Inside() {
		if err := setupNetwork(); err != nil {
			fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
			os.Exit(1)
		}
		return
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: find own executable: %v\n", err)
		os.Exit(1)
	}
	args := []string{"--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"}
	if os.Geteuid() != 0 {
		args = append([]string{"--user", "--map-root-user"}, args...)
	}
	args = append(args, self)
	cmd := exec.Command("unshare", append(args, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	pidFile, err := os.CreateTemp("", "fleetmesh-sandbox-*.pid")
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		os.Exit(1)
	}
	_ = pidFile.Close()
	cmd.Env = append(os.Environ(), envInside+"=1", envPIDFile+"="+pidFile.Name())
	// Forward interrupts; the sandbox ends when its first process does.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: unshare (needs util-linux and user or root namespaces): %v\n", err)
		os.Exit(1)
	}
	// unshare itself holds the new network namespace: nsenter targets its PID.
	_ = os.WriteFile(pidFile.Name(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	_ = os.Remove(pidFile.Name())
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func setupNetwork() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"route", "replace", "local", PodCIDR, "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	return nil
}

// NetnsHint tells a person how to run a command in this sandbox's network from another shell.
func NetnsHint() string {
	pid, err := os.ReadFile(os.Getenv(envPIDFile))
	if err != nil || len(pid) == 0 {
		return "(the sandbox's host PID is unknown)"
	}
	return fmt.Sprintf("nsenter --target %s --net --", pid)
}
