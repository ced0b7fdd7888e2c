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
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
)

// apiServerReadyTimeout bounds StartAPIServer's wait for /readyz.
const apiServerReadyTimeout = 60 * time.Second

// StopAPIServer stops c's kube-apiserver only, as an outage of that cluster's control plane
// would: etcd and, on a full member, the controller-manager, the scheduler and kwok keep running
// and reconnect once StartAPIServer has brought it back.
func (f *Fleet) StopAPIServer(c *Cluster) error {
	if c.procs == nil || c.Env == nil {
		return fmt.Errorf("fleet: %s was not started by this fleet", c.Name)
	}
	c.procs.mu.Lock()
	defer c.procs.mu.Unlock()
	if c.procs.apiServerStopped {
		return fmt.Errorf("fleet: the API server of %s is already stopped", c.Name)
	}
	// The fleet owns the CertDir (see prepareControlPlane), so envtest leaves the certificates,
	// the ServiceAccount signing keys and the client CA file in place for the restart.
	if err := c.Env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("stop the API server of %s: %w", c.Name, err)
	}
	c.procs.apiServerStopped = true
	return nil
}

// StartAPIServer restarts the kube-apiserver that StopAPIServer stopped, on the same address,
// port, certificates, client CA and etcd, so that every existing kubeconfig, client and
// ServiceAccount token of c works again. It returns once /readyz answers.
func (f *Fleet) StartAPIServer(c *Cluster) error {
	if c.procs == nil {
		return fmt.Errorf("fleet: %s was not started by this fleet", c.Name)
	}
	c.procs.mu.Lock()
	defer c.procs.mu.Unlock()
	if !c.procs.apiServerStopped {
		// envtest waits for /healthz on the port: a second API server would look ready at once.
		return fmt.Errorf("fleet: the API server of %s is not stopped", c.Name)
	}
	// envtest's APIServer is restartable: Start builds a new process with the same arguments,
	// keeps the ports it already chose, finds its serving certificates in CertDir and rewrites
	// the client CA of the users it provisioned.
	if err := c.Env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("restart the API server of %s: %w", c.Name, err)
	}
	c.procs.apiServerStopped = false
	return waitReadyz(context.Background(), c, apiServerReadyTimeout)
}

// waitReadyz waits until the API server says it is ready: /healthz, which envtest waits for,
// answers before the post-start hooks (RBAC bootstrap, priority classes...) have finished.
func waitReadyz(ctx context.Context, c *Cluster, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server of %s is not ready after %s: %w", c.Name, timeout, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
