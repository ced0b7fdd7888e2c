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

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshInstallationSpec is the whole mesh as the user wants it.
type MeshInstallationSpec struct {
	// clusterSelector selects the Cluster API Clusters, in every namespace, that are members of
	// this mesh. It must not be empty: an empty selector would enrol every Cluster.
	// +required
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Cluster Selector",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:selector:cluster.x-k8s.io:Cluster"}
	ClusterSelector ClusterSelector `json:"clusterSelector"`

	// controlPlane configures the fleetmesh agent installed into every member.
	// +optional
	// +kubebuilder:default={}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Control Plane",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:fieldGroup:controlPlane"}
	ControlPlane ControlPlaneSpec `json:"controlPlane,omitempty"`

	// trust configures every member's SPIFFE trust domain and its certificate authority.
	// +optional
	// +kubebuilder:default={}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Trust",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:fieldGroup:trust"}
	Trust TrustSpec `json:"trust,omitempty"`

	// serviceFederation configures how Multi-Cluster Services exports become imports.
	// +optional
	// +kubebuilder:default={}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Service Federation",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:fieldGroup:serviceFederation"}
	ServiceFederation ServiceFederationSpec `json:"serviceFederation,omitempty"`

	// failover configures how calls move between members when endpoints fail.
	// +optional
	// +kubebuilder:default={}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Failover",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:fieldGroup:failover","urn:alm:descriptor:com.tectonic.ui:advanced"}
	Failover FailoverSpec `json:"failover,omitempty"`

	// authorization restricts which peers a workload's server side accepts.
	// Empty means every federated trust domain and namespace.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Authorization",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:fieldGroup:authorization","urn:alm:descriptor:com.tectonic.ui:advanced"}
	Authorization AuthorizationSpec `json:"authorization,omitempty"`
}

// ClusterSelector is a label selector (metav1.LabelSelector's fields and meaning) that the API
// server checks in full: keys, values and operators as the API machinery would parse them, and at
// least one requirement a Cluster must positively meet, so that no selector enrols every Cluster.
// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && self.matchExpressions.exists(e, e.operator == 'In' || e.operator == 'Exists'))",message="clusterSelector must set matchLabels or a matchExpressions entry with operator In or Exists; an empty selector would select every Cluster, and so would one of only NotIn and DoesNotExist"
type ClusterSelector struct {
	// matchLabels: each key and value must equal a label of the Cluster.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !format.qualifiedName().validate(k).hasValue())",message="matchLabels keys must be label keys: an optional DNS subdomain prefix and '/', then up to 63 characters [A-Za-z0-9_.-] starting and ending alphanumeric"
	MatchLabels map[string]LabelValue `json:"matchLabels,omitempty"`

	// matchExpressions: every requirement must hold for the Cluster.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	MatchExpressions []ClusterSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelValue is a label value: up to 63 characters [A-Za-z0-9_.-], starting and ending
// alphanumeric, or empty.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
type LabelValue string

// ClusterSelectorRequirement is one metav1.LabelSelectorRequirement.
// +kubebuilder:validation:XValidation:rule="(self.operator == 'In' || self.operator == 'NotIn') == (has(self.values) && size(self.values) > 0)",message="values must be non-empty for the operators In and NotIn and empty for Exists and DoesNotExist"
type ClusterSelectorRequirement struct {
	// key is the label key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="!format.qualifiedName().validate(self).hasValue()",message="key must be a label key: an optional DNS subdomain prefix and '/', then up to 63 characters [A-Za-z0-9_.-] starting and ending alphanumeric"
	Key string `json:"key"`

	// operator is In, NotIn, Exists or DoesNotExist.
	// +required
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator metav1.LabelSelectorOperator `json:"operator"`

	// values for In and NotIn.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(v, !format.labelValue().validate(v).hasValue())",message="values must be label values: up to 63 characters [A-Za-z0-9_.-], starting and ending alphanumeric, or empty"
	Values []string `json:"values,omitempty"`
}

// LabelSelector is the selector as the API machinery's own type.
func (s ClusterSelector) LabelSelector() *metav1.LabelSelector {
	ls := &metav1.LabelSelector{}
	if len(s.MatchLabels) > 0 {
		ls.MatchLabels = make(map[string]string, len(s.MatchLabels))
		for k, v := range s.MatchLabels {
			ls.MatchLabels[k] = string(v)
		}
	}
	for _, e := range s.MatchExpressions {
		ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: e.Key, Operator: e.Operator, Values: e.Values})
	}
	return ls
}

