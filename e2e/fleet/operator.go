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
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// OperatorNamespace is where config/default installs the operator.
const OperatorNamespace = "fleetmesh-system"

// DeployOperator applies `kustomize build config/default` to the management cluster by
// server-side apply, as a user installing fleetmesh would: the operator then runs (through the
// management cluster's kubelet) with exactly the RBAC and arguments that ship.
func (f *Fleet) DeployOperator(ctx context.Context) error {
	out, err := ConfigDefault()
	if err != nil {
		return err
	}
	return ApplyYAML(ctx, f.Management.Client, out)
}

// ConfigDefault is `kustomize build config/default`: what a kustomize install applies.
func ConfigDefault() ([]byte, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(filepath.Join(root, "bin", "kustomize"), "build", filepath.Join(root, "config", "default")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("kustomize build config/default (make tools installs kustomize): %v: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("kustomize build config/default (make tools installs kustomize): %w", err)
	}
	return out, nil
}

// ApplyYAML server-side applies every object of a multi-document YAML stream, in order.
func ApplyYAML(ctx context.Context, c client.Client, data []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("decode manifest: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("fleet-harness"), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", u.GetKind(), client.ObjectKeyFromObject(u), err)
		}
	}
}

// RunFleetmesh makes the fleet run fleetmesh as a user's clusters would: a kubelet per cluster
// runs fleetmesh's pods as processes (images stand for binaries built into imagesDir), the
// operator is installed from config/default, and RunFleetmesh returns once it is available.
// The kubelets stop, with their processes, when ctx ends.
func (f *Fleet) RunFleetmesh(ctx context.Context, imagesDir string) (map[string]*Kubelet, error) {
	binaries := FleetmeshBinaries(imagesDir)
	kubelets := map[string]*Kubelet{}
	for _, c := range append([]*Cluster{f.Management}, f.Members...) {
		k, err := f.StartKubelet(ctx, c, binaries)
		if err != nil {
			return nil, err
		}
		kubelets[c.Name] = k
	}
	if err := f.DeployOperator(ctx); err != nil {
		return nil, err
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		dep := &appsv1.Deployment{}
		err := f.Management.Client.Get(ctx, client.ObjectKey{Namespace: OperatorNamespace, Name: "fleetmesh-controller-manager"}, dep)
		return err == nil && dep.Status.AvailableReplicas >= 1, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the operator from config/default never became available (logs in %s): %w", f.opts.WorkDir, err)
	}
	return kubelets, nil
}

// Scrape returns what a process's /metrics serves at ip:port.
func Scrape(ip string, port int) (string, error) {
	return scrapeAddr(fmt.Sprintf("%s:%d", ip, port))
}

// sample is one line of the Prometheus text format: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// seriesLabel is one name="value" pair of a series in the Prometheus text format.
var seriesLabel = regexp.MustCompile(`([a-z_]+)="([^"]*)"`)

// samples are the samples of metric name in what Scrape returned.
func samples(exposition, name string) []sample {
	var out []sample
	for _, line := range strings.Split(exposition, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (!strings.HasPrefix(rest, "{") && !strings.HasPrefix(rest, " ")) {
			continue
		}
		s := sample{labels: map[string]string{}}
		if strings.HasPrefix(rest, "{") {
			i := strings.Index(rest, "} ")
			if i < 0 {
				continue
			}
			for _, m := range seriesLabel.FindAllStringSubmatch(rest[:i+1], -1) {
				s.labels[m[1]] = m[2]
			}
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// SeriesSum adds up, in what Scrape returned, the samples of metric name whose labels include
// every name="value" pair given (no pair: every series of the metric); 0 when there is none.
func SeriesSum(exposition, name string, labels ...string) float64 {
	var sum float64
	for _, s := range samples(exposition, name) {
		matches := true
		for i := 0; i+1 < len(labels); i += 2 {
			matches = matches && s.labels[labels[i]] == labels[i+1]
		}
		if matches {
			sum += s.value
		}
	}
	return sum
}

// VerifiedServers are the server identities a client sidecar's /metrics (what Scrape returned)
// shows it verified in the mTLS handshakes of its outbound requests to a destination service
// whose name contains service: the destination_trust_domain, _namespace and _workload labels
// put back together as spiffe://<td>/ns/<namespace>/sa/<workload>, sorted, each once.
func VerifiedServers(exposition, service string) []string {
	seen := map[string]bool{}
	for _, s := range samples(exposition, "fleetmesh_proxy_requests_total") {
		l := s.labels
		if l["direction"] != "outbound" || !strings.Contains(l["destination_service"], service) || l["destination_trust_domain"] == "unknown" {
			continue
		}
		seen["spiffe://"+l["destination_trust_domain"]+"/ns/"+l["destination_namespace"]+"/sa/"+l["destination_workload"]] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

func scrapeAddr(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// operatorPods selects the operator's pods (config/manager's labels).
var operatorPods = client.MatchingLabels{"app.kubernetes.io/name": "fleetmesh-manager"}

// RestartOperator deletes the operator's pods: the Deployment controller makes a new one, leader
// election hands over, and the new operator reconnects to every member.
func (f *Fleet) RestartOperator(ctx context.Context) error {
	return f.Management.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(OperatorNamespace), operatorPods)
}

// OperatorMetrics returns what the running operator's /metrics serves (port 8080, as
// config/manager sets it).
func (f *Fleet) OperatorMetrics(ctx context.Context) (string, error) {
	pods := &corev1.PodList{}
	if err := f.Management.Client.List(ctx, pods, client.InNamespace(OperatorNamespace), operatorPods); err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			return Scrape(p.Status.PodIP, 8080)
		}
	}
	return "", fmt.Errorf("no running operator pod in %s", OperatorNamespace)
}

// PrintOperatorLogs writes the last lines of the log of every operator pod the management
// cluster's kubelet has run (stopped ones too), for a failed spec to show what the operators did.
func (f *Fleet) PrintOperatorLogs(w io.Writer, lines int) {
	logs, _ := filepath.Glob(filepath.Join(f.opts.WorkDir, "kubelet-"+ManagementName, OperatorNamespace+"_*", "log"))
	for _, p := range logs {
		raw, err := os.ReadFile(p)
		if err != nil {
			_, _ = fmt.Fprintf(w, "%s: %v\n", p, err)
			continue
		}
		all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		_, _ = fmt.Fprintf(w, "---- %s (last %d of %d lines)\n", filepath.Base(filepath.Dir(p)), min(lines, len(all)), len(all))
		_, _ = fmt.Fprintln(w, strings.Join(all[max(0, len(all)-lines):], "\n"))
	}
}
