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

// Command proxy is fleetmesh's data plane (image ghcr.io/fleetmesh/proxy): `proxy init` writes a
// pod's traffic capture rules (its init container), `proxy sidecar` is the pod's sidecar proxy,
// `proxy gateway` a member's east-west gateway.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"

	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/proxy/capture"
	"github.com/fleetmesh/fleetmesh/internal/version"
)

const usage = `usage: proxy <init|sidecar|gateway|version> [flags]
  init     write the pod's capture rules (run as the pod's init container, with NET_ADMIN)
  sidecar  run the sidecar proxy (as uid 1337, which the capture exempts)
  gateway  run the member's east-west gateway (routes mTLS by SNI, terminates nothing)
  version  print the version`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "init":
		err = capture.RunInit(os.Args[2:])
	case "sidecar":
		var o proxy.SidecarOptions
		if o, err = proxy.ParseSidecarFlags(os.Args[2:]); err == nil {
			err = runRole(func(ctx context.Context, log logr.Logger) error { return proxy.RunSidecar(ctx, o, log) })
		}
	case "gateway":
		var o proxy.GatewayOptions
		if o, err = proxy.ParseGatewayFlags(os.Args[2:]); err == nil {
			err = runRole(func(ctx context.Context, log logr.Logger) error { return proxy.RunGateway(ctx, o, log) })
		}
	case "version":
		fmt.Println(version.Version)
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}

// runRole runs a long-lived role with the runtime tuned to the pod, until SIGINT or SIGTERM.
// Its log is the standard library's structured text log on stderr (V(0) and errors, as klog's
// default verbosity had it): the proxy links no logging library.
func runRole(run func(context.Context, logr.Logger) error) error {
	tuneRuntime(os.Getenv, cgroupMemoryMax)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return run(ctx, logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
}