// AgentResources are a container's requests and limits, checked as a member's API server would
// check them, so that a bad value is refused here and not later in every member.
// +kubebuilder:validation:XValidation:rule="!has(self.limits) || !has(self.requests) || self.limits.all(k, !(k in self.requests) || quantity(string(self.limits[k])).compareTo(quantity(string(self.requests[k]))) >= 0)",message="resources.limits must be at least resources.requests for every resource both set",fieldPath=".limits"
type AgentResources struct {
	// requests: the minimum the agent is scheduled with.
	// +optional
	// +kubebuilder:validation:MaxProperties=4
	// +kubebuilder:validation:XValidation:rule="self.all(k, !quantity(string(self[k])).isLessThan(quantity('0')))",message="resources.requests must not be negative"
	Requests map[corev1.ResourceName]resource.Quantity `json:"requests,omitempty"`

	// limits: the most the agent may use.
	// +optional
	// +kubebuilder:validation:MaxProperties=4
	// +kubebuilder:validation:XValidation:rule="self.all(k, !quantity(string(self[k])).isLessThan(quantity('0')))",message="resources.limits must not be negative"
	Limits map[corev1.ResourceName]resource.Quantity `json:"limits,omitempty"`
}

// Requirements are the resources as a container's.
func (r AgentResources) Requirements() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: r.Requests, Limits: r.Limits}
}

// LogLevel is the agent's log verbosity.
// +kubebuilder:validation:Enum=debug;info;warn;error
type LogLevel string

// Log levels the agent understands.
const (
	LogLevelDebug LogLevel = "debug"
	LogLevelInfo  LogLevel = "info"
	LogLevelWarn  LogLevel = "warn"
	LogLevelError LogLevel = "error"
)

// ControlPlaneSpec is how the agent runs in each member.
type ControlPlaneSpec struct {
	// image is the agent image repository, without tag.
	// +optional
	// +kubebuilder:default="ghcr.io/fleetmesh/agent"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="!self.contains('@') && !self.matches('.*:[^/]*$')",message="image must be a repository without tag or digest; set the tag in version"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Agent Image",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	Image string `json:"image,omitempty"`

	// version is the agent version (the image tag); the agent must report it before its member
	// counts as ready.
	// +optional
	// +kubebuilder:default="v0.1.0"
	// +kubebuilder:validation:Pattern=`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`
	// +kubebuilder:validation:MaxLength=64
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Agent Version",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Version string `json:"version,omitempty"`

	// proxyImage is the sidecar proxy image repository, without tag: the agent injects it,
	// tagged with version, into pods of namespaces labelled mesh.fleetmesh.io/inject=enabled.
	// +optional
	// +kubebuilder:default="ghcr.io/fleetmesh/proxy"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="!self.contains('@') && !self.matches('.*:[^/]*$')",message="proxyImage must be a repository without tag or digest; set the tag in version"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Proxy Image",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	ProxyImage string `json:"proxyImage,omitempty"`

	// replicas of the agent Deployment in each member.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Agent Replicas",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:podCount"}
	Replicas *int32 `json:"replicas,omitempty"`

	// resources of the agent container (requests and limits, as in a container).
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Agent Resources",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:resourceRequirements","urn:alm:descriptor:com.tectonic.ui:advanced"}
	Resources AgentResources `json:"resources,omitempty"`

	// logLevel of the agent.
	// +optional
	// +kubebuilder:default=info
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Agent Log Level",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:select:debug","urn:alm:descriptor:com.tectonic.ui:select:info","urn:alm:descriptor:com.tectonic.ui:select:warn","urn:alm:descriptor:com.tectonic.ui:select:error"}
	LogLevel LogLevel `json:"logLevel,omitempty"`
}

