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

package wire

import (
	"fmt"
	"strings"
	"time"
)

// The contract between the agent and the sidecar proxy (cmd/proxy): the names of the proxy
// resource set the agent's xDS server serves (internal/xds, proxynames.go, which re-exports
// them) and the probe rewrite of the injector (internal/inject, which re-exports those). They
// live here so that the proxy binary links neither the agent's xDS builder nor the
// Kubernetes API types: only the standard library.

// The proxy resource set's names, ports and ALPN values.
const (
	// ProxyMetadataKey in the node's metadata selects the proxy resource set; its value is the
	// proxy's role (ProxyRoleSidecar).
	ProxyMetadataKey = "fleetmesh.io/proxy"
	ProxyRoleSidecar = "sidecar"

	OutboundListenerName = "outbound"
	InboundListenerName  = "inbound"
	// OutboundPort receives the pod's captured outbound TCP, InboundPort its captured inbound TCP.
	OutboundPort = 15001
	InboundPort  = 15006

	PassthroughCluster        = "PassthroughCluster"
	InboundPassthroughCluster = "InboundPassthroughCluster"

	CertSecretName       = "default"
	ValidationSecretName = "spiffe-validation"

	// ALPN values a client sidecar offers an inbound listener (Istio's istio-h2 / istio
	// convention): HTTP/2 between sidecars, or opaque TCP.
	InboundHTTPALPN = "fleetmesh-h2"
	InboundTCPALPN  = "fleetmesh-tcp"
)

// Envoy extension names the proxy set uses (and fleetmesh's proxy understands).
const (
	OriginalDstFilterName   = "envoy.filters.listener.original_dst"
	TLSInspectorFilterName  = "envoy.filters.listener.tls_inspector"
	NetworkRBACFilterName   = "envoy.filters.network.rbac"
	SPIFFEValidatorName     = "envoy.tls.cert_validator.spiffe"
	HTTPProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// AppProbersEnv, on the proxy container, holds the application's HTTP probes the proxy answers
// for (JSON AppProbers), as Istio's ISTIO_KUBE_APP_PROBERS.
const AppProbersEnv = "FLEETMESH_APP_PROBERS"

// AppProbePrefix is the path prefix of rewritten probes on the proxy's AdminPort:
// /app-health/<container>/<readyz|livez|startupz>.
const AppProbePrefix = "/app-health/"

// AppProbe is an application's original probe: the proxy runs it against the application on
// the pod's loopback. An httpGet probe has Path and Scheme; a tcpSocket probe has TCP set (the
// probe passes when the port accepts a connection); a gRPC probe has GRPC set and Service (the
// standard gRPC health check).
type AppProbe struct {
	Port    int32  `json:"port"`
	Path    string `json:"path,omitempty"`
	Scheme  string `json:"scheme,omitempty"`
	TCP     bool   `json:"tcp,omitempty"`
	GRPC    bool   `json:"grpc,omitempty"`
	Service string `json:"service,omitempty"`
}

// AppProbers maps a rewritten probe's path to the application's original probe.
type AppProbers map[string]AppProbe

// RequestTimeoutAnnotation bounds every HTTP request a sidecar sends to a service, retries
// included (Envoy's route timeout; Istio's VirtualService timeout): on a Service for the calls
// to it within its member, and in a ServiceExport's spec.exportedAnnotations for the clusterset
// service (KEP-1645 puts exported annotations on every member's ServiceImport). A Go duration
// between 1ms and MaxRequestTimeout; absent means no timeout.
const RequestTimeoutAnnotation = "mesh.fleetmesh.io/request-timeout"

// MaxRequestTimeout is the longest RequestTimeoutAnnotation takes.
const MaxRequestTimeout = 24 * time.Hour

// ParseRequestTimeout reads RequestTimeoutAnnotation's value.
func ParseRequestTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < time.Millisecond || d > MaxRequestTimeout {
		return 0, fmt.Errorf("%s: %q is not a duration between 1ms and %s (e.g. 5s, 1m30s)", RequestTimeoutAnnotation, v, MaxRequestTimeout)
	}
	return d, nil
}
