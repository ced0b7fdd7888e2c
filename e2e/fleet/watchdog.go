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

package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// watchdogEvery is how often the watchdog looks at a cluster's API server.
const watchdogEvery = time.Second

// watchdogMaxBackoff bounds the wait between failed restarts.
const watchdogMaxBackoff = 30 * time.Second

// A kube-apiserver of this Kubernetes version now and then panics outside any request, a few
// seconds after CRDs are added (a nil pointer in kube-openapi's cached listMerger, the stack of
// kubernetes/kubernetes#120758), and the process exits. A kubelet would restart a static-pod API
// server; envtest does not. The watchdog does, so that an upstream crash shows up as a short
// outage of one member (which fleetmesh must ride out anyway) and in the test's output, not as a
// failed suite.

// startWatchdog restarts c's kube-apiserver when its process has exited while it was meant to
// run (StopAPIServer was not called). It runs until stopWatchdog.
func (f *Fleet) startWatchdog(c *Cluster) {
	p := c.procs
	ctx, cancel := context.WithCancel(context.Background())
	p.watchStop, p.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(p.watchDone)
		// A process that is alive keeps its listener until it is told to stop, so a connection
		// refused on two looks in a row means it has gone. A restart that fails is retried
		// after a backoff that doubles up to watchdogMaxBackoff.
		refused, backoff := 0, watchdogEvery
		wait := watchdogEvery
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = watchdogEvery
			if listening(c) {
				refused = 0
				continue
			}
			if refused++; refused < 2 {
				continue
			}
			refused = 0
			p.mu.Lock()
			// StopAPIServer (and perhaps StartAPIServer) may have run since the looks.
			if !p.apiServerStopped && !listening(c) {
				if err := f.restartCrashedAPIServer(ctx, c); err != nil {
					wait, backoff = backoff, min(2*backoff, watchdogMaxBackoff)
				} else {
					backoff = watchdogEvery
				}
			}
			p.mu.Unlock()
		}
	}()
}

// stopWatchdog ends c's watchdog, a restart in progress included, and waits for it, so that a
// restart never races a Stop.
func (p *clusterProcs) stopWatchdog() {
	if p.watchStop == nil {
		return
	}
	p.watchStop()
	<-p.watchDone
	p.watchStop = nil
}

// apiServing is where c's API server listens. envtest's APIServer is written by a restart, so
// it is read under the lock.
func (c *Cluster) apiServing() envtest.SecureServing {
	c.procs.mu.Lock()
	defer c.procs.mu.Unlock()
	return c.Env.ControlPlane.APIServer.SecureServing
}

// listening reports whether a TCP connection to c's API server is accepted; anything but a
// refused connection (a slow answer under load) counts as listening.
func listening(c *Cluster) bool {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return true
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return !errors.Is(err, syscall.ECONNREFUSED)
	}
	_ = conn.Close()
	return true
}

// restartCrashedAPIServer brings c's API server back on its address, certificates and etcd, and
// says so on stderr, with the end of the crashed process's log. It holds c.procs.mu.
func (f *Fleet) restartCrashedAPIServer(ctx context.Context, c *Cluster) error {
	tail := logTail(filepath.Join(f.LogDir(c), "kube-apiserver.log"), 15)
	api := c.Env.ControlPlane.GetAPIServer()
	// Stop only clears envtest's record of the process, which has exited.
	err := api.Stop()
	if err == nil {
		err = api.Start()
	}
	if err == nil {
		err = waitReadyz(ctx, c, apiServerReadyTimeout)
	}
	if err != nil {
		c.procs.failedRestarts++
		fmt.Fprintf(os.Stderr, "fleet: the kube-apiserver of %s exited unexpectedly and could not be restarted (attempt %d): %v\n",
			c.Name, c.procs.failedRestarts, err)
		return err
	}
	c.procs.restarts++
	fmt.Fprintf(os.Stderr, "fleet: the kube-apiserver of %s exited unexpectedly and was restarted; end of its log before the restart:\n%s\n", c.Name, tail)
	return nil
}

// APIServerRestarts is how many times the watchdog has restarted c's API server successfully.
func (f *Fleet) APIServerRestarts(c *Cluster) int {
	c.procs.mu.Lock()
	defer c.procs.mu.Unlock()
	return c.procs.restarts
}

// KillAPIServer kills c's kube-apiserver process with SIGKILL, as a crash would end it; tests use
// it to show that the watchdog brings it back.
func (f *Fleet) KillAPIServer(c *Cluster) error {
	certDir := c.procs.certDir()
	for _, pid := range ChildClusterProcesses() {
		dir := filepath.Join("/proc", strconv.Itoa(pid))
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		if string(bytes.TrimSpace(comm)) != "kube-apiserver" || !bytes.Contains(cmdline, []byte("--cert-dir="+certDir+"\x00")) {
			continue
		}
		return syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("fleet: no kube-apiserver process of %s found", c.Name)
}