// TrustSpec configures SPIFFE identity for the mesh.
// +kubebuilder:validation:XValidation:rule="!has(self.caTTL) || !has(self.svidTTL) || !self.caTTL.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || !self.svidTTL.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || duration(self.caTTL) >= duration(self.svidTTL) + duration(self.svidTTL)",message="caTTL must be at least twice svidTTL, so a CA outlives every SVID it signs across a rotation",fieldPath=".caTTL"
type TrustSpec struct {
	// trustDomainTemplate names each member's SPIFFE trust domain. Tokens: {cluster} and
	// {namespace} (of the member's Cluster API Cluster) and {mesh} (this MeshInstallation's name).
	// Other characters must be in [a-z0-9._-].
	// +optional
	// +kubebuilder:default="{cluster}.{namespace}.{mesh}"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9._-]|[{]cluster[}]|[{]namespace[}]|[{]mesh[}])+$')",message="trustDomainTemplate may contain only the tokens {cluster}, {namespace}, {mesh} and the characters [a-z0-9._-]"
	// +kubebuilder:validation:XValidation:rule="self.contains('{cluster}')",message="trustDomainTemplate must contain {cluster}: every member needs its own trust domain"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('.') && !self.endsWith('.') && !self.contains('..')",message="trustDomainTemplate must not start or end with '.' or contain '..': every label of a trust domain is non-empty"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Trust Domain Template",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	TrustDomainTemplate string `json:"trustDomainTemplate,omitempty"`

	// ca is where each member's certificate authority comes from.
	// +optional
	// +kubebuilder:default={selfSigned:{}}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Certificate Authority"
	CA *CASource `json:"ca,omitempty"`

	// svidTTL is the lifetime of workload X.509 SVIDs; workloads renew at half-life.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$')",message="svidTTL must be a positive duration such as 1h or 30m (units h, m, s, ms, us, ns)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || duration(self) >= duration('1m')",message="svidTTL must be at least 1m"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || duration(self) <= duration('8760h')",message="svidTTL must be at most 8760h (one year)"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="SVID TTL",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	SVIDTTL *Duration `json:"svidTTL,omitempty"`

	// caTTL is the lifetime of each member's CA certificate. It must be at least twice svidTTL.
	// +optional
	// +kubebuilder:default="2160h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$')",message="caTTL must be a positive duration such as 2160h (units h, m, s, ms, us, ns)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || duration(self) <= duration('87600h')",message="caTTL must be at most 87600h (ten years)"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="CA TTL",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	CATTL *Duration `json:"caTTL,omitempty"`

	// federatesWith lists trust domains outside the mesh (for example a SPIRE deployment) whose
	// bundles are fetched from their bundle endpoint and distributed to every member.
	// +optional
	// +listType=map
	// +listMapKey=trustDomain
	// +kubebuilder:validation:MaxItems=64
	FederatesWith []FederatedTrustDomain `json:"federatesWith,omitempty"`
}

// CASource selects exactly one source of a member's CA.
// +kubebuilder:validation:XValidation:rule="has(self.selfSigned) != has(self.certManager)",message="ca must set exactly one of selfSigned or certManager"
type CASource struct {
	// selfSigned: each member's CA is its own root, generated in the member.
	// +optional
	SelfSigned *SelfSignedCA `json:"selfSigned,omitempty"`

	// certManager: each member's CA is an intermediate signed by a cert-manager issuer in the
	// management cluster through a CSR; the key is still generated in, and never leaves, the member.
	// +optional
	CertManager *CertManagerCA `json:"certManager,omitempty"`
}

// SelfSignedCA has no settings yet.
type SelfSignedCA struct{}

// CertManagerCA names the cert-manager issuer that signs members' intermediates.
type CertManagerCA struct {
	// issuerRef is the Issuer or ClusterIssuer in the management cluster.
	// +required
	IssuerRef IssuerReference `json:"issuerRef"`
}

