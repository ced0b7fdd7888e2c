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

// Command manager is the fleetmesh operator: it reconciles MeshInstallations into mesh
// control planes across the Cluster API clusters they select.
package main

import (
	"flag"
	"fmt"
	"os"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/fleetmesh/fleetmesh/cmd/manager/app"
	"github.com/fleetmesh/fleetmesh/internal/version"
)

func main() {
	var (
		metricsAddr      string
		probeAddr        string
		leaderElect      bool
		leaderElectionNS string
		showVersion      bool
		webhookOpts      app.WebhookOptions
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles at a time.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the leader-election Lease; defaults to $POD_NAMESPACE.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	flag.StringVar(&webhookOpts.Addr, "webhook-bind-address", "0", "Address the MeshInstallation admission webhook (HTTPS) binds to; 0 disables it.")
	flag.StringVar(&webhookOpts.CertDir, "webhook-cert-dir", "", "Directory of the webhook's tls.crt and tls.key, reloaded when they change (default /tmp/k8s-webhook-server/serving-certs, where OLM mounts them); unused with --webhook-cert-secret.")
	flag.StringVar(&webhookOpts.CertSecret, "webhook-cert-secret", "", "Secret in $POD_NAMESPACE where the operator keeps its own webhook CA (read and updated by name, never created), issuing its serving certificate from it; empty: serve the one in --webhook-cert-dir.")
	flag.StringVar(&webhookOpts.Configuration, "webhook-configuration", "", "ValidatingWebhookConfiguration whose caBundle the operator keeps, with --webhook-cert-secret.")
	// Millisecond timestamps by default (--zap-time-encoding overrides): a join takes seconds.
	opts := zap.Options{TimeEncoder: zapcore.RFC3339NanoTimeEncoder}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	if webhookOpts.Addr == "0" {
		webhookOpts.Addr = ""
	}
	webhookOpts.Namespace = os.Getenv("POD_NAMESPACE")
	if showVersion {
		fmt.Println(version.Version)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	mgr, err := app.NewManager(ctx, ctrl.GetConfigOrDie(), app.Options{
		MetricsAddr: metricsAddr, ProbeAddr: probeAddr, LeaderElect: leaderElect, LeaderElectionNS: leaderElectionNS,
		Webhook: webhookOpts,
	})
	if err != nil {
		log.Error(err, "set up the manager")
		os.Exit(1)
	}
	log.Info("starting manager", "version", version.Version)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
