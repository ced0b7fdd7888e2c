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
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Workload pods: pods with RunLocallyAnnotation that are not part of fleetmesh (no PartOfLabel).
// The kubelet runs them as a kubelet with a CNI plugin would:
//
//   - a network namespace of their own (podnet.go), shared by all their containers;
//   - spec.initContainers first, in order: an ordinary one must exit 0 before the next starts
//     (a failure is retried with a back-off, and the pod stays Pending); one with
//     restartPolicy Always is a native sidecar: started, waited for until its startupProbe
//     passes (at once without one), kept running; then every container of spec.containers;
//   - every container that exits is restarted (the pod's restartPolicy is taken as Always), with
//     a back-off from 200 ms to 5 s; on stop the app containers get SIGTERM first, the sidecars
//     once the app containers have exited; SIGKILL after the grace period (at most 10 s);
//   - a container runs as the binary that stands for its image (Binaries), under nsenter in the
//     pod's network namespace, as securityContext.runAsUser/runAsGroup (container, else pod;
//     else root with the harness's capabilities: capabilities, runAsNonRoot and supplemental
//     groups are not applied). command[0], if set, names the image's entrypoint and is replaced
//     by that binary; the rest of command, then args, are its arguments, with $(VAR) expanded;
//   - the environment is the container's env (fieldRef and resourceFieldRef as for fleetmesh
//     pods), PATH, HOSTNAME, HOME and KUBECONFIG (below): nothing else of the harness's own;
//   - volumes are materialised once per pod and shared by its containers: emptyDir (mode 0777),
//     configMap, secret, downwardAPI and projected (serviceAccountToken: a TokenRequest token
//     for the pod's ServiceAccount with the source's audience and expirationSeconds, bound to the
//     pod; not rotated), files mode 0644 unless the volume says otherwise. A process sees
//     the machine's file system, not the image's, so a volume is not at its mountPath: every
//     mountPath (longest first) in the arguments, the environment and workingDir is replaced by
//     the volume's directory. A binary that reads a mountPath no argument or variable names does
//     not find it;
//   - the pod's files (volumes, the kubeconfig, a link to each binary) are in a directory
//     under os.TempDir() that any uid may traverse, so that a container running as, say, uid
//     1337 can read them; it is removed when the pod stops. Logs are in the kubelet's
//     directory, <namespace>_<name>/<container>.log;
//   - KUBECONFIG carries a TokenRequest token of the pod's ServiceAccount for the API server
//     through the node address: the API server listens on 127.0.0.1 in the sandbox, which a
//     pod's own 127.0.0.1 is not, so the kubelet forwards <node address>:<API server port> to
//     it, as the `kubernetes` Service's endpoint (the advertise address) says;
//   - probes (httpGet, tcpSocket) run from the sandbox namespace, as a kubelet on the node runs
//     them, so they reach the pod from the node address (10.244.<index>.1) through its eth0 and
//     a pod's inbound capture sees them; exec probes run in the pod's namespace as the
//     container's user. Every 200 ms whatever periodSeconds says (failureThreshold and liveness
//     probes are not applied); the pod is Ready when every container and every sidecar is;
//   - deletion: kwok leaves a workload pod's deletion to the kubelet (kwok.go), which finishes it
//     only once the containers have stopped and the veth and namespace are gone;
//   - status: podIP (a /32 from 10.244.<index>.128/25) as soon as the namespace exists, phase
//     Pending until the init containers are done, then Running; initContainerStatuses and
//     containerStatuses for every container (containerID harness://<pid>).
//
// fleetmesh's own pods (the operator, the agent) are the exception, as if hostNetwork: they run
// in the sandbox namespace, bound to their pod IP there, and reach the API servers on 127.0.0.1.
type workloadPod struct {
	k      *Kubelet
	pod    *corev1.Pod
	ip     string
	dir    string // volumes, kubeconfig and binaries: readable by any uid
	logDir string
	net    *podNetwork
	inits  []*workloadContainer
	apps   []*workloadContainer
	grace  time.Duration
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	gen         int // bumped by every change the status shows
	initialized bool
	// written is the gen of the last status written; only the sync loop touches it.
	written int
}

