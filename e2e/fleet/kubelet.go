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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Binaries maps an image repository (without tag) to the local binary that stands for it. The
// tag is passed so a harness can provide a binary of that version.
type Binaries func(repository, tag string) (path string, err error)

// Kubelet runs one cluster's pods that must really run (see RunLocallyAnnotation) as local
// processes, as a kubelet would run their containers.
//
// fleetmesh's own pods (PartOfLabel: the operator, the agent) run as if with hostNetwork: one
// process for their one container, in the sandbox's network namespace, bound to an address from
// the cluster's 10.244.<index>.128/25 range (local there), talking to the API servers on
// 127.0.0.1; args and env from the pod spec ($(VAR) expanded), ConfigMap and Secret volumes
// materialised as files, a kubeconfig carrying a TokenRequest token of the pod's ServiceAccount
// (so the process has exactly the RBAC installed for it), readiness from the container's HTTP
// readiness probe, and a restart when the process exits.
//
// Every other such pod is a workload pod (workload.go): a network namespace of its own reached
// through a veth pair (podnet.go), init containers and native sidecars, several containers
// sharing the namespace and the volumes, run as their securityContext's user. On a member put
// on a network of its own (IsolateNetwork, networks.go), its east-west gateway runs as a
// workload pod too, behind that network's router with the member's other workload pods.
type Kubelet struct {
	cluster  *Cluster
	binaries Binaries
	dir      string
	client   kubernetes.Interface
	// pods is the kubelet's watch of the cluster's pods, as a real kubelet watches its node's:
	// reads come from it, and its events start a sync at once.
	pods corelisters.PodLister
	kick chan struct{}

	// ctx ends when the kubelet stops; done is closed once it has stopped its pods.
	ctx  context.Context
	done chan struct{}

	mu        sync.Mutex
	procs     map[types.UID]*podProcess
	workloads map[types.UID]*workloadPod
	ips       map[string]types.UID
	// lastIP is each pod's address, which a restart of its process keeps (as a pod keeps its
	// sandbox's); held are the pods (namespace/name) kept stopped (HoldPod).
	lastIP map[types.UID]string
	held   map[string]bool
	// network is the member's network of its own (IsolateNetwork), nil on the sandbox's.
	network *isolatedNetwork

	podsRootOnce sync.Once
	podsRoot     string
	podsRootErr  error

	fwdOnce            sync.Once
	fwdServer, fwdName string
	fwdErr             error
}

type podProcess struct {
	pod    *corev1.Pod
	ip     string
	cmd    *exec.Cmd
	exited chan struct{}
	ready  bool
	cancel context.CancelFunc
}

// StartKubelet runs the cluster's fleetmesh pods until ctx ends, then stops their processes.
func (f *Fleet) StartKubelet(ctx context.Context, c *Cluster, binaries Binaries) (*Kubelet, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(f.opts.WorkDir, "kubelet-"+c.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	k := &Kubelet{cluster: c, binaries: binaries, dir: dir, client: cs, procs: map[types.UID]*podProcess{}, ips: map[string]types.UID{},
		lastIP: map[types.UID]string{}, held: map[string]bool{},
		workloads: map[types.UID]*workloadPod{}, kick: make(chan struct{}, 1), ctx: ctx, done: make(chan struct{})}
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Core().V1().Pods()
	if _, err := inf.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { k.poke() }, UpdateFunc: func(any, any) { k.poke() }, DeleteFunc: func(any) { k.poke() },
	}); err != nil {
		return nil, err
	}
	k.pods = inf.Lister()
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("kubelet %s: watch %v: not synced", c.Name, typ)
		}
	}
	go k.loop(ctx)
	return k, nil
}

// poke starts a sync at once.
func (k *Kubelet) poke() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Done is closed once the kubelet has stopped (its context ended) and its pods with it.
func (k *Kubelet) Done() <-chan struct{} { return k.done }

// loop syncs when the pod watch reports a change, and on a short period for the readiness
// probes and restarts: a kubelet's pod sync loop. Pod starts are driven by what the API server
// says, never by the tests.
func (k *Kubelet) loop(ctx context.Context) {
	defer close(k.done)
	defer func() {
		if k.podsRoot != "" {
			_ = os.RemoveAll(k.podsRoot)
		}
	}()
	defer k.stopAll()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := k.sync(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "kubelet %s: %v\n", k.cluster.Name, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-k.kick:
		}
	}
}

