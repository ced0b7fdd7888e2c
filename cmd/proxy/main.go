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
// pod's traffic capture rules (its init container), `proxy sidecar` is the pod's sidecar proxy.
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

const usage = `usage: proxy <init|sidecar|version> [flags]
  init     write the pod's capture rules (run as the pod's init container, with NET_ADMIN)
  sidecar  run the sidecar proxy (as uid 1337, which the capture exempts)
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
		tuneRuntime(os.Getenv, cgroupMemoryMax)
		var o proxy.SidecarOptions
		if o, err = proxy.ParseSidecarFlags(os.Args[2:]); err == nil {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// The standard library's structured text log on stderr (V(0) and errors, as
			// klog's default verbosity had it): the proxy links no logging library.
			err = proxy.RunSidecar(ctx, o, logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
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
