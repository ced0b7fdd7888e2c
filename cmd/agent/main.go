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

// Command agent is fleetmesh's control plane inside one member cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/internal/agent"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/version"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

func main() {
	var (
		kubeconfig  string
		namespace   string
		probeAddr   string
		resync      time.Duration
		configPath  string
		showVersion bool
		trustAddrs  trustAddrs
	)
	flag.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig; empty uses $KUBECONFIG, else the in-cluster ServiceAccount.")
	flag.StringVar(&namespace, "namespace", envOr("POD_NAMESPACE", "fleetmesh-system"), "Namespace the agent runs and publishes its status in.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz, /readyz and /version.")
	flag.DurationVar(&resync, "resync", 30*time.Second, "How often the agent re-applies its status object.")
	flag.StringVar(&configPath, "config", "", "Path of the agent configuration rendered by the operator.")
	flag.StringVar(&trustAddrs.identity, "identity-bind-address", ":15012", "Address of the workload identity API (gRPC over TLS).")
	flag.StringVar(&trustAddrs.bundle, "bundle-bind-address", ":8443", "Address of the SPIFFE bundle endpoint (https_spiffe).")
	flag.StringVar(&trustAddrs.xds, "xds-bind-address", ":15010", "Address of the xDS server (ADS over TLS) for data-plane clients.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	klog.InitFlags(nil)
	flag.Parse()
	if showVersion {
		fmt.Println(version.Version)
		return
	}
	if err := run(kubeconfig, namespace, probeAddr, configPath, resync, trustAddrs); err != nil {
		klog.ErrorS(err, "agent stopped")
		os.Exit(1)
	}
}

type trustAddrs struct{ identity, bundle, xds string }

func run(kubeconfig, namespace, probeAddr, configPath string, resync time.Duration, addrs trustAddrs) error {
	var (
		trustOpts *agent.TrustOptions
		xdsOpts   *agent.XDSOptions
		cluster   string
	)
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		cfg := install.AgentConfig{}
		if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
			return fmt.Errorf("parse config %s: %w", configPath, err)
		}
		klog.InfoS("configured", "mesh", cfg.Mesh, "cluster", cfg.Cluster, "trustDomain", cfg.TrustDomain)
		cluster = cfg.Cluster
		if trustOpts, err = trustOptions(cfg, addrs); err != nil {
			return fmt.Errorf("config %s: %w", configPath, err)
		}
		xdsOpts = &agent.XDSOptions{
			Addr:   addrs.xds,
			Member: xds.Member{Cluster: cfg.ClusterID, Region: cfg.Locality.Region, Zone: cfg.Locality.Zone, TrustDomain: cfg.TrustDomain},
			Policy: xds.PolicyFromSpec(cfg.Failover, cfg.Authorization),
		}
	}
	// --kubeconfig, else $KUBECONFIG, else the in-cluster ServiceAccount: the usual order.
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("load cluster credentials: %w", err)
	}
	a, err := agent.New(agent.Options{Config: cfg, Namespace: namespace, Version: version.Version, Cluster: cluster, ProbeAddr: probeAddr, Resync: resync, Trust: trustOpts, XDS: xdsOpts})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}

// trustOptions reads the trust settings of the agent's config.
func trustOptions(cfg install.AgentConfig, addrs trustAddrs) (*agent.TrustOptions, error) {
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trustDomain %q: %w", cfg.TrustDomain, err)
	}
	svidTTL, err := time.ParseDuration(cfg.SVIDTTL)
	if err != nil {
		return nil, fmt.Errorf("svidTTL: %w", err)
	}
	caTTL, err := time.ParseDuration(cfg.CATTL)
	if err != nil {
		return nil, fmt.Errorf("caTTL: %w", err)
	}
	var intermediate bool
	switch cfg.CASource {
	case install.CASelfSigned, "":
	case install.CACertManager:
		intermediate = true
	default:
		return nil, fmt.Errorf("caSource %q: want %q or %q", cfg.CASource, install.CASelfSigned, install.CACertManager)
	}
	return &agent.TrustOptions{TrustDomain: td, SVIDTTL: svidTTL, CATTL: caTTL, IdentityAddr: addrs.identity, BundleAddr: addrs.bundle, Intermediate: intermediate}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
