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
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/internal/inject"
	"github.com/fleetmesh/fleetmesh/internal/proxy"
)

// The plain HTTP workload of the sidecar e2e and the demo: e2e/cmd/httpecho, an ordinary
// program that links nothing of fleetmesh.
const (
	HTTPEchoImage = "ghcr.io/fleetmesh/e2e-httpecho:e2e"
	HTTPEchoPort  = 8080
	TCPEchoPort   = 9000
)

// XFCC is the X-Forwarded-Client-Cert header an echo reply shows: what the server's sidecar
// verified of the caller.
func (r HTTPEchoReply) XFCC() string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, proxy.HeaderXFCC) {
			return v
		}
	}
	return ""
}

// BuildHTTPEcho builds httpecho into dir, for tests to run in pods (Kubelet.Exec).
func BuildHTTPEcho(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "httpecho")
	build := exec.Command("go", "build", "-o", bin, "./e2e/cmd/httpecho")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build httpecho: %w: %s", err, out)
	}
	return bin, nil
}

// EnableInjection labels namespace ns of every member mesh.fleetmesh.io/inject=enabled.
func EnableInjection(ctx context.Context, members []*Cluster, ns string) error {
	for _, m := range members {
		nsObj := &corev1.Namespace{}
		if err := m.Client.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
			return err
		}
		if nsObj.Labels == nil {
			nsObj.Labels = map[string]string{}
		}
		nsObj.Labels[inject.InjectLabel] = inject.InjectEnabled
		if err := m.Client.Update(ctx, nsObj); err != nil {
			return fmt.Errorf("label namespace %s of %s: %w", ns, m.Name, err)
		}
	}
	return nil
}

// PodReady tells whether a pod's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PrintPodLogs writes, for every pod of namespace ns in every member, the logs of the given
// containers: what a failed e2e spec shows.
func PrintPodLogs(ctx context.Context, w io.Writer, kubelets map[string]*Kubelet, members []*Cluster, ns string, containers ...string) {
	for _, m := range members {
		pods := &corev1.PodList{}
		_ = m.Client.List(ctx, pods, client.InNamespace(ns))
		for _, p := range pods.Items {
			for _, ctr := range containers {
				logs, _ := kubelets[m.Name].Logs(ns, p.Name, ctr)
				_, _ = fmt.Fprintf(w, "--- %s %s/%s %s:\n%s\n", m.Name, ns, p.Name, ctr, logs)
			}
		}
	}
}

// HTTPEchoPodSpec runs httpecho (HTTP on HTTPEchoPort, TCP echo on TCPEchoPort) as the pod's
// one application container, under ServiceAccount sa.
func HTTPEchoPodSpec(member, sa string) corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName: sa,
		Containers: []corev1.Container{{
			Name: "app", Image: HTTPEchoImage,
			Args:  []string{"--listen", fmt.Sprintf(":%d", HTTPEchoPort), "--tcp-listen", fmt.Sprintf(":%d", TCPEchoPort), "--member", member},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: HTTPEchoPort}, {Name: "tcp-echo", ContainerPort: TCPEchoPort}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(HTTPEchoPort)}},
				PeriodSeconds: 1},
		}},
	}
}

// DeployHTTPEcho creates, in namespace ns of m, the ServiceAccount "echo", a Deployment "echo"
// of one httpecho pod, its Service (ports http and tcp-echo) and a ServiceExport.
func DeployHTTPEcho(ctx context.Context, m *Cluster, ns string) error {
	labels := map[string]string{"app": "echo"}
	objs := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns}},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{RunLocallyAnnotation: "true"}},
					Spec:       HTTPEchoPodSpec(m.Name, "echo"),
				},
			},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
				{Name: "http", Port: HTTPEchoPort, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "tcp-echo", Port: TCPEchoPort, TargetPort: intstr.FromString("tcp-echo"), Protocol: corev1.ProtocolTCP},
			}},
		},
		&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns}},
	}
	for _, o := range objs {
		if err := client.IgnoreAlreadyExists(m.Client.Create(ctx, o)); err != nil {
			return fmt.Errorf("create %T %s/%s in %s: %w", o, ns, o.GetName(), m.Name, err)
		}
	}
	return nil
}

// RunHTTPEchoPod creates a pod running httpecho under ServiceAccount sa (created if missing) and
// waits until it is Ready.
func RunHTTPEchoPod(ctx context.Context, m *Cluster, ns, name, sa string, podLabels map[string]string) (*corev1.Pod, error) {
	if err := client.IgnoreAlreadyExists(m.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}})); err != nil {
		return nil, err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: podLabels, Annotations: map[string]string{RunLocallyAnnotation: "true"}},
		Spec:       HTTPEchoPodSpec(m.Name, sa),
	}
	if err := m.Client.Create(ctx, pod); err != nil {
		return nil, err
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s in %s never became ready (status %+v): %w", ns, name, m.Name, pod.Status, err)
	}
	return pod, nil
}

// HTTPEchoReply is httpecho's answer to a GET.
type HTTPEchoReply struct {
	Member  string            `json:"member"`
	Pod     string            `json:"pod"`
	Headers map[string]string `json:"headers"`
}

// HTTPEchoLoadLine is one line of `httpecho load`: a request, when it was due, and its outcome.
type HTTPEchoLoadLine struct {
	AtUnixNano int64  `json:"at_unix_nano"`
	Status     int    `json:"status"`
	Member     string `json:"member"`
	Error      string `json:"error"`
}

// ParseHTTPEchoLoad reads the output of `httpecho load`, a JSON line per request.
func ParseHTTPEchoLoad(out string) ([]HTTPEchoLoadLine, error) {
	var lines []HTTPEchoLoadLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l HTTPEchoLoadLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return nil, fmt.Errorf("httpecho load line %q: %w", line, err)
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// HTTPEchoGet runs `httpecho get url` (the binary at bin) inside a pod, as `kubectl exec` would,
// and returns the answer.
func (k *Kubelet) HTTPEchoGet(ctx context.Context, bin, ns, pod, url string) (HTTPEchoReply, error) {
	var r HTTPEchoReply
	out, err := k.ExecOutput(ctx, ns, pod, bin, "get", url)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal([]byte(out), &r)
}

// ExecOutput runs argv in a pod (Exec) with a one-minute limit and returns its stdout.
func (k *Kubelet) ExecOutput(ctx context.Context, ns, pod string, argv ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd, err := k.Exec(cctx, ns, pod, argv...)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%v: %s", err, stderr.String())
	}
	return stdout.String(), nil
}
