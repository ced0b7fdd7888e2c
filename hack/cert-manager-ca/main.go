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

// Command cert-manager-ca runs a minimal subset of cert-manager's own
// controllers (Issuer/ClusterIssuer readiness, CertificateRequest approval and
// CA-issuer signing) against the API server named by --kubeconfig. It exists
// for tests: no webhook, no cainjector, no ACME, no leader election, no
// metrics or health endpoints. It lives in its own module so cert-manager's
// large dependency tree stays out of the operator's go.mod.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// The controller packages register themselves with controller.Known()
	// in init; the CA issuer registers itself with the issuer factory that
	// the issuers/clusterissuers controllers use to run its Setup.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
)

// controllers are the cert-manager controllers this runner starts, by their
// registered names.
var controllers = []string{
	"issuers",
	"clusterissuers",
	"certificaterequests-issuer-ca",
	"certificaterequests-approver",
}

// readyLine is printed to stdout once every controller's informers have synced.
const readyLine = "cert-manager-ca: running"

func main() {
	klog.InitFlags(flag.CommandLine) // -v=N etc.; klog writes to stderr
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig of the target API server (required)")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"namespace holding the Secrets that ClusterIssuers refer to")
	workers := flag.Int("workers", 2, "workers per controller")
	flag.Parse()
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "cert-manager-ca: --kubeconfig is required")
		flag.Usage()
		os.Exit(2)
	}
	klog.EnableContextualLogging(true)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, *kubeconfig, *clusterResourceNamespace, *workers)
	klog.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-ca:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, clusterResourceNamespace string, workers int) error {
	ctx = logf.NewContext(ctx, logf.Log, "cert-manager-ca")
	log := logf.FromContext(ctx)

	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		// Namespace "" watches all namespaces (required for clusterissuers).
		IssuerOptions: controller.IssuerOptions{ClusterResourceNamespace: clusterResourceNamespace},
		// ConfigOptions.EnableGatewayAPI stays false: no Gateway API discovery.
	})
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}

	// Constructing a controller requests the informers it needs from the
	// shared factories, so every controller must be built before the
	// factories are started.
	ifaces := map[string]controller.Interface{}
	for _, name := range controllers {
		constructor, ok := controller.Known()[name]
		if !ok {
			return fmt.Errorf("controller %q is not registered", name)
		}
		if ifaces[name], err = constructor(factory); err != nil {
			return fmt.Errorf("constructing controller %q: %w", name, err)
		}
	}

	// Every Context built by the factory shares the same informer factories.
	shared, err := factory.Build("cert-manager-ca")
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(ifaces))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for name, iface := range ifaces {
		wg.Go(func() {
			log.V(logf.InfoLevel).Info("starting controller", "controller", name)
			if err := iface.Run(workers, runCtx); err != nil {
				errs <- fmt.Errorf("controller %q: %w", name, err)
				cancel()
			}
		})
	}

	shared.SharedInformerFactory.Start(runCtx.Done())
	shared.KubeSharedInformerFactory.Start(runCtx.Done())
	// Unused by these controllers; started so nothing waits on it.
	shared.HTTP01ResourceMetadataInformersFactory.Start(runCtx.Done())

	if synced(shared.SharedInformerFactory.WaitForCacheSync(runCtx.Done())) &&
		synced(shared.KubeSharedInformerFactory.WaitForCacheSync(runCtx.Done())) {
		fmt.Println(readyLine)
	}

	wg.Wait()
	cancel() // Shutdown waits for the informers, which stop with runCtx.
	shared.HTTP01ResourceMetadataInformersFactory.Shutdown()
	shared.SharedInformerFactory.Shutdown()
	shared.KubeSharedInformerFactory.Shutdown()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) == 0 {
		log.V(logf.InfoLevel).Info("controllers stopped")
	}
	return errors.Join(all...)
}

// synced reports whether every informer in a WaitForCacheSync result synced.
func synced[K comparable](m map[K]bool) bool {
	for _, ok := range m {
		if !ok {
			return false
		}
	}
	return true
}
