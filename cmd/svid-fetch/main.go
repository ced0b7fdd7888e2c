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

// Command svid-fetch gets a workload's X.509-SVID from its member's fleetmesh agent and keeps
// it renewed: cert.pem, key.pem and bundle-map.json in a directory, for proxyless gRPC's
// file_watcher certificate provider or any other reader.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/klog/v2"

	"github.com/fleetmesh/fleetmesh/internal/identityclient"
	"github.com/fleetmesh/fleetmesh/internal/version"
)

func main() {
	var (
		opts        identityclient.Options
		trustDomain string
		once        bool
		showVersion bool
	)
	// The default address is the agent Service's identity port as internal/install renders it.
	flag.StringVar(&opts.Address, "address", "fleetmesh-agent.fleetmesh-system.svc:15012", "The agent's identity API, host:port.")
	flag.StringVar(&trustDomain, "trust-domain", "", "The member's SPIFFE trust domain (required).")
	flag.StringVar(&opts.TokenFile, "token-file", "/var/run/secrets/fleetmesh/token", "ServiceAccount token with audience fleetmesh (a projected volume).")
	flag.StringVar(&opts.TrustFile, "trust-file", "", "The member's roots to authenticate the agent: PEM, SPIFFE bundle or bundle map. Empty: the bundle map a previous fetch wrote in --dir.")
	flag.StringVar(&opts.Dir, "dir", "/var/run/secrets/fleetmesh/svid", "Directory receiving cert.pem, key.pem and bundle-map.json.")
	flag.BoolVar(&once, "once", false, "Fetch once and exit instead of renewing at half-life.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	klog.InitFlags(nil)
	flag.Parse()
	if showVersion {
		fmt.Println(version.Version)
		return
	}
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		klog.ErrorS(err, "invalid --trust-domain")
		os.Exit(2)
	}
	opts.TrustDomain = td
	opts.Log = klog.Background().WithName("svid-fetch")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if once {
		res, err := identityclient.Fetch(ctx, opts)
		if err != nil {
			klog.ErrorS(err, "fetch SVID")
			os.Exit(1)
		}
		klog.InfoS("SVID written", "id", res.ID.String(), "notAfter", res.NotAfter, "dir", opts.Dir)
		return
	}
	if err := identityclient.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "svid-fetch stopped")
		os.Exit(1)
	}
}
