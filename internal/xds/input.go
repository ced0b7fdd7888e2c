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

// Package xds turns one member's view of the fleet (its own Services, the ServiceImports it
// holds, their endpoints, the mesh policy) into the xDS resources its agent serves to proxyless
// gRPC clients and servers: Listeners, RouteConfigurations, Clusters and ClusterLoadAssignments,
// with a content-derived version for a go-control-plane snapshot cache. Everything here is
// pure: no clients, no goroutines.
package xds

import (
	"crypto/x509"
	"time"
)

// Scope says how a service is named: the member's own Service (cluster.local) or an imported
// multi-cluster service (clusterset.local).
type Scope string

// Scopes of a service name.
const (
	// Local is a member's own Service: <name>.<namespace>.svc.cluster.local.
	Local Scope = "cluster.local"
	// ClusterSet is an MCS ServiceImport: <name>.<namespace>.svc.clusterset.local.
	ClusterSet Scope = "clusterset.local"
)

// DefaultCertProviderInstance is the certificate-provider instance the bootstrap defines and the
// resources refer to when no other name is given.
const DefaultCertProviderInstance = "fleetmesh"

// Input is everything one member's xDS resources are built from.
type Input struct {
	// Member is the member whose agent serves the resources.
	Member Member
	// FederatedTrustDomains are the trust domains in the member's bundle set. The member's own
	// is added if missing. With no AllowedTrustDomains, servers accept exactly these.
	FederatedTrustDomains []string
	// Policy is the mesh's failover and authorization policy.
	Policy Policy
	// CertProviderInstance is the bootstrap's certificate_providers key that holds the
	// workload's SVID and the bundle map; empty means DefaultCertProviderInstance.
	CertProviderInstance string
	// TrustBundles are the X.509 authorities of every trust domain in the member's bundle set,
	// its own included, by trust domain name: the proxy resource set's SPIFFE validator.
	TrustBundles map[string][]*x509.Certificate
	// Services are the member's own Services (Local) and its ServiceImports (ClusterSet).
	// Order does not matter.
	Services []Service
}

// Member is the member cluster whose workloads are the xDS clients.
type Member struct {
	// Cluster is the member's cluster ID: the multicluster.kubernetes.io/source-cluster value
	// of its own endpoints.
	Cluster string
	// Region and Zone are the member's locality.
	Region, Zone string
	// TrustDomain is the member's SPIFFE trust domain.
	TrustDomain string
}

// Service is one service as clients address it, with its endpoints in every cluster.
type Service struct {
	Namespace, Name string
	Scope           Scope
	// IPs are the service's virtual IPs (ClusterIPs, or the ServiceImport's clusterset IPs):
	// clients may dial <ip>:<port> as well as the name. Empty for headless services.
	IPs []string
	// Ports are the service ports clients dial; endpoints are matched to them by name.
	Ports []Port
	// Endpoints holds one set per EndpointSlice. Order does not matter.
	Endpoints []EndpointSet
	// RequestTimeout bounds each HTTP request to the service (wire.RequestTimeoutAnnotation);
	// 0 is none. InvalidTimeout is the error of an annotation that does not parse (the
	// service then has none).
	RequestTimeout time.Duration
	InvalidTimeout error
}

// Port is a named port, of a service or of an EndpointSlice.
type Port struct {
	// Name matches a service port to its EndpointSlice port ("" for a single unnamed port).
	Name string
	Port int32
	// Protocol is TCP, UDP or SCTP; empty means TCP. Only TCP ports get xDS resources.
	Protocol string
	// AppProtocol is the port's appProtocol (ProtocolOf says what the proxy makes of it).
	AppProtocol string
}

// EndpointSet is one EndpointSlice's worth of endpoints: one source cluster, one port list.
type EndpointSet struct {
	// Cluster is the source cluster's ID.
	Cluster string
	// Region is the source cluster's region.
	Region string
	// Ports are the endpoints' ports (target ports), matched to service ports by name.
	Ports     []Port
	Endpoints []Endpoint
	// Gateway says the endpoints are east-west gateway addresses of a member on another network
	// (its MCS slice carries wire.NetworkLabel), not pod addresses a workload could dial.
	Gateway bool
}

// Endpoint is one backend address with its EndpointSlice conditions.
type Endpoint struct {
	Address string
	// Zone is the endpoint's zone (EndpointSlice endpoints[].zone).
	Zone string
	// Ready, Serving and Terminating are the EndpointSlice conditions, nil already resolved
	// (ready and serving default to true, terminating to false).
	Ready, Serving, Terminating bool
	// Weight is the endpoint's load-balancing weight: an east-west gateway's endpoint stands
	// for that many endpoints of its member (wire.EndpointWeightAnnotation). 0 means 1.
	Weight uint32
}

// Policy is the mesh's data-plane policy: MeshInstallation spec.failover and spec.authorization.
type Policy struct {
	Failover      Failover
	Authorization Authorization
}

// Failover mirrors FailoverSpec with its defaults applied (FailoverFromSpec does that). A zero
// ConsecutiveErrors, Interval or BaseEjectionTime means the API default; Retries is taken as
// given (0: no retries).
type Failover struct {
	// ConsecutiveErrors is the number of failed calls within one Interval that eject a host.
	ConsecutiveErrors int32
	Interval          time.Duration
	BaseEjectionTime  time.Duration
	// Retries of calls that failed with UNAVAILABLE.
	Retries int32
}

// Authorization mirrors AuthorizationSpec: which callers a workload's server side accepts.
type Authorization struct {
	// AllowedTrustDomains; empty means every federated trust domain (never "anyone").
	AllowedTrustDomains []string
	// AllowedNamespaces; empty means every namespace.
	AllowedNamespaces []string
}