func (k *Kubelet) sync(ctx context.Context) error {
	pods, err := k.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	seen := map[types.UID]bool{}
	var errs []error
	for _, pod := range pods {
		// kwok's stages skip exactly these pods; everything else is kwok's.
		if _, annotated := pod.Annotations[RunLocallyAnnotation]; pod.Labels[PartOfLabel] != PartOfValue && !annotated {
			continue
		}
		seen[pod.UID] = true
		if pod.Spec.NodeName == "" {
			continue // not scheduled yet
		}
		k.mu.Lock()
		p := k.procs[pod.UID]
		w := k.workloads[pod.UID]
		held := k.held[pod.Namespace+"/"+pod.Name]
		k.mu.Unlock()
		workload := isWorkload(pod) || k.onOwnNetwork(pod)
		switch {
		case held:
			k.stop(pod.UID)
		case pod.DeletionTimestamp != nil:
			k.stop(pod.UID)
			err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, err)
			}
		case workload && w == nil:
			if err := k.startWorkload(ctx, pod); err != nil {
				errs = append(errs, fmt.Errorf("start pod %s/%s: %w", pod.Namespace, pod.Name, err))
			}
		case workload:
			errs = append(errs, k.updateWorkloadStatus(ctx, w))
		case p == nil:
			if err := k.start(ctx, pod); err != nil {
				errs = append(errs, fmt.Errorf("start pod %s/%s: %w", pod.Namespace, pod.Name, err))
			}
		default:
			errs = append(errs, k.updateStatus(ctx, p))
		}
	}
	k.mu.Lock()
	var gone []types.UID
	for uid := range k.procs {
		if !seen[uid] {
			gone = append(gone, uid)
		}
	}
	for uid := range k.workloads {
		if !seen[uid] {
			gone = append(gone, uid)
		}
	}
	k.mu.Unlock()
	for _, uid := range gone {
		k.stop(uid)
	}
	return errors.Join(errs...)
}

// allocateIP gives a pod an address of the upper half of its network's 10.244.<n>.0/24 (the
// member's own, or the overlapped member's for a pod on a network of its own), the one it had
// before if it had one.
func (k *Kubelet) allocateIP(uid types.UID, ownNetwork bool) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	prefix := k.podPrefix(ownNetwork)
	if ip, ok := k.lastIP[uid]; ok {
		if _, used := k.ips[ip]; !used {
			k.ips[ip] = uid
			return ip, nil
		}
	}
	for host := 130; host < 255; host++ {
		ip := fmt.Sprintf("%s%d", prefix, host)
		if _, used := k.ips[ip]; !used {
			k.ips[ip] = uid
			k.lastIP[uid] = ip
			return ip, nil
		}
	}
	return "", fmt.Errorf("no free pod address in %s128/25", prefix)
}

func (k *Kubelet) start(ctx context.Context, pod *corev1.Pod) (err error) {
	if len(pod.Spec.Containers) != 1 {
		return fmt.Errorf("the harness runs pods of exactly one container, this one has %d", len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]
	repo, tag := splitImage(ctr.Image)
	bin, err := k.binaries(repo, tag)
	if err != nil {
		return err
	}
	ip, err := k.allocateIP(pod.UID, false)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil { // the next sync tries again, with an address of its own
			k.mu.Lock()
			delete(k.ips, ip)
			k.mu.Unlock()
		}
	}()
	podDir := filepath.Join(k.dir, pod.Namespace+"_"+pod.Name)
	if err := os.MkdirAll(podDir, 0o700); err != nil {
		return err
	}
	env, err := k.env(ctx, pod, ctr, ip)
	if err != nil {
		return err
	}
	mounts, err := k.materializeVolumes(ctx, pod, ctr, podDir)
	if err != nil {
		return err
	}
	kubeconfig, err := k.serviceAccountKubeconfig(ctx, pod, podDir)
	if err != nil {
		return err
	}
	args := make([]string, 0, len(ctr.Command)+len(ctr.Args))
	for _, a := range append(append([]string{}, ctr.Command...), ctr.Args...) {
		a = expand(a, env)
		for from, to := range mounts {
			a = strings.ReplaceAll(a, from, to)
		}
		if a, err = k.resolveServiceAddress(ctx, a); err != nil {
			return err
		}
		args = append(args, a)
	}
	logFile, err := os.OpenFile(filepath.Join(podDir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace(pod)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	for name, v := range env {
		cmd.Env = append(cmd.Env, name+"="+v)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		_ = logFile.Close()
		return err
	}
	p := &podProcess{pod: pod.DeepCopy(), ip: ip, cmd: cmd, exited: make(chan struct{}), cancel: cancel}
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(p.exited) }()
	k.mu.Lock()
	k.procs[pod.UID] = p
	k.mu.Unlock()
	// Started: a status write that fails now is retried by the next sync (the address stays).
	if err := k.updateStatus(ctx, p); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet %s: status of pod %s/%s: %v\n", k.cluster.Name, pod.Namespace, pod.Name, err)
	}
	return nil
}