type workloadContainer struct {
	spec     corev1.Container
	init     bool
	sidecar  bool // an init container with restartPolicy Always
	bin      string
	args     []string
	env      []string
	dir      string
	uid, gid *int64
	// startedOnce is closed the first time the container counts as started.
	startedOnce chan struct{}

	// Guarded by workloadPod.mu.
	runs      int
	running   bool
	pid       int
	startedAt time.Time
	started   bool
	ready     bool
	completed bool // an ordinary init container that exited 0
	last      *corev1.ContainerStateTerminated
}

// probeInterval is how often the kubelet runs a workload container's probes.
const probeInterval = 200 * time.Millisecond

// maxStopGrace bounds how long a container may take to exit on SIGTERM.
const maxStopGrace = 10 * time.Second

// stopGrace is how long the kubelet waits after SIGTERM before SIGKILL: the pod's
// terminationGracePeriodSeconds, at most maxStopGrace (the fleet's tests stop many pods).
func stopGrace(pod *corev1.Pod) time.Duration {
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second < maxStopGrace {
		// Not zero: a zero WaitDelay would never kill.
		return max(time.Duration(*g)*time.Second, 100*time.Millisecond)
	}
	return maxStopGrace
}

func isWorkload(pod *corev1.Pod) bool { return pod.Labels[PartOfLabel] != PartOfValue }

// podsRootDir is where workload pods' files go: a directory every uid may traverse (but not
// list), made on first use and removed when the kubelet stops.
func (k *Kubelet) podsRootDir() (string, error) {
	k.podsRootOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleetmesh-pods-"+k.cluster.Name+"-")
		if err == nil {
			err = os.Chmod(dir, 0o711)
		}
		k.podsRoot, k.podsRootErr = dir, err
	})
	return k.podsRoot, k.podsRootErr
}

func (k *Kubelet) startWorkload(ctx context.Context, pod *corev1.Pod) (err error) {
	root, err := k.podsRootDir()
	if err != nil {
		return err
	}
	// Every image resolves before anything is made: a missing binary is retried by the next sync.
	bins := map[string]string{}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		repo, tag := splitImage(c.Image)
		bin, err := k.binaries(repo, tag)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		bins[c.Name] = bin
	}
	ownNetwork := k.onOwnNetwork(pod)
	ip, err := k.allocateIP(pod.UID, ownNetwork)
	if err != nil {
		return err
	}
	w := &workloadPod{k: k, pod: pod.DeepCopy(), ip: ip, written: -1, done: make(chan struct{}), grace: stopGrace(pod),
		dir:    filepath.Join(root, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		logDir: filepath.Join(k.dir, pod.Namespace+"_"+pod.Name)}
	defer func() {
		if err != nil { // the next sync tries again from the start
			if w.net != nil {
				w.net.teardown()
			}
			_ = os.RemoveAll(w.dir)
			k.mu.Lock()
			delete(k.ips, ip)
			k.mu.Unlock()
		}
	}()
	for _, d := range []string{w.dir, filepath.Join(w.dir, "bin")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(w.logDir, 0o700); err != nil {
		return err
	}
	volumes, err := k.materializeWorkloadVolumes(ctx, pod, w.dir)
	if err != nil {
		return err
	}
	kubeconfig, err := k.workloadKubeconfig(ctx, pod, w.dir)
	if err != nil {
		return err
	}
	for i, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		wc, err := k.workloadContainer(ctx, w, c, bins[c.Name], volumes, kubeconfig)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		if i < len(pod.Spec.InitContainers) {
			wc.init = true
			wc.sidecar = c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
			w.inits = append(w.inits, wc)
		} else {
			w.apps = append(w.apps, wc)
		}
	}
	host := podHost{table: "local", gateway: k.cluster.NodeIP()}
	if ownNetwork {
		var n *isolatedNetwork
		if n, err = k.ownNetwork(); err != nil {
			return err
		}
		host = n.host()
	}
	if w.net, err = setupPodNetwork(ip, host); err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	k.mu.Lock()
	k.workloads[pod.UID] = w
	k.mu.Unlock()
	go w.run(pctx)
	if err := k.updateWorkloadStatus(ctx, w); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet %s: status of pod %s/%s: %v\n", k.cluster.Name, pod.Namespace, pod.Name, err)
	}
	return nil
}

