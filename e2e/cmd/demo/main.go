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

// Command demo shows the mission on one machine: it starts a local fleet (a management cluster
// and three members), installs the operator from config/default, applies the sample
// MeshInstallation, waits until the mesh is Ready and prints the fleet. With -keep it stays up
// until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
	"github.com/fleetmesh/fleetmesh/internal/inject"
	"github.com/fleetmesh/fleetmesh/internal/proxy"
)

func main() {
	sandbox.Enter()
	var (
		binDir  string
		members int
		keep    bool
	)
	flag.StringVar(&binDir, "bin", "bin", "Directory with etcd, kube-apiserver and the fleetmesh binaries.")
	flag.IntVar(&members, "members", 3, "Number of member clusters.")
	flag.BoolVar(&keep, "keep", false, "Keep the fleet running until interrupted.")
	flag.Parse()
	if err := run(binDir, members, keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(binDir string, members int, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	workDir, err := os.MkdirTemp("", "fleetmesh-demo-")
	if err != nil {
		return err
	}
	binDir, err = filepath.Abs(binDir)
	if err != nil {
		return err
	}
	started := time.Now()
	step := func(format string, args ...any) {
		fmt.Printf("[%5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	step("starting a local fleet: 1 management cluster + %d members (etcd, kube-apiserver, controller-manager, scheduler, kwok each)", members)
	f, err := fleet.Start(ctx, fleet.Options{Members: members, BinDir: binDir, WorkDir: workDir, Full: true, Regions: []string{"eu-west", "us-east"}})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("tearing the fleet down")
		if err := f.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stop fleet:", err)
		}
		_ = os.RemoveAll(workDir)
	}()
	kctx, cancelKubelets := context.WithCancel(ctx)
	defer cancelKubelets()
	step("fleet up; installing the operator from config/default into management")
	kubelets, err := f.RunFleetmesh(kctx, filepath.Join(binDir, "images"))
	if err != nil {
		return err
	}
	root, err := fleet.RepoRoot()
	if err != nil {
		return err
	}
	sample, err := os.ReadFile(filepath.Join(root, "config", "samples", "mesh_v1alpha1_meshinstallation.yaml"))
	if err != nil {
		return err
	}
	step("applying config/samples/mesh_v1alpha1_meshinstallation.yaml")
	if err := fleet.ApplyYAML(ctx, f.Management.Client, sample); err != nil {
		return err
	}
	step("waiting for MeshInstallation demo to be Ready")
	if err := kubectl(f, "wait", "meshinstallation/demo", "--for=condition=Ready", "--timeout=5m"); err != nil {
		_ = kubectl(f, "get", "meshinstallations,meshclusters", "-A", "-o", "wide")
		return fmt.Errorf("the mesh did not become Ready: %w", err)
	}
	step("the mesh is Ready\n")
	if err := kubectl(f, "get", "meshinstallations,meshclusters", "-A", "-o", "wide"); err != nil {
		return err
	}
	fmt.Println()
	if err := kubectl(f, "--context", fleet.MemberName(0), "get", "deployments,pods", "-n", "fleetmesh-system", "-o", "wide"); err != nil {
		return err
	}
	fmt.Println()
	if err := crossMemberCall(ctx, f, kubelets, filepath.Join(binDir, "images"), step); err != nil {
		return err
	}
	fmt.Printf("\nkubeconfig (one context per cluster: %s, %s..%s): %s\n", fleet.ManagementName, fleet.MemberName(0), fleet.MemberName(members-1), f.KubeconfigPath)
	if !keep {
		fmt.Println("(removed at teardown: run 'make demo DEMO_FLAGS=-keep' to explore the fleet with kubectl)")
	}
	if keep {
		fmt.Printf("the fleet lives in its own network namespace; from another shell:\n  %s kubectl --kubeconfig %s get meshclusters -A\n", sandbox.NetnsHint(), f.KubeconfigPath)
		fmt.Println("press Ctrl-C to tear it down")
		<-ctx.Done()
	}
	return nil
}

func kubectl(f *fleet.Fleet, args ...string) error {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", f.KubeconfigPath}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// crossMemberCall shows the point of the mesh: a plain HTTP client (httpecho, which links nothing
// of fleetmesh) in an injected pod of the first member calls a service that only the second
// member runs and exports, by its clusterset.local name; both sidecars carry it over mTLS.
func crossMemberCall(ctx context.Context, f *fleet.Fleet, kubelets map[string]*fleet.Kubelet, imagesDir string, step func(string, ...any)) error {
	const ns = "demo"
	client, server := f.Members[0], f.Members[1]
	step("labelling namespace %s for injection in every member; %s runs the echo Deployment and exports it", ns, server.Name)
	for _, m := range f.Members {
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.InjectLabel: inject.InjectEnabled}}}
		if err := m.Client.Create(ctx, nsObj); err != nil {
			return err
		}
	}
	if err := fleet.DeployHTTPEcho(ctx, server, ns); err != nil {
		return err
	}
	step("starting an injected client pod in %s", client.Name)
	if _, err := fleet.RunHTTPEchoPod(ctx, client, ns, "client", "client", nil); err != nil {
		return err
	}
	httpecho, err := fleet.FleetmeshBinaries(imagesDir)(fleet.HTTPEchoImage[:strings.LastIndex(fleet.HTTPEchoImage, ":")], "demo")
	if err != nil {
		return err
	}
	url := "http://echo.demo.svc.clusterset.local:8080/"
	var r fleet.HTTPEchoReply
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r, err = kubelets[client.Name].HTTPEchoGet(ctx, httpecho, ns, "client", url)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the cross-member call never succeeded: %w", err)
	}
	step("%s/client in %s ran: httpecho get %s", ns, client.Name, url)
	fmt.Printf("  answered by the echo pod in %s\n", r.Member)
	v := r.XFCC()
	if v == "" {
		return fmt.Errorf("the echo app got no %s header: the call did not cross the mesh's mTLS", proxy.HeaderXFCC)
	}
	fmt.Printf("  server side: the echo pod's sidecar verified the caller over mTLS and told the app %s: %s\n", proxy.HeaderXFCC, v)
	pod := &corev1.Pod{}
	if err := client.Client.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "client"}, pod); err != nil {
		return err
	}
	var servers []string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		out, err := fleet.Scrape(pod.Status.PodIP, inject.MetricsPort)
		servers = fleet.VerifiedServers(out, "echo.demo.svc.clusterset.local")
		return err == nil && len(servers) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("the client's sidecar shows no server identity it verified: %w", err)
	}
	fmt.Printf("  client side: the client pod's sidecar verified the server as %s (its fleetmesh_proxy_requests_total destination labels)\n", strings.Join(servers, ", "))
	return nil
}
