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

import "strconv"

// The east-west gateway's part of the contract (cmd/proxy's gateway role): members on other
// networks reach a member's exported services through its gateway, which routes each mTLS
// connection by its TLS SNI to the member's own endpoints without terminating it.
const (
	// ProxyRoleGateway is the node metadata value (ProxyMetadataKey) of a gateway: the agent
	// serves it the gateway resource set.
	ProxyRoleGateway = "gateway"
	// GatewayListenerName is the gateway's one Listener, on GatewayPort.
	GatewayListenerName = "gateway"
	// GatewayPort is where a gateway takes connections from other networks (Istio's 15443).
	GatewayPort = 15443
)

// GatewaySNI is the TLS server name a client sidecar sends for port of a service host (Istio's
// convention, outbound_.<port>_._.<host>): a gateway on its way routes the connection by it.
// The name is a valid DNS name, so TLS stacks send it unchanged.
func GatewaySNI(host string, port int32) string {
	return "outbound_." + strconv.Itoa(int(port)) + "_._." + host
}

// Endpoints across networks: service federation writes, into the members of other networks,
// an exporter's MCS EndpointSlice whose one endpoint is the exporter's gateway address on
// GatewayPort, labelled with the exporter's network and annotated with the number of ready
// endpoints the gateway stands for; the agent's EDS weighs the gateway endpoint by it.
const (
	// NetworkLabel names a member's network: on a Cluster API Cluster (where the operator reads
	// it; absent means DefaultNetwork) and on the MCS EndpointSlices of a gateway.
	NetworkLabel = "mesh.fleetmesh.io/network"
	// DefaultNetwork is the network of a Cluster without NetworkLabel.
	DefaultNetwork = "default"
	// EndpointWeightAnnotation, on an MCS EndpointSlice, is the load-balancing weight of each of
	// its endpoints (a decimal integer >= 1; absent: 1).
	EndpointWeightAnnotation = "mesh.fleetmesh.io/endpoint-weight"
)