// workloadContainer resolves what a container runs: binary, arguments, environment, user.
func (k *Kubelet) workloadContainer(ctx context.Context, w *workloadPod, c corev1.Container, bin string, volumes map[string]string, kubeconfig string) (*workloadContainer, error) {
	env, err := k.env(ctx, w.pod, c, w.ip)
	if err != nil {
		return nil, err
	}
	// Mount paths, longest first so that /a/b is replaced before /a.
	type mount struct{ from, to string }
	var mounts []mount
	for _, vm := range c.VolumeMounts {
		dir, ok := volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume %s not found", vm.Name)
		}
		mounts = append(mounts, mount{from: vm.MountPath, to: filepath.Join(dir, vm.SubPath)})
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].from) > len(mounts[j].from) })
	remap := func(s string) string {
		for _, m := range mounts {
			s = strings.ReplaceAll(s, m.from, m.to)
		}
		return s
	}
	var argv []string
	if len(c.Command) > 0 {
		argv = append(argv, c.Command[1:]...) // command[0] is the image's entrypoint: the binary
	}
	argv = append(argv, c.Args...)
	args := make([]string, 0, len(argv))
	for _, a := range argv {
		a = remap(expand(a, env))
		if !isWorkload(w.pod) { // a fleetmesh pod (a gateway) on a network of its own
			if a, err = k.resolveServiceAddress(ctx, a); err != nil {
				return nil, err
			}
		}
		args = append(args, a)
	}
	// A link in the pod's directory: the binary's own directory may not be traversable by the
	// container's user.
	link := filepath.Join(w.dir, "bin", c.Name)
	if err := linkOrCopy(bin, link); err != nil {
		return nil, err
	}
	wc := &workloadContainer{spec: c, bin: link, args: args, dir: "/", startedOnce: make(chan struct{})}
	if c.WorkingDir != "" {
		wc.dir = remap(c.WorkingDir)
	}
	if psc := w.pod.Spec.SecurityContext; psc != nil {
		wc.uid, wc.gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			wc.uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			wc.gid = sc.RunAsGroup
		}
	}
	home := "/root"
	if wc.uid != nil && *wc.uid != 0 {
		home = "/"
	}
	wc.env = []string{"PATH=" + os.Getenv("PATH"), "HOSTNAME=" + w.pod.Name, "HOME=" + home, "KUBECONFIG=" + kubeconfig}
	names := make([]string, 0, len(env))
	for name := range env {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		wc.env = append(wc.env, name+"="+remap(env[name]))
	}
	return wc, nil
}

