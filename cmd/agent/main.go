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
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/internal/agent"
	"github.com/fleetmesh/fleetmesh/internal/inject"
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
		injector    injectorFlags
	)
	flag.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig; empty uses $KUBECONFIG, else the in-cluster ServiceAccount.")
	flag.StringVar(&namespace, "namespace", envOr("POD_NAMESPACE", "fleetmesh-system"), "Namespace the agent runs and publishes its status in.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz, /readyz and /version.")
	flag.DurationVar(&resync, "resync", 30*time.Second, "How often the agent re-applies its status object.")
	flag.StringVar(&configPath, "config", "", "Path of the agent configuration rendered by the operator.")
	flag.StringVar(&trustAddrs.identity, "identity-bind-address", ":15012", "Address of the workload identity API (gRPC over TLS).")
	flag.StringVar(&trustAddrs.bundle, "bundle-bind-address", ":8443", "Address of the SPIFFE bundle endpoint (https_spiffe).")
	flag.StringVar(&trustAddrs.xds, "xds-bind-address", ":15010", "Address of the xDS server (ADS over TLS) for data-plane clients.")
	flag.StringVar(&trustAddrs.dns, "dns-bind-address", "", "Address (UDP and TCP) of the clusterset.local DNS server; empty turns it off.")
	flag.StringVar(&injector.bind, "injector-bind-address", "", "Address of the sidecar injector's mutating webhook (HTTPS); empty turns the injector off.")
	flag.StringVar(&injector.proxyImage, "proxy-image", "", "The sidecar proxy image the injector adds to pods (repository:tag).")
	flag.StringVar(&injector.agentAddress, "sidecar-agent-address", os.Getenv("POD_IP"),
		"Host (IP or DNS name) injected proxies reach this member's agent at, for xDS and the identity API (ports "+
			fmt.Sprint(install.XDSPort)+" and "+fmt.Sprint(install.IdentityPort)+"). Defaults to $POD_IP, the agent pod's own address, "+
			"since the test fleet has neither kube-proxy nor cluster DNS; a real cluster may set the Service name "+
			install.AgentName+"."+install.Namespace+".svc, so proxies follow any ready agent.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	klog.InitFlags(nil)
	flag.Parse()
	if showVersion {
		fmt.Println(version.Version)
		return
	}
	if err := run(kubeconfig, namespace, probeAddr, configPath, resync, trustAddrs, injector); err != nil {
		klog.ErrorS(err, "agent stopped")
		os.Exit(1)
	}
}

// policyOf reads the data-plane policy from the agent's ConfigMap as the operator renders it.
func policyOf(data map[string]string) (xds.Policy, error) {
	cfg := install.AgentConfig{}
	if err := yaml.UnmarshalStrict([]byte(data[install.ConfigFileName]), &cfg); err != nil {
		return xds.Policy{}, fmt.Errorf("%s: %w", install.ConfigFileName, err)
	}
	return xds.PolicyFromSpec(cfg.Failover, cfg.Authorization), nil
}

type trustAddrs struct{ identity, bundle, xds, dns string }

type injectorFlags struct{ bind, proxyImage, agentAddress string }

func run(kubeconfig, namespace, probeAddr, configPath string, resync time.Duration, addrs trustAddrs, inj injectorFlags) error {
	var (
		trustOpts    *agent.TrustOptions
		xdsOpts      *agent.XDSOptions
		injectorOpts *agent.InjectorOptions
		cluster      string
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
			Addr:    addrs.xds,
			DNSAddr: addrs.dns,
			Member:  xds.Member{Cluster: cfg.ClusterID, Region: cfg.Locality.Region, Zone: cfg.Locality.Zone, TrustDomain: cfg.TrustDomain},
			Policy:  xds.PolicyFromSpec(cfg.Failover, cfg.Authorization),
			// The operator leaves the policy out of the agent's config hash: an edit reaches
			// the proxies through this watch, without rolling the agent.
			PolicyConfigMap: install.ConfigMapName,
			PolicyOf:        policyOf,
		}
		if inj.bind != "" {
			if injectorOpts, err = injectorOptions(cfg, namespace, inj); err != nil {
				return err
			}
		}
	} else if inj.bind != "" {
		return fmt.Errorf("--injector-bind-address needs --config: the injector signs with the member's CA")
	}
	// --kubeconfig, else $KUBECONFIG, else the in-cluster ServiceAccount: the usual order.
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("load cluster credentials: %w", err)
	}
	a, err := agent.New(agent.Options{Config: cfg, Namespace: namespace, Version: version.Version, Cluster: cluster, ProbeAddr: probeAddr, Resync: resync, Trust: trustOpts, XDS: xdsOpts, Injector: injectorOpts})
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

// injectorOptions are the sidecar injector's settings: the serving certificate's names (the
// agent Service's DNS names and the pod's address) and what injected proxies are given.
func injectorOptions(cfg install.AgentConfig, namespace string, f injectorFlags) (*agent.InjectorOptions, error) {
	host, _, err := net.SplitHostPort(f.bind)
	if err != nil {
		return nil, fmt.Errorf("--injector-bind-address %q: %w", f.bind, err)
	}
	var ips []net.IP
	for _, s := range []string{host, os.Getenv("POD_IP")} {
		ip := net.ParseIP(s)
		if ip == nil || ip.IsUnspecified() || slices.ContainsFunc(ips, ip.Equal) {
			continue
		}
		ips = append(ips, ip)
	}
	agentHost := f.agentAddress
	if agentHost == "" && len(ips) > 0 {
		agentHost = ips[0].String()
	}
	if agentHost == "" {
		return nil, errors.New("--sidecar-agent-address is required when neither $POD_IP nor --injector-bind-address names the agent's address")
	}
	if f.proxyImage == "" {
		return nil, errors.New("--proxy-image is required with --injector-bind-address")
	}
	service := install.AgentName + "." + namespace + ".svc"
	return &agent.InjectorOptions{
		Addr:                 f.bind,
		DNSNames:             []string{service, service + ".cluster.local"},
		IPs:                  ips,
		WebhookConfiguration: install.WebhookConfigurationName,
		Webhook:              install.WebhookName,
		Sidecar: inject.Config{
			ProxyImage:      f.proxyImage,
			XDSAddress:      net.JoinHostPort(agentHost, strconv.Itoa(install.XDSPort)),
			IdentityAddress: net.JoinHostPort(agentHost, strconv.Itoa(install.IdentityPort)),
			TrustDomain:     cfg.TrustDomain,
			ClusterID:       cfg.ClusterID,
			// The agent's own namespace is the control plane's.
			ControlPlaneNamespace: namespace,
		},
	}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
