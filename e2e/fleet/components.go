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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	// componentStopGrace is how long a component may take to exit on SIGTERM before SIGKILL.
	componentStopGrace = 5 * time.Second
	// componentsReadyTimeout bounds the wait for a member's controller-manager and kwok to act.
	componentsReadyTimeout = 60 * time.Second
)

// clusterProcs is what the fleet runs for one cluster besides envtest's etcd and kube-apiserver.
type clusterProcs struct {
	// dir holds the cluster's certificates, kubeconfig and logs.
	dir string
	// logs are closed once every process writing to them has stopped.
	logs []*os.File
	// children are stopped in reverse start order.
	children []*child
	// mu serialises StopAPIServer, StartAPIServer and the watchdog's restarts.
	mu sync.Mutex
	// apiServerStopped is set between StopAPIServer and StartAPIServer.
	apiServerStopped bool
	// restarts and failedRestarts count the watchdog's restarts of the API server.
	restarts, failedRestarts int
	// watchStop ends the watchdog (watchdog.go); watchDone is closed when it has.
	watchStop context.CancelFunc
	watchDone chan struct{}
}

// certDir holds the API server's certificates; the fleet chooses it (prepareControlPlane).
func (p *clusterProcs) certDir() string { return filepath.Join(p.dir, "pki") }

// child is one component process.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	// done is closed once the process has exited.
	done chan struct{}
}

// isFullMember reports whether c gets a controller-manager, a scheduler and kwok. With Full,
// management is a full cluster too: it runs the operator's Deployment like a real one.
func (f *Fleet) isFullMember(*Cluster) bool {
	return f.opts.Full
}

// LogDir is where the fleet writes the logs of c's processes (etcd, kube-apiserver and, for a
// full member, the other components), one <component>.log each. It is inside the fleet's work
// directory, so it is removed by Stop when the fleet created that directory: pass
// Options.WorkDir to keep the logs of a failed run.
func (f *Fleet) LogDir(c *Cluster) string {
	return filepath.Join(f.opts.WorkDir, c.Name, "logs")
}