func linkOrCopy(from, to string) error {
	_ = os.Remove(to)
	if err := os.Link(from, to); err == nil {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// run is the pod's life: init containers in order, then the app containers, until ctx ends;
// then the app containers stop before the sidecars.
func (w *workloadPod) run(ctx context.Context) {
	defer close(w.done)
	sidecarCtx, stopSidecars := context.WithCancel(context.Background())
	var sidecars, apps sync.WaitGroup
	defer func() {
		apps.Wait()
		stopSidecars()
		sidecars.Wait()
	}()
	for _, c := range w.inits {
		if c.sidecar {
			sidecars.Go(func() { w.supervise(sidecarCtx, c) })
			select {
			case <-c.startedOnce:
			case <-ctx.Done():
				return
			}
			continue
		}
		for attempt := 0; ; attempt++ {
			if w.runOnce(ctx, c) == 0 {
				w.update(func() bool { c.completed = true; return true })
				break
			}
			if !sleepCtx(ctx, backoff(attempt)) {
				return
			}
		}
	}
	w.update(func() bool { w.initialized = true; return true })
	for _, c := range w.apps {
		apps.Go(func() { w.supervise(ctx, c) })
	}
	<-ctx.Done()
}

// supervise keeps a container running until ctx ends.
func (w *workloadPod) supervise(ctx context.Context, c *workloadContainer) {
	for attempt := 0; ; attempt++ {
		began := time.Now()
		w.runOnce(ctx, c)
		if time.Since(began) > 10*time.Second {
			attempt = 0
		}
		if !sleepCtx(ctx, backoff(attempt)) {
			return
		}
	}
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 5)
	return min(d, 5*time.Second)
}

// sleepCtx waits d, or less if ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// update changes the pod's state under its lock; a change (change returns true) is written to
// the pod status by the next sync, which it starts at once.
func (w *workloadPod) update(change func() bool) {
	w.mu.Lock()
	changed := change()
	if changed {
		w.gen++
	}
	w.mu.Unlock()
	if changed {
		w.k.poke()
	}
}

// nsenterArgs runs argv in the pod's network namespace as uid:gid (unchanged if nil).
func nsenterArgs(netns string, uid, gid *int64, argv ...string) []string {
	args := []string{"--net=" + netns}
	if uid != nil {
		args = append(args, "--setuid", strconv.FormatInt(*uid, 10))
		if gid == nil {
			gid = ptr.To[int64](0)
		}
	}
	if gid != nil {
		args = append(args, "--setgid", strconv.FormatInt(*gid, 10))
	}
	return append(append(args, "--"), argv...)
}

// runOnce runs the container once and returns its exit code. Its probes run while it does.
func (w *workloadPod) runOnce(ctx context.Context, c *workloadContainer) int {
	cmd := exec.CommandContext(ctx, "nsenter", nsenterArgs(w.net.netns, c.uid, c.gid, append([]string{c.bin}, c.args...)...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = w.grace
	cmd.Env = c.env
	cmd.Dir = c.dir
	began := time.Now()
	logFile, err := os.OpenFile(filepath.Join(w.logDir, c.spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err == nil {
		cmd.Stdout, cmd.Stderr = logFile, logFile
		defer func() { _ = logFile.Close() }()
		err = cmd.Start()
	}
	if err != nil {
		w.update(func() bool {
			c.runs++
			c.last = &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(),
				StartedAt: metav1.NewTime(began), FinishedAt: metav1.Now()}
			return true
		})
		return 128
	}
	w.update(func() bool {
		c.runs++
		c.running, c.pid, c.startedAt = true, cmd.Process.Pid, began
		return true
	})
	probeCtx, stopProbes := context.WithCancel(ctx)
	probed := make(chan struct{})
	if c.init && !c.sidecar { // ordinary init containers have no probes
		close(probed)
	} else {
		go func() { defer close(probed); w.probeLoop(probeCtx, c) }()
	}
	_ = cmd.Wait()
	stopProbes()
	<-probed
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	w.update(func() bool {
		c.running, c.started, c.ready = false, false, false
		c.last = &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason,
			StartedAt: metav1.NewTime(began), FinishedAt: metav1.Now(), ContainerID: fmt.Sprintf("harness://%d", cmd.Process.Pid)}
		return true
	})
	return code
}

// probeLoop runs the container's startup probe until it passes, then its readiness probe, until
// ctx ends (the container exited or the pod stops).
func (w *workloadPod) probeLoop(ctx context.Context, c *workloadContainer) {
	if p := c.spec.StartupProbe; p != nil {
		for !w.probe(ctx, p, c) {
			if !sleepCtx(ctx, probeInterval) {
				return
			}
		}
	}
	if ctx.Err() != nil {
		return
	}
	w.update(func() bool {
		c.started = true
		select {
		case <-c.startedOnce:
		default:
			close(c.startedOnce)
		}
		return true
	})
	for {
		ready := c.spec.ReadinessProbe == nil || w.probe(ctx, c.spec.ReadinessProbe, c)
		if ctx.Err() != nil {
			return
		}
		w.update(func() bool {
			changed := c.ready != ready
			c.ready = ready
			return changed
		})
		if c.spec.ReadinessProbe == nil || !sleepCtx(ctx, probeInterval) {
			return
		}
	}
}

// probe runs a probe once, from the node's namespace: the sandbox's, or the router's of a
// network of its own (exec probes: in the pod's namespace, as the container's user).
func (w *workloadPod) probe(ctx context.Context, p *corev1.Probe, c *workloadContainer) bool {
	if result, ok := probeNetwork(ctx, p, c.spec, w.ip, w.net.host); ok {
		return result
	}
	if p.Exec != nil && len(p.Exec.Command) > 0 {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout(p))
		defer cancel()
		cmd := exec.CommandContext(ctx, "nsenter", nsenterArgs(w.net.netns, c.uid, c.gid, p.Exec.Command...)...)
		cmd.Env = c.env
		return cmd.Run() == nil
	}
	return false
}

func probeTimeout(p *corev1.Probe) time.Duration {
	if p.TimeoutSeconds > 0 {
		return time.Duration(p.TimeoutSeconds) * time.Second
	}
	return time.Second
}

// probeNetwork runs an httpGet or tcpSocket probe of container ctr at ip once, as the kubelet's
// prober does (from the node; named ports resolved; HTTP without certificate verification,
// keep-alive or redirects), from the network namespace node ("" for the kubelet's own). ok is
// false for a probe of another kind.
func probeNetwork(ctx context.Context, p *corev1.Probe, ctr corev1.Container, ip, node string) (result, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout(p))
	defer cancel()
	port := func(port string, n int) int {
		if n != 0 {
			return n
		}
		for _, cp := range ctr.Ports {
			if cp.Name == port {
				return int(cp.ContainerPort)
			}
		}
		return 0
	}
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		host := ip
		if g.Host != "" {
			host = g.Host
		}
		scheme := "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		u := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port(g.Port.String(), g.Port.IntValue()))), g.Path)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false, true
		}
		for _, h := range g.HTTPHeaders {
			if strings.EqualFold(h.Name, "Host") {
				req.Host = h.Value
			} else {
				req.Header.Add(h.Name, h.Value)
			}
		}
		// As the kubelet: no certificate verification, no keep-alive.
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true, //nolint:gosec // as the kubelet's prober
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ctx, node, network, addr)
			}}
		resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			return false, true
		}
		_ = resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400, true
	case p.TCPSocket != nil:
		host := ip
		if p.TCPSocket.Host != "" {
			host = p.TCPSocket.Host
		}
		conn, err := dialIn(ctx, node, "tcp", net.JoinHostPort(host, strconv.Itoa(port(p.TCPSocket.Port.String(), p.TCPSocket.Port.IntValue()))))
		if err != nil {
			return false, true
		}
		_ = conn.Close()
		return true, true
	}
	return false, false
}