// IssuerReference names a cert-manager Issuer or ClusterIssuer.
// +kubebuilder:validation:XValidation:rule="self.kind != 'Issuer' || (has(self.__namespace__) && size(self.__namespace__) > 0)",message="issuerRef.namespace is required when kind is Issuer",fieldPath=".namespace"
// +kubebuilder:validation:XValidation:rule="self.kind != 'ClusterIssuer' || !has(self.__namespace__)",message="issuerRef.namespace must be empty when kind is ClusterIssuer",fieldPath=".namespace"
type IssuerReference struct {
	// name of the issuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// kind of the issuer.
	// +optional
	// +kubebuilder:default=ClusterIssuer
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	Kind string `json:"kind,omitempty"`

	// group of the issuer.
	// +optional
	// +kubebuilder:default="cert-manager.io"
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// namespace of an Issuer; empty for a ClusterIssuer.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// BundleEndpointProfile is a SPIFFE bundle endpoint profile.
// +kubebuilder:validation:Enum=https_web;https_spiffe
type BundleEndpointProfile string

// Bundle endpoint profiles from the SPIFFE federation specification.
const (
	BundleEndpointProfileHTTPSWeb    BundleEndpointProfile = "https_web"
	BundleEndpointProfileHTTPSSPIFFE BundleEndpointProfile = "https_spiffe"
)

// FederatedTrustDomain is a trust domain outside the mesh and where to fetch its bundle.
// +kubebuilder:validation:XValidation:rule="self.profile != 'https_spiffe' || (has(self.endpointSPIFFEID) && self.endpointSPIFFEID.startsWith('spiffe://'))",message="endpointSPIFFEID (spiffe://...) is required with the https_spiffe profile",fieldPath=".endpointSPIFFEID"
// +kubebuilder:validation:XValidation:rule="!has(self.endpointSPIFFEID) || self.endpointSPIFFEID.startsWith('spiffe://' + self.trustDomain + '/')",message="endpointSPIFFEID must be a SPIFFE ID in trustDomain (spiffe://<trustDomain>/...): the bundle given here is what authenticates the endpoint",fieldPath=".endpointSPIFFEID"
// +kubebuilder:validation:XValidation:rule="!has(self.bundle) || (self.bundle.trim().startsWith('{') && self.bundle.trim().endsWith('}') && self.bundle.contains('\"keys\"'))",message="bundle must be a SPIFFE bundle document: a JSON object with a keys array (spire-server bundle show -format spiffe)",fieldPath=".bundle"
// +kubebuilder:validation:XValidation:rule="self.profile != 'https_spiffe' || (has(self.bundle) && size(self.bundle) > 0)",message="bundle (the trust domain's SPIFFE bundle, to authenticate its https_spiffe endpoint the first time) is required with the https_spiffe profile",fieldPath=".bundle"
type FederatedTrustDomain struct {
	// trustDomain is the outside SPIFFE trust domain, e.g. example.org.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9._-]+$')",message="trustDomain may contain only [a-z0-9._-]"
	TrustDomain string `json:"trustDomain"`

	// bundleEndpointURL is the https URL of the trust domain's SPIFFE bundle endpoint.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https'",message="bundleEndpointURL must be an https URL"
	BundleEndpointURL string `json:"bundleEndpointURL"`

	// profile of the bundle endpoint.
	// +optional
	// +kubebuilder:default=https_spiffe
	Profile BundleEndpointProfile `json:"profile,omitempty"`

	// endpointSPIFFEID is the SPIFFE ID the https_spiffe endpoint must present.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	EndpointSPIFFEID string `json:"endpointSPIFFEID,omitempty"`

	// bundle is the trust domain's SPIFFE bundle document (JSON), as its operators hand it out
	// (for SPIRE: spire-server bundle show -format spiffe). With https_spiffe it authenticates
	// the endpoint the first time; after that each fetched bundle authenticates the next fetch.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Bundle string `json:"bundle,omitempty"`
}

// NetworkingMode is how members' workloads reach each other.
// +kubebuilder:validation:Enum=Flat;Gateway
type NetworkingMode string

// Networking modes.
const (
	NetworkingFlat    NetworkingMode = "Flat"
	NetworkingGateway NetworkingMode = "Gateway"
)

// ServiceFederationSpec configures Multi-Cluster Services.
type ServiceFederationSpec struct {
	// namespaces whose ServiceExports are federated; empty means every namespace.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Federated Namespaces"
	Namespaces []string `json:"namespaces,omitempty"`

	// networking is Flat (every member's pod IPs reachable from every other) or Gateway: every
	// member runs an east-west gateway (Deployment and LoadBalancer Service fleetmesh-gateway),
	// and members on different networks (a Cluster's mesh.fleetmesh.io/network label) reach
	// each other's exported services through the gateway address given on the Cluster
	// (mesh.fleetmesh.io/gateway-address); members on one network keep calling pods directly.
	// +optional
	// +kubebuilder:default=Flat
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Networking",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:select:Flat","urn:alm:descriptor:com.tectonic.ui:select:Gateway"}
	Networking NetworkingMode `json:"networking,omitempty"`

	// createNamespaces lets an import create its namespace in a member that lacks it.
	// By default (namespace sameness) a member without the namespace imports nothing.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Create Namespaces",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	CreateNamespaces bool `json:"createNamespaces,omitempty"`

	// clusterSetIPRange is the CIDR from which ClusterSetIP imports get their clusterset IP.
	// +optional
	// +kubebuilder:default="240.245.0.0/16"
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="clusterSetIPRange must be a CIDR such as 240.245.0.0/16"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || (cidr(self).ip().family() == 4 && cidr(self).prefixLength() <= 28)",message="clusterSetIPRange must be an IPv4 CIDR with at least 16 addresses (a prefix of /28 or shorter), such as 240.245.0.0/16"
	ClusterSetIPRange string `json:"clusterSetIPRange,omitempty"`

	// endpointGracePeriod is how long an unreachable member's last exported endpoints stay
	// in the other members (marked stale) before they are withdrawn.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$')",message="endpointGracePeriod must be a non-negative duration such as 2m (units h, m, s, ms, us, ns)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || duration(self) <= duration('24h')",message="endpointGracePeriod must be at most 24h"
	EndpointGracePeriod *Duration `json:"endpointGracePeriod,omitempty"`
}