// updateStatus probes the container and writes the pod status a kubelet would write. A process
// that exited is restarted (restartPolicy Always) on the next sync.
// serviceAddress is <service>.<namespace>.svc[.cluster.local]:<port> in an argument.
var serviceAddress = regexp.MustCompile(`\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.cluster\.local)?:([0-9]+)\b`)

// resolveServiceAddress stands in for cluster DNS and kube-proxy, which the fleet has not:
// a Service address in an argument of a fleetmesh pod becomes a ready endpoint of the Service
// and its target port, read from the Service's EndpointSlices when the process starts (a pod
// whose Service has no ready endpoint yet is started by a later sync). The agent's Service is
// what the gateway's --xds-address names.
func (k *Kubelet) resolveServiceAddress(ctx context.Context, arg string) (string, error) {
	m := serviceAddress.FindStringSubmatchIndex(arg)
	if m == nil {
		return arg, nil
	}
	name, ns, portText := arg[m[2]:m[3]], arg[m[6]:m[7]], arg[m[12]:m[13]]
	svc, err := k.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", arg[m[0]:m[1]], err)
	}
	var portName string
	found := false
	for _, p := range svc.Spec.Ports {
		if fmt.Sprint(p.Port) == portText {
			portName, found = p.Name, true
		}
	}
	if !found {
		return "", fmt.Errorf("resolve %s: Service %s/%s has no port %s", arg[m[0]:m[1]], ns, name, portText)
	}
	slices, err := k.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", arg[m[0]:m[1]], err)
	}
	for _, es := range slices.Items {
		for _, p := range es.Ports {
			if ptr.Deref(p.Name, "") != portName || p.Port == nil {
				continue
			}
			for _, ep := range es.Endpoints {
				if ptr.Deref(ep.Conditions.Ready, true) && len(ep.Addresses) > 0 {
					return arg[:m[0]] + net.JoinHostPort(ep.Addresses[0], fmt.Sprint(*p.Port)) + arg[m[1]:], nil
				}
			}
		}
	}
	return "", fmt.Errorf("resolve %s: Service %s/%s has no ready endpoint yet", arg[m[0]:m[1]], ns, name)
}

func (k *Kubelet) updateStatus(ctx context.Context, p *podProcess) error {
	select {
	case <-p.exited:
		k.stop(p.pod.UID) // the next sync starts it again
		return nil
	default:
	}
	ready := probe(p.pod.Spec.Containers[0], p.ip)
	cached, err := k.pods.Pods(p.pod.Namespace).Get(p.pod.Name)
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	if cached.Status.PodIP == p.ip && p.ready == ready && cached.Status.Phase == corev1.PodRunning {
		return nil
	}
	pod := cached.DeepCopy() // the watch's copy is shared
	now := metav1.Now()
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = p.ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: p.ip}}
	pod.Status.HostIP = fmt.Sprintf("10.244.%d.1", k.cluster.Index)
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: st, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: st, LastTransitionTime: now},
	}
	ctr := pod.Spec.Containers[0]
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: ctr.Name, Image: ctr.Image, ImageID: ctr.Image, Ready: ready, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *pod.Status.StartTime}},
	}}
	if _, err := k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return nil // the watch has not caught up with the last write: the next sync retries
		}
		return client.IgnoreNotFound(err)
	}
	p.ready = ready
	return nil
}

// probe runs the container's HTTP readiness probe once; no probe means ready once started.
func probe(ctr corev1.Container, ip string) bool {
	rp := ctr.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil {
		return true
	}
	ready, _ := probeNetwork(context.Background(), rp, ctr, ip, "")
	return ready
}

func (k *Kubelet) stop(uid types.UID) {
	k.mu.Lock()
	if w := k.workloads[uid]; w != nil {
		delete(k.workloads, uid)
		k.mu.Unlock()
		k.stopWorkload(w)
		k.mu.Lock()
		delete(k.ips, w.ip) // free once its veth is gone
		k.mu.Unlock()
		return
	}
	p := k.procs[uid]
	delete(k.procs, uid)
	if p != nil {
		delete(k.ips, p.ip)
	}
	k.mu.Unlock()
	if p == nil {
		return
	}
	p.cancel()
	<-p.exited
}

func (k *Kubelet) stopAll() {
	k.mu.Lock()
	uids := make([]types.UID, 0, len(k.procs)+len(k.workloads))
	for uid := range k.procs {
		uids = append(uids, uid)
	}
	for uid := range k.workloads {
		uids = append(uids, uid)
	}
	k.mu.Unlock()
	for _, uid := range uids {
		k.stop(uid)
	}
}

// HoldPod stops a pod's processes and keeps them stopped, as a crashed container in back-off
// is, until ReleasePod; the pod keeps its address.
func (k *Kubelet) HoldPod(namespace, name string) {
	k.mu.Lock()
	k.held[namespace+"/"+name] = true
	k.mu.Unlock()
	k.poke()
}

