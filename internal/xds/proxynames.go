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

package xds

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// The proxy resource set: what the agent serves to a sidecar proxy (fleetmesh's own, cmd/proxy,
// or Envoy), chosen by the node's metadata (ProxyMetadataKey). It is Envoy-shaped:
//
//   - Listener OutboundListenerName on 0.0.0.0:OutboundPort (use_original_dst, the original_dst
//     listener filter). One filter chain per service virtual IP and TCP port (filter_chain_match
//     prefix_ranges <ip>/32 or /128 and destination_port), named ProxyChainName(ip, port). An HTTP
//     port (ProtocolOf) gets an http_connection_manager with an inline route to the port's
//     cluster, its retry policy and an explicit route timeout of 0 (none); any other port a
//     tcp_proxy to it. The default filter chain is a tcp_proxy to PassthroughCluster: traffic to
//     addresses outside the mesh leaves unchanged.
//   - Listener InboundListenerName on 0.0.0.0:InboundPort (original_dst and tls_inspector
//     listener filters). Its filter chains need TLS (transport_protocol "tls") with a client
//     certificate: ALPN InboundHTTPALPN gets an http_connection_manager (the network RBAC filter
//     first, client identity forwarded in x-forwarded-client-cert) routed to
//     InboundPassthroughCluster; any other TLS a network RBAC filter and a tcp_proxy to
//     InboundPassthroughCluster. Plaintext matches no chain and is closed.
//   - Cluster ProxyClusterName(host, port) per service port: EDS (ADS, service_name the same
//     name), round robin, the mesh's outlier detection, an UpstreamTlsContext whose certificate
//     is SDS secret CertSecretName and whose validation context is SDS secret
//     ValidationSecretName; ALPN InboundHTTPALPN for HTTP ports (HTTP/2 between the sidecars),
//     InboundTCPALPN otherwise. PassthroughCluster and InboundPassthroughCluster are ORIGINAL_DST.
//   - ClusterLoadAssignment per service port, named as its Cluster: priorities by locality as
//     for proxyless gRPC (local cluster 0, same region 1, others 2).
//   - Secret ValidationSecretName: a CertificateValidationContext with the SPIFFE certificate
//     validator (envoy.tls.cert_validator.spiffe) holding every federated trust domain's X.509
//     authorities. The certificate secret CertSecretName is NOT served by the agent: the
//     workload's key never leaves its pod. fleetmesh's proxy fills it from the identity API; an
//     Envoy in its place needs a local SDS server for it (as Istio's pilot-agent is).
//
// The names live in internal/wire, the agent's contract with the proxy, so that the proxy
// binary links none of this package; these are the same constants.
const (
	// ProxyMetadataKey in the node's metadata selects the proxy resource set; its value is the
	// proxy's role (ProxyRoleSidecar).
	ProxyMetadataKey = wire.ProxyMetadataKey
	ProxyRoleSidecar = wire.ProxyRoleSidecar

	OutboundListenerName = wire.OutboundListenerName
	InboundListenerName  = wire.InboundListenerName
	// OutboundPort receives the pod's captured outbound TCP, InboundPort its captured inbound TCP.
	OutboundPort = wire.OutboundPort
	InboundPort  = wire.InboundPort

	PassthroughCluster        = wire.PassthroughCluster
	InboundPassthroughCluster = wire.InboundPassthroughCluster

	CertSecretName       = wire.CertSecretName
	ValidationSecretName = wire.ValidationSecretName

	// ALPN values a client sidecar offers an inbound listener (Istio's istio-h2 / istio
	// convention): HTTP/2 between sidecars, or opaque TCP.
	InboundHTTPALPN = wire.InboundHTTPALPN
	InboundTCPALPN  = wire.InboundTCPALPN
)

// Protocol is how the proxy treats a port.
type Protocol string

// Protocols.
const (
	ProtocolTCP  Protocol = "tcp"
	ProtocolHTTP Protocol = "http"
)

// ProtocolOf is a service port's protocol, Istio's way: appProtocol http, http2, h2c, grpc,
// kubernetes.io/h2c, or, without appProtocol, a port name http, http2, grpc or one of those
// followed by "-..." is HTTP; anything else is opaque TCP.
func ProtocolOf(name, appProtocol string) Protocol {
	isHTTP := func(s string) bool {
		switch strings.ToLower(s) {
		case "http", "http2", "h2c", "grpc", "kubernetes.io/h2c", "kubernetes.io/ws":
			return true
		}
		return false
	}
	if appProtocol != "" {
		if isHTTP(appProtocol) {
			return ProtocolHTTP
		}
		return ProtocolTCP
	}
	prefix, _, _ := strings.Cut(name, "-")
	if isHTTP(prefix) {
		return ProtocolHTTP
	}
	return ProtocolTCP
}

// ProxyClusterName is the Cluster (and ClusterLoadAssignment) of host:port in the proxy set.
func ProxyClusterName(host string, port int32) string {
	return fmt.Sprintf("outbound|%d||%s", port, host)
}

// ProxyPodsClusterName is the ORIGINAL_DST Cluster, and the outbound filter chain, of the pods of
// host that take port (their target port): connections a workload opens to a pod's own address
// (Envoy's <port>|<subset>|<host> form, the subset "pods").
func ProxyPodsClusterName(host string, port uint16) string {
	return fmt.Sprintf("outbound|%d|pods|%s", port, host)
}

// ProxyChainName is the outbound filter chain for a virtual IP, or a pod address, and port.
func ProxyChainName(ip string, port int32) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}
