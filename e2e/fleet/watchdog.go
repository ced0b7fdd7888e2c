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
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// watchdogEvery is how often the watchdog looks at a cluster's API server.
const watchdogEvery = time.Second

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
	p.watchStop, p.watchDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.watchDone)
		// A process that is alive keeps its listener until it is told to stop, so a connection
		// refused on two looks in a row means it has gone.
		refused := 0
		for {
			select {
			case <-p.watchStop:
				return
			case <-time.After(watchdogEvery):
			}
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
				f.restartCrashedAPIServer(c)
			}
			p.mu.Unlock()
		}
	}()
}

// stopWatchdog ends c's watchdog and waits for it, so that a restart never races a Stop.
func (p *clusterProcs) stopWatchdog() {
	if p.watchStop == nil {
		return
	}
	close(p.watchStop)
	<-p.watchDone
	p.watchStop = nil
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
// says so in the API server's log and on stderr, with the end of the crashed process's log.
func (f *Fleet) restartCrashedAPIServer(c *Cluster) {
	logPath := filepath.Join(f.LogDir(c), "kube-apiserver.log")
	tail := logTail(logPath, 15)
	api := c.Env.ControlPlane.GetAPIServer()
	// Stop only clears envtest's record of the process, which has exited.
	err := api.Stop()
	if err == nil {
		err = api.Start()
	}
	if err == nil {
		err = waitReadyz(c, apiServerReadyTimeout)
	}
	c.procs.restarts++
	fmt.Fprintf(os.Stderr, "fleet: the kube-apiserver of %s exited unexpectedly and was restarted (error: %v); end of its log before the restart:\n%s\n", c.Name, err, tail)
}

// APIServerRestarts is how many times the watchdog has restarted c's API server.
func (f *Fleet) APIServerRestarts(c *Cluster) int {
	c.procs.mu.Lock()
	defer c.procs.mu.Unlock()
	return c.procs.restarts
}

// KillAPIServer kills c's kube-apiserver process with SIGKILL, as a crash would end it; tests use
// it to show that the watchdog brings it back.
func (f *Fleet) KillAPIServer(c *Cluster) error {
	certDir := c.Env.ControlPlane.GetAPIServer().CertDir
	for _, pid := range RunningClusterProcesses() {
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