// ReleasePod lets a held pod run again.
func (k *Kubelet) ReleasePod(namespace, name string) {
	k.mu.Lock()
	delete(k.held, namespace+"/"+name)
	k.mu.Unlock()
	k.poke()
}

// PIDs are the processes of the pods running now (every running container of a workload pod).
func (k *Kubelet) PIDs() []int {
	k.mu.Lock()
	defer k.mu.Unlock()
	pids := make([]int, 0, len(k.procs))
	for _, p := range k.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return append(pids, k.workloadPIDs()...)
}

// Running returns how many pods run now.
func (k *Kubelet) Running() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.procs) + len(k.workloads)
}

func (k *Kubelet) env(ctx context.Context, pod *corev1.Pod, ctr corev1.Container, ip string) (map[string]string, error) {
	env := map[string]string{}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				env[e.Name] = ip
			case "metadata.namespace":
				env[e.Name] = pod.Namespace
			case "metadata.name":
				env[e.Name] = pod.Name
			case "spec.serviceAccountName":
				env[e.Name] = pod.Spec.ServiceAccountName
			case "spec.nodeName":
				env[e.Name] = pod.Spec.NodeName
			case "status.podIPs":
				env[e.Name] = ip
			case "status.hostIP", "status.hostIPs":
				env[e.Name] = k.cluster.NodeIP()
			default:
				v, err := podField(pod, e.ValueFrom.FieldRef.FieldPath)
				if err != nil {
					return nil, fmt.Errorf("env %s: %w", e.Name, err)
				}
				env[e.Name] = v
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			v, err := resourceField(ctr, e.ValueFrom.ResourceFieldRef)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env[e.Name] = v
		case e.ValueFrom.ConfigMapKeyRef != nil:
			cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, e.ValueFrom.ConfigMapKeyRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env[e.Name] = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
		case e.ValueFrom.SecretKeyRef != nil:
			s, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, e.ValueFrom.SecretKeyRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env[e.Name] = string(s.Data[e.ValueFrom.SecretKeyRef.Key])
		default:
			return nil, fmt.Errorf("env %s: source not supported by the harness", e.Name)
		}
	}
	return env, nil
}

// resourceField is a container's resource request or limit in the divisor's unit, rounded up as
// the kubelet does; an unset CPU limit is the node's capacity (the machine's CPUs), any other
// unset value reads as 0 here.
func resourceField(ctr corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef %s not supported by the harness", ref.Resource)
	}
	list := ctr.Resources.Limits
	if kind == "requests" {
		list = ctr.Resources.Requests
	}
	q, set := list[corev1.ResourceName(name)]
	if !set {
		if kind != "limits" || name != string(corev1.ResourceCPU) {
			return "0", nil
		}
		q = *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	v := (q.MilliValue() + divisor.MilliValue() - 1) / divisor.MilliValue()
	return strconv.FormatInt(v, 10), nil
}

// materializeVolumes writes ConfigMap and Secret volumes as files and returns mount path -> dir.
func (k *Kubelet) materializeVolumes(ctx context.Context, pod *corev1.Pod, ctr corev1.Container, podDir string) (map[string]string, error) {
	out := map[string]string{}
	for _, vm := range ctr.VolumeMounts {
		var vol *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == vm.Name {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			return nil, fmt.Errorf("volume %s not found", vm.Name)
		}
		files := map[string][]byte{}
		switch {
		case vol.ConfigMap != nil:
			cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, vol.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", vm.Name, err)
			}
			for name, v := range cm.Data {
				files[name] = []byte(v)
			}
		case vol.Secret != nil:
			s, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, vol.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", vm.Name, err)
			}
			files = s.Data
		case vol.EmptyDir != nil:
		default:
			continue // projected service-account tokens: the kubeconfig carries the token
		}
		dir := filepath.Join(podDir, "volumes", vm.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return nil, err
			}
		}
		out[vm.MountPath] = dir
	}
	return out, nil
}

// serviceAccountKubeconfig writes a kubeconfig with a TokenRequest token bound to the pod.
func (k *Kubelet) serviceAccountKubeconfig(ctx context.Context, pod *corev1.Pod, podDir string) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](24 * 3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for ServiceAccount %s/%s: %w", pod.Namespace, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: k.cluster.Config.Host, CertificateAuthorityData: k.cluster.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "sa", Namespace: pod.Namespace}
	cfg.CurrentContext = "sa"
	path := filepath.Join(podDir, "kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// expand replaces $(VAR) references as the kubelet does.
func expand(s string, env map[string]string) string {
	for name, v := range env {
		s = strings.ReplaceAll(s, "$("+name+")", v)
	}
	return s
}

func splitImage(image string) (repo, tag string) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, "latest"
	}
	return image[:i], image[i+1:]
}