// updateWorkloadStatus writes the pod status a kubelet would write, when it changed.
func (k *Kubelet) updateWorkloadStatus(ctx context.Context, w *workloadPod) error {
	cached, err := k.pods.Pods(w.pod.Namespace).Get(w.pod.Name)
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	if cached.UID != w.pod.UID {
		return nil
	}
	w.mu.Lock()
	gen := w.gen
	phase := corev1.PodPending
	if w.initialized {
		phase = corev1.PodRunning
	}
	if w.written == gen && cached.Status.PodIP == w.ip && cached.Status.Phase == phase {
		w.mu.Unlock()
		return nil
	}
	pod := cached.DeepCopy() // the watch's copy is shared
	ready := w.initialized
	pod.Status.InitContainerStatuses = make([]corev1.ContainerStatus, 0, len(w.inits))
	for _, c := range w.inits {
		pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, c.status(w.initialized))
		if c.sidecar && !c.ready {
			ready = false
		}
	}
	pod.Status.ContainerStatuses = make([]corev1.ContainerStatus, 0, len(w.apps))
	for _, c := range w.apps {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, c.status(w.initialized))
		if !c.ready {
			ready = false
		}
	}
	initialized := w.initialized
	w.mu.Unlock()

	now := metav1.Now()
	pod.Status.Phase = phase
	pod.Status.PodIP = w.ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: w.ip}}
	pod.Status.HostIP = k.cluster.NodeIP()
	pod.Status.HostIPs = []corev1.HostIP{{IP: k.cluster.NodeIP()}}
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		st := corev1.ConditionFalse
		if ok {
			st = corev1.ConditionTrue
		}
		c := corev1.PodCondition{Type: t, Status: st, LastTransitionTime: now}
		for _, old := range cached.Status.Conditions {
			if old.Type == t && old.Status == st {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		return c
	}
	pod.Status.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, true),
		cond(corev1.PodScheduled, true),
		cond(corev1.PodInitialized, initialized),
		cond(corev1.ContainersReady, ready),
		cond(corev1.PodReady, ready),
	}
	if _, err := k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return nil // the watch has not caught up with the last write: the next sync retries
		}
		return client.IgnoreNotFound(err)
	}
	w.written = gen
	return nil
}

