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

// Command demo shows the whole mission on one machine: it starts a local fleet (a management
// cluster and three members), and prints how to reach it. With -keep it stays up until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
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
	started := time.Now()
	fmt.Printf("starting a local fleet: 1 management cluster + %d members\n", members)
	f, err := fleet.Start(ctx, fleet.Options{Members: members, BinDir: binDir, WorkDir: workDir, Regions: []string{"eu-west", "us-east"}})
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
	fmt.Printf("fleet up in %s\n\n", time.Since(started).Round(100*time.Millisecond))
	if err := kubectl(f, "get", "clusters.cluster.x-k8s.io", "-A", "-L", fleet.RegionLabel); err != nil {
		return err
	}
	fmt.Printf("\nkubeconfig (one context per cluster): %s\n", f.KubeconfigPath)
	if keep {
		fmt.Printf("the fleet lives in its own network namespace; from another shell:\n  %s kubectl --kubeconfig %s get clusters -A\n", sandbox.NetnsHint(), f.KubeconfigPath)
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