// prepareControlPlane runs before envtest starts c: it sends etcd's and kube-apiserver's output
// to log files rather than to the test's output, and gives the API server a certificate
// directory owned by the fleet. envtest deletes a CertDir it created itself when the API server
// stops, which would make a restart on the same certificates impossible.
func (f *Fleet) prepareControlPlane(c *Cluster, env *envtest.Environment) error {
	c.procs = &clusterProcs{dir: filepath.Join(f.opts.WorkDir, c.Name)}
	certDir := c.procs.certDir()
	// A reused work directory must not hand envtest old serving certificates: it only generates
	// (and records the CA of) certificates it does not find.
	if err := os.RemoveAll(certDir); err != nil {
		return err
	}
	for _, d := range []string{certDir, f.LogDir(c)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	etcdLog, err := c.procs.openLog(f.LogDir(c), "etcd")
	if err != nil {
		return err
	}
	apiLog, err := c.procs.openLog(f.LogDir(c), "kube-apiserver")
	if err != nil {
		return err
	}
	env.ControlPlane.Etcd = &envtest.Etcd{Out: etcdLog, Err: etcdLog}
	api := env.ControlPlane.GetAPIServer()
	api.CertDir = certDir
	api.Out, api.Err = apiLog, apiLog
	// By default a stopping API server waits up to --request-timeout (60 s) for the watches of
	// its clients (controller-manager, kwok, the operator...) to end, and envtest kills it after
	// 20 s with an error. In this mode it drains the ordinary requests, then gives the watches
	// 2 s: StopAPIServer and Stop take seconds.
	api.Configure().Set("shutdown-send-retry-after", "true")
	// envtest's /24 runs out of ClusterIPs at 253 Services; the federation benchmark exports
	// 300. 10.0.0.0/16 keeps the same first addresses and stays clear of the pods' 10.244.0.0/16.
	api.Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	if c.Name == ManagementName {
		// Every access to a Secret, who made it and to which one, for the specs that prove the
		// operator reads only kubeconfig Secrets (SecretAccesses).
		policy := filepath.Join(c.procs.dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(secretAuditPolicy), 0o600); err != nil {
			return err
		}
		api.Configure().Set("audit-policy-file", policy)
		api.Configure().Set("audit-log-path", c.procs.auditLog())
	}
	if f.isFullMember(c) {
		// envtest turns the ServiceAccount admission plugin off because nothing would create the
		// default ServiceAccounts; here the controller-manager does, and pods must get their
		// token volume as in a real cluster. Not passing the flag restores the default plugins.
		api.Configure().Disable("disable-admission-plugins")
		// The API server calls admission webhooks (the agent's sidecar injector) through their
		// Service. Without kube-proxy nothing answers on a ClusterIP here: resolve the Service
		// to a ready endpoint, the agent pod's own address, as the aggregator does.
		api.Configure().Set("enable-aggregator-routing", "true")
	}
	return nil
}

func (p *clusterProcs) openLog(dir, name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	p.logs = append(p.logs, f)
	return f, nil
}

// startComponents turns a bare control plane into a cluster that runs workloads: the
// controller-manager (Deployments, EndpointSlices, garbage collection, ServiceAccounts...), the
// scheduler, and kwok acting as the kubelet of one fake Node. It returns once the
// controller-manager has created the default ServiceAccount (without it the ServiceAccount
// admission plugin rejects pods) and kwok has made the Node Ready (without it nothing schedules).
func (f *Fleet) startComponents(ctx context.Context, c *Cluster) error {
	p := c.procs
	api := c.Env.ControlPlane.APIServer
	kubeconfig := filepath.Join(p.dir, "admin.kubeconfig")
	rootCA := filepath.Join(p.dir, "apiserver-ca.crt")
	signingCert := filepath.Join(p.dir, "cluster-signing-ca.crt")
	signingKey := filepath.Join(p.dir, "cluster-signing-ca.key")
	if err := os.WriteFile(kubeconfig, c.Kubeconfig, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(rootCA, api.CA, 0o600); err != nil {
		return err
	}
	if err := writeCA(c.Name+"-cluster-signing", signingCert, signingKey); err != nil {
		return fmt.Errorf("cluster signing CA: %w", err)
	}
	if err := c.Client.Create(ctx, f.fakeNode(c)); err != nil {
		return fmt.Errorf("create Node: %w", err)
	}

	components := []struct {
		name string
		args []string
	}{{
		name: "kube-controller-manager",
		args: []string{
			"--kubeconfig=" + kubeconfig,
			"--controllers=*",
			"--leader-elect=false",
			// The default 20/30 made back-to-back rollouts take 0.4-0.6 s each.
			"--kube-api-qps=200",
			"--kube-api-burst=400",
			// Each controller acts as its own ServiceAccount, so the bootstrap RBAC is exercised.
			"--use-service-account-credentials",
			// envtest's API server verifies ServiceAccount tokens with this key pair.
			"--service-account-private-key-file=" + filepath.Join(api.CertDir, "sa-signer.key"),
			"--root-ca-file=" + rootCA,
			"--cluster-signing-cert-file=" + signingCert,
			"--cluster-signing-key-file=" + signingKey,
			// No serving port: several members share the sandbox's loopback, and nothing probes it.
			// No --authentication/authorization-kubeconfig either: with them the controller-manager
			// loops on request-header CA errors against envtest's API server.
			"--bind-address=127.0.0.1",
			"--secure-port=0",
		},
	}, {
		name: "kube-scheduler",
		args: []string{
			"--kubeconfig=" + kubeconfig,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port=0",
		},
	}, {
		name: "kwok",
		args: []string{
			"--kubeconfig=" + kubeconfig,
			"--config=" + f.kwokStagesPath(),
			"--manage-nodes-with-annotation-selector=" + FakeNodeAnnotation + "=" + FakeNodeAnnotationValue,
			// kwok hands out the addresses that follow the one given with the prefix: starting
			// after the Node's address keeps the first pod from getting it.
			"--cidr=" + c.NodeIP() + "/25",
			// The Node's address is the one the API server advertises, as on a single-node
			// cluster whose node hosts its control plane.
			"--node-ip=" + c.NodeIP(),
			// The heartbeat stage only refreshes the Node's status every ~10 minutes: the Lease
			// is what keeps the node lifecycle controller from marking it NotReady.
			"--node-lease-duration-seconds=40",
		},
	}}
	for _, comp := range components {
		path, err := f.binary(comp.name)
		if err != nil {
			return err
		}
		if err := p.start(comp.name, path, comp.args, f.LogDir(c)); err != nil {
			return err
		}
	}
	return p.waitFor(ctx, componentsReadyTimeout, func() (bool, error) {
		node := &corev1.Node{}
		if err := c.Client.Get(ctx, client.ObjectKey{Name: c.NodeName()}, node); err != nil {
			return false, err
		}
		if !nodeReady(node) {
			return false, nil
		}
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "default"}, &corev1.ServiceAccount{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// binary finds a component in BinDir, where the Makefile installs them, or else on PATH.
func (f *Fleet) binary(name string) (string, error) {
	p := filepath.Join(f.opts.BinDir, name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("fleet: %s not found in %q or on PATH: run 'make kube-binaries tools'", name, f.opts.BinDir)
}

func (p *clusterProcs) start(name, path string, args []string, logDir string) error {
	log, err := p.openLog(logDir, name)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	ch := &child{name: name, logPath: log.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(ch.done)
	}()
	p.children = append(p.children, ch)
	return nil
}

// waitFor polls cond until it holds, failing early with the log of any component that exited:
// a bad flag or an unreachable API server shows up there, not in a timeout.
func (p *clusterProcs) waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		for _, ch := range p.children {
			select {
			case <-ch.done:
				return fmt.Errorf("%s exited (%v); end of %s:\n%s", ch.name, ch.cmd.ProcessState, ch.logPath, logTail(ch.logPath, 20))
			default:
			}
		}
		ok, err := cond()
		if ok {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			msg := "components not ready"
			for _, ch := range p.children {
				msg += fmt.Sprintf("\nend of %s:\n%s", ch.logPath, logTail(ch.logPath, 10))
			}
			return fmt.Errorf("%s after %s (last error: %v)", msg, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the components (newest first, so kwok and the scheduler do not log errors about a
// controller-manager that is gone), then lets envtest stop kube-apiserver and etcd, then closes
// the logs.
func (p *clusterProcs) stop(env *envtest.Environment) error {
	p.stopWatchdog()
	var errs []error
	for i := len(p.children) - 1; i >= 0; i-- {
		errs = append(errs, p.children[i].stop())
	}
	p.children = nil
	if env != nil {
		errs = append(errs, env.Stop())
	}
	for _, l := range p.logs {
		_ = l.Close()
	}
	p.logs = nil
	return errors.Join(errs...)
}

func (ch *child) stop() error {
	select {
	case <-ch.done:
		return nil
	default:
	}
	_ = ch.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ch.done:
		return nil
	case <-time.After(componentStopGrace):
	}
	_ = ch.cmd.Process.Kill()
	<-ch.done
	return nil
}

// stopCluster stops everything the fleet runs for c.
func (f *Fleet) stopCluster(c *Cluster) error {
	if c.procs == nil {
		return c.Env.Stop()
	}
	return c.procs.stop(c.Env)
}

// NodeName is the name of the cluster's fake Node (full members only).
func (c *Cluster) NodeName() string { return c.Name + "-node" }

// NodeIP is the InternalIP of the cluster's fake Node: the address its API server advertises.
func (c *Cluster) NodeIP() string { return fmt.Sprintf("10.244.%d.1", c.Index) }

// FakePodCIDR is where kwok takes the IPs of the pods it pretends to run: the lower half of the
// cluster's 10.244.<index>.0/24, from .2 on (.1 is NodeIP). kwok does not stop at the end of the
// range: a member with more than 126 fake pods at once would spill into LocalPodCIDR.
func (c *Cluster) FakePodCIDR() string { return fmt.Sprintf("10.244.%d.0/25", c.Index) }

// LocalPodCIDR is the upper half of the cluster's 10.244.<index>.0/24, which kwok never hands
// out: the harness binds the pods it really runs (see RunLocallyAnnotation) to these addresses.
func (c *Cluster) LocalPodCIDR() string { return fmt.Sprintf("10.244.%d.128/25", c.Index) }

// fakeNode is the Node kwok simulates. It has no taint so that ordinary pods schedule on it, and
// carries the member's topology so that topology-aware routing sees a region and a zone.
func (f *Fleet) fakeNode(c *Cluster) *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   c.NodeName(),
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
		"type":                 "kwok",
	}
	if region := f.Region(c); region != "" {
		labels[corev1.LabelTopologyRegion] = region
		labels[corev1.LabelTopologyZone] = region + "-a"
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        c.NodeName(),
		Labels:      labels,
		Annotations: map[string]string{FakeNodeAnnotation: FakeNodeAnnotationValue},
	}}
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// writeCA writes a new self-signed CA for the controller-manager's CSR signers. envtest keeps
// the private key of its own CAs in memory, so the cluster cannot sign with those.
func writeCA(name, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// withLogTail adds the end of one of c's logs to err: the component's own words are what
// explain why it did not come up.
func (f *Fleet) withLogTail(c *Cluster, component string, err error) error {
	path := filepath.Join(f.LogDir(c), component+".log")
	return fmt.Errorf("%w; end of %s:\n%s", err, path, logTail(path, 20))
}

// logTail is the end of a log file, for error messages.
func logTail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	data = bytes.TrimRight(data, "\n")
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == '\n' {
			lines--
			if lines == 0 {
				return string(data[i+1:])
			}
		}
	}
	return string(data)
}