// status is the container's status; the pod's lock is held.
func (c *workloadContainer) status(initialized bool) corev1.ContainerStatus {
	s := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: c.spec.Image,
		RestartCount: int32(max(c.runs-1, 0)), Ready: c.ready, Started: ptr.To(c.started)}
	switch {
	case c.running:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.startedAt)}
		s.ContainerID = fmt.Sprintf("harness://%d", c.pid)
	case c.completed:
		s.State.Terminated = c.last
		s.ContainerID = c.last.ContainerID
		s.Ready = true // a completed init container counts as ready, as in the kubelet
	case c.last != nil:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off restarting failed container %s", c.spec.Name)}
	case c.init || !initialized:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	default:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	if c.last != nil && !c.completed {
		s.LastTerminationState.Terminated = c.last
	}
	return s
}

func (k *Kubelet) stopWorkload(w *workloadPod) {
	w.cancel()
	<-w.done
	w.net.teardown()
	_ = os.RemoveAll(w.dir)
}

// lookupWorkload finds a running workload pod by name.
func (k *Kubelet) lookupWorkload(namespace, name string) (*workloadPod, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.workloads {
		if w.pod.Namespace == namespace && w.pod.Name == name {
			return w, nil
		}
	}
	return nil, fmt.Errorf("kubelet %s: no workload pod %s/%s runs", k.cluster.Name, namespace, name)
}

// PodNetns is the network namespace of a running workload pod (a /proc/<pid>/ns/net path, for
// nsenter --net=).
func (k *Kubelet) PodNetns(namespace, pod string) (string, error) {
	w, err := k.lookupWorkload(namespace, pod)
	if err != nil {
		return "", err
	}
	return w.net.netns, nil
}

// PodVeth is the host end of a running workload pod's veth pair: in the sandbox, or in its
// network's router for a member on a network of its own.
func (k *Kubelet) PodVeth(namespace, pod string) (string, error) {
	w, err := k.lookupWorkload(namespace, pod)
	if err != nil {
		return "", err
	}
	return w.net.veth, nil
}

// VethName is the sandbox end of the veth pair of the workload pod with address ip, whether or
// not it exists.
func VethName(ip string) string { return vethName(ip) }

// Exec is a command that runs argv in a running workload pod's network namespace, as uid 0
// (so a sidecar's traffic capture, which exempts only the proxy's own uid, applies to it),
// with the environment of the pod's first container (KUBECONFIG, POD_NAME...), as kubectl exec
// would run it; argv[0] is looked up in PATH. It is not started: the caller runs it (and may set
// Env, Stdin...).
func (k *Kubelet) Exec(ctx context.Context, namespace, pod string, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("exec: no command")
	}
	w, err := k.lookupWorkload(namespace, pod)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "nsenter", nsenterArgs(w.net.netns, nil, nil, argv...)...)
	if len(w.apps) > 0 {
		cmd.Env = append([]string(nil), w.apps[0].env...)
	}
	cmd.Dir = "/"
	return cmd, nil
}

// Logs is what a container of a workload pod has written so far (every run of it, appended),
// also after the pod stopped.
func (k *Kubelet) Logs(namespace, pod, container string) (string, error) {
	b, err := os.ReadFile(filepath.Join(k.dir, namespace+"_"+pod, container+".log"))
	return string(b), err
}