// FailoverSpec tunes failover between members.
type FailoverSpec struct {
	// consecutiveErrors before a host is ejected by outlier detection.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	ConsecutiveErrors *int32 `json:"consecutiveErrors,omitempty"`

	// interval between outlier-detection sweeps.
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$')",message="interval must be a positive duration such as 1s (units h, m, s, ms, us, ns)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || (duration(self) > duration('0s') && duration(self) <= duration('1h'))",message="interval must be positive and at most 1h"
	Interval *Duration `json:"interval,omitempty"`

	// baseEjectionTime of an ejected host.
	// +optional
	// +kubebuilder:default="15s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$')",message="baseEjectionTime must be a positive duration such as 15s (units h, m, s, ms, us, ns)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?ms)|([0-9]{1,15}([.][0-9]{1,9})?us)|([0-9]{1,18}([.][0-9]{1,9})?ns)){1,4}$') || (duration(self) > duration('0s') && duration(self) <= duration('1h'))",message="baseEjectionTime must be positive and at most 1h"
	BaseEjectionTime *Duration `json:"baseEjectionTime,omitempty"`

	// retries for calls that failed with UNAVAILABLE before any response.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Retries *int32 `json:"retries,omitempty"`
}

// AuthorizationSpec is the server-side policy of the data plane.
type AuthorizationSpec struct {
	// allowedTrustDomains a server accepts callers from; empty means every federated one.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9._-]+$`
	AllowedTrustDomains []string `json:"allowedTrustDomains,omitempty"`

	// allowedNamespaces a server accepts callers from; empty means every namespace.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`
}

// MeshInstallationStatus is what the operator observed.
type MeshInstallationStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Observed Generation",xDescriptors={"urn:alm:descriptor:text"}
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Progressing, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Conditions",xDescriptors={"urn:alm:descriptor:io.kubernetes.conditions"}
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// selectedClusters is how many Clusters the selector matches and this installation owns.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Selected Clusters",xDescriptors={"urn:alm:descriptor:text"}
	SelectedClusters int32 `json:"selectedClusters"`

	// readyClusters is how many members are Ready.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Ready Clusters",xDescriptors={"urn:alm:descriptor:text"}
	ReadyClusters int32 `json:"readyClusters"`

	// federatedTrustDomains is the state of each outside trust domain of spec.trust.federatesWith.
	// +optional
	// +listType=map
	// +listMapKey=trustDomain
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Federated Trust Domains"
	FederatedTrustDomains []FederatedTrustDomainStatus `json:"federatedTrustDomains,omitempty"`
}

// FederatedTrustDomainStatus is what fleetmesh holds of an outside trust domain.
type FederatedTrustDomainStatus struct {
	// trustDomain is the outside trust domain.
	TrustDomain string `json:"trustDomain"`
	// bundle is the bundle distributed to every member: the last one fetched (or the spec's
	// bundle before the first fetch). Absent while there is none.
	// +optional
	Bundle *BundleStatus `json:"bundle,omitempty"`
	// lastFetched is when the endpoint last answered with a valid bundle.
	// +optional
	LastFetched *metav1.Time `json:"lastFetched,omitempty"`
	// error is why the last fetch failed; empty when it succeeded. The last good bundle stays
	// distributed meanwhile.
	// +optional
	Error string `json:"error,omitempty"`
}

// MeshInstallation turns selected Cluster API clusters into one service mesh.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mi;meshinst,categories=fleetmesh
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Clusters-Ready",type=integer,JSONPath=`.status.readyClusters`
// +kubebuilder:printcolumn:name="Selected",type=integer,JSONPath=`.status.selectedClusters`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +operator-sdk:csv:customresourcedefinitions:displayName="Mesh Installation",resources={{MeshCluster,v1alpha1,meshclusters}}
type MeshInstallation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   MeshInstallationSpec   `json:"spec"`
	Status MeshInstallationStatus `json:"status,omitempty"`
}

// MeshInstallationList is a list of MeshInstallations.
// +kubebuilder:object:root=true
type MeshInstallationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshInstallation `json:"items"`
}