// materializeWorkloadVolumes writes every volume of the pod once, for all its containers, and
// returns volume name -> directory.
func (k *Kubelet) materializeWorkloadVolumes(ctx context.Context, pod *corev1.Pod, podDir string) (map[string]string, error) {
	out := map[string]string{}
	for _, vol := range pod.Spec.Volumes {
		dir := filepath.Join(podDir, "volumes", vol.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		var (
			files map[string]volumeFile
			err   error
		)
		switch {
		case vol.EmptyDir != nil:
			err = os.Chmod(dir, 0o777) // as the kubelet makes it: any container's user writes it
		case vol.ConfigMap != nil:
			files, err = k.configMapFiles(ctx, pod.Namespace, vol.ConfigMap.Name, vol.ConfigMap.Items, vol.ConfigMap.Optional, vol.ConfigMap.DefaultMode)
		case vol.Secret != nil:
			files, err = k.secretFiles(ctx, pod.Namespace, vol.Secret.SecretName, vol.Secret.Items, vol.Secret.Optional, vol.Secret.DefaultMode)
		case vol.DownwardAPI != nil:
			files, err = downwardAPIFiles(pod, vol.DownwardAPI.Items, vol.DownwardAPI.DefaultMode)
		case vol.Projected != nil:
			files, err = k.projectedFiles(ctx, pod, vol.Projected)
		default:
			err = errors.New("volume type not supported by the harness")
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", vol.Name, err)
		}
		if err := writeVolumeFiles(dir, files); err != nil {
			return nil, fmt.Errorf("volume %s: %w", vol.Name, err)
		}
		out[vol.Name] = dir
	}
	return out, nil
}

type volumeFile struct {
	data []byte
	mode os.FileMode
}

func fileMode(mode, defaultMode *int32) os.FileMode {
	switch {
	case mode != nil:
		return os.FileMode(*mode)
	case defaultMode != nil:
		return os.FileMode(*defaultMode)
	}
	return 0o644 // the API's default for configMap, secret, downwardAPI and projected volumes
}

// keyFiles projects data as the kubelet does: every key as a file, or only the items.
func keyFiles(data map[string][]byte, items []corev1.KeyToPath, optional *bool, defaultMode *int32) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	if len(items) == 0 {
		for key, v := range data {
			files[key] = volumeFile{data: v, mode: fileMode(nil, defaultMode)}
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return nil, fmt.Errorf("key %s not found", it.Key)
		}
		files[it.Path] = volumeFile{data: v, mode: fileMode(it.Mode, defaultMode)}
	}
	return files, nil
}

func (k *Kubelet) configMapFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, defaultMode *int32) (map[string]volumeFile, error) {
	cm, err := k.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	for key, v := range cm.Data {
		data[key] = []byte(v)
	}
	for key, v := range cm.BinaryData {
		data[key] = v
	}
	return keyFiles(data, items, optional, defaultMode)
}

func (k *Kubelet) secretFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, defaultMode *int32) (map[string]volumeFile, error) {
	s, err := k.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return keyFiles(s.Data, items, optional, defaultMode)
}

func downwardAPIFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defaultMode *int32) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downwardAPI %s: only fieldRef is supported by the harness", it.Path)
		}
		v, err := podField(pod, it.FieldRef.FieldPath)
		if err != nil {
			return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		files[it.Path] = volumeFile{data: []byte(v), mode: fileMode(it.Mode, defaultMode)}
	}
	return files, nil
}

// podField is a metadata field of the pod, formatted as the downward API formats it.
func podField(pod *corev1.Pod, path string) (string, error) {
	kv := func(m map[string]string) string {
		keys := make([]string, 0, len(m))
		for key := range m {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		lines := make([]string, 0, len(keys))
		for _, key := range keys {
			lines = append(lines, fmt.Sprintf("%s=%q", key, m[key]))
		}
		return strings.Join(lines, "\n")
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return kv(pod.Labels), nil
	case "metadata.annotations":
		return kv(pod.Annotations), nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok {
				return m[key], nil
			}
		}
	}
	return "", fmt.Errorf("fieldRef %s not supported by the harness", path)
}

func (k *Kubelet) projectedFiles(ctx context.Context, pod *corev1.Pod, p *corev1.ProjectedVolumeSource) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	add := func(fs map[string]volumeFile, err error) error {
		for path, f := range fs {
			files[path] = f
		}
		return err
	}
	for _, src := range p.Sources {
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			t := src.ServiceAccountToken
			var token string
			token, err = k.podToken(ctx, pod, t.Audience, t.ExpirationSeconds)
			files[t.Path] = volumeFile{data: []byte(token), mode: fileMode(nil, p.DefaultMode)}
		case src.ConfigMap != nil:
			err = add(k.configMapFiles(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, p.DefaultMode))
		case src.Secret != nil:
			err = add(k.secretFiles(ctx, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional, p.DefaultMode))
		case src.DownwardAPI != nil:
			err = add(downwardAPIFiles(pod, src.DownwardAPI.Items, p.DefaultMode))
		default:
			err = errors.New("projected source not supported by the harness")
		}
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

func writeVolumeFiles(dir string, files map[string]volumeFile) error {
	for name, f := range files {
		if !filepath.IsLocal(name) {
			return fmt.Errorf("path %q leaves the volume", name)
		}
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode); err != nil { // whatever the umask
			return err
		}
	}
	return nil
}

// podToken is a TokenRequest token of the pod's ServiceAccount, bound to the pod.
func (k *Kubelet) podToken(ctx context.Context, pod *corev1.Pod, audience string, expirationSeconds *int64) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	spec := authenticationv1.TokenRequestSpec{
		ExpirationSeconds: expirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}
	if spec.ExpirationSeconds == nil {
		spec.ExpirationSeconds = ptr.To[int64](3600)
	}
	if audience != "" {
		spec.Audiences = []string{audience}
	}
	tr, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for ServiceAccount %s/%s: %w", pod.Namespace, sa, err)
	}
	return tr.Status.Token, nil
}

// workloadKubeconfig writes a kubeconfig, readable by any uid, with a token bound to the pod
// for the API server through the kubelet's forward on the node address.
func (k *Kubelet) workloadKubeconfig(ctx context.Context, pod *corev1.Pod, podDir string) (string, error) {
	server, serverName, err := k.apiForward()
	if err != nil {
		return "", err
	}
	token, err := k.podToken(ctx, pod, "", ptr.To[int64](24*3600))
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: server, TLSServerName: serverName, CertificateAuthorityData: k.cluster.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "sa", Namespace: pod.Namespace}
	cfg.CurrentContext = "sa"
	path := filepath.Join(podDir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", err
	}
	return path, os.Chmod(path, 0o644)
}

// apiForward forwards <node address>:<port> to the API server at 127.0.0.1:<port> (started once,
// until the kubelet stops) and returns the URL to use and the name to verify its certificate
// for.
func (k *Kubelet) apiForward() (server, serverName string, err error) {
	k.fwdOnce.Do(func() {
		u, err := url.Parse(k.cluster.Config.Host)
		if err != nil {
			k.fwdErr = err
			return
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(k.cluster.NodeIP(), u.Port()))
		if err != nil {
			k.fwdErr = fmt.Errorf("forward the API server to the pods: %w", err)
			return
		}
		go func() {
			<-k.ctx.Done()
			_ = ln.Close()
		}()
		go forward(ln, u.Host)
		k.fwdServer, k.fwdName = "https://"+ln.Addr().String(), u.Hostname()
	})
	return k.fwdServer, k.fwdName, k.fwdErr
}

func forward(ln net.Listener, to string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = in.Close() }()
			out, err := net.DialTimeout("tcp", to, 5*time.Second)
			if err != nil {
				return
			}
			defer func() { _ = out.Close() }()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
			go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
			<-done
		}()
	}
}

// workloadPIDs are the processes of the running containers of workload pods; the lock is held.
func (k *Kubelet) workloadPIDs() []int {
	var pids []int
	for _, w := range k.workloads {
		w.mu.Lock()
		for _, c := range append(append([]*workloadContainer{}, w.inits...), w.apps...) {
			if c.running {
				pids = append(pids, c.pid)
			}
		}
		w.mu.Unlock()
	}
	return pids
}
