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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshClusterSpec is one member as the operator decided it. The operator writes it; users read it.
type MeshClusterSpec struct {
	// clusterRef is the Cluster API Cluster, in this MeshCluster's namespace, that is the member.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="clusterRef is immutable"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Cluster",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	ClusterRef ClusterReference `json:"clusterRef"`

	// installation is the name of the MeshInstallation the member belongs to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="installation is immutable"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Installation",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Installation string `json:"installation"`

	// trustDomain is the member's SPIFFE trust domain, expanded from the installation's template.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9._-]+$')",message="trustDomain may contain only [a-z0-9._-]"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Trust Domain",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	TrustDomain string `json:"trustDomain"`

	// locality of the member, used to order failover (same region first).
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Locality"
	Locality Locality `json:"locality,omitempty"`

	// network the member's pods are on; members on one network reach each other's pod IPs,
	// members on other networks reach them through the member's east-west gateway. Derived
	// from the Cluster's mesh.fleetmesh.io/network label ("default" without it).
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Network",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Network string `json:"network,omitempty"`

	// gatewayAddress is the IPv4 address at which members on other networks reach this
	// member's east-west gateway (port 15443). Derived from the Cluster's
	// mesh.fleetmesh.io/gateway-address annotation; empty: the member has none, and members on
	// other networks get no endpoints of its exports.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="self == '' || (isIP(self) && ip(self).family() == 4)",message="gatewayAddress must be an IPv4 address"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Gateway Address",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	GatewayAddress string `json:"gatewayAddress,omitempty"`
}

// ClusterReference names a Cluster API Cluster in the same namespace.
type ClusterReference struct {
	// name of the Cluster.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// Locality is where a member runs.
type Locality struct {
	// region, as in topology.kubernetes.io/region.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Region string `json:"region,omitempty"`

	// zone, as in topology.kubernetes.io/zone.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Zone string `json:"zone,omitempty"`
}

// BundleStatus describes the member's published SPIFFE trust bundle.
type BundleStatus struct {
	// fingerprint is the SHA-256 of the bundle's root certificates, hex encoded.
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`

	// sequence is the bundle's spiffe_sequence.
	// +optional
	Sequence uint64 `json:"sequence,omitempty"`

	// expiry is when the first root in the bundle expires.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Trust Bundle Expiry",xDescriptors={"urn:alm:descriptor:timestamp"}
	Expiry *metav1.Time `json:"expiry,omitempty"`
}

// MeshClusterStatus is what the operator observed of one member.
type MeshClusterStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Observed Generation",xDescriptors={"urn:alm:descriptor:text"}
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (summary of the others: the reason of the first not True, in this order),
	// Connected, CAIssued (certManager mode), ControlPlaneReady, TrustFederated, ServicesSynced;
	// and CARotation (the CA's rotation and recovery: a rotation stalled by unreachable members, a
	// lost or restored CA Secret; not part of Ready).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Conditions",xDescriptors={"urn:alm:descriptor:io.kubernetes.conditions"}
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// kubeSystemUID identifies the member: the UID of its kube-system namespace, recorded when it
	// joined. When the kubeconfig Secret reaches a cluster with another UID, fleetmesh writes
	// nothing there (Connected=False, reason ClusterIdentityChanged); clear this field (status
	// subresource) to accept a cluster rebuilt on purpose.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	KubeSystemUID string `json:"kubeSystemUID,omitempty"`

	// agentVersion is the version the member's agent reports.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Agent Version",xDescriptors={"urn:alm:descriptor:text"}
	AgentVersion string `json:"agentVersion,omitempty"`

	// bundle is the member's current trust bundle.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Trust Bundle"
	Bundle *BundleStatus `json:"bundle,omitempty"`

	// exportedServices is how many ServiceExports the member has.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Exported Services",xDescriptors={"urn:alm:descriptor:text"}
	ExportedServices int32 `json:"exportedServices,omitempty"`

	// importedServices is how many ServiceImports the operator maintains in the member.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Imported Services",xDescriptors={"urn:alm:descriptor:text"}
	ImportedServices int32 `json:"importedServices,omitempty"`

	// lastSyncTime is when the operator last converged the member.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Last Sync",xDescriptors={"urn:alm:descriptor:timestamp"}
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
}

// MeshCluster is one member cluster of a MeshInstallation, beside its Cluster API Cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mc;meshcl,categories=fleetmesh
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterRef.name`
// +kubebuilder:printcolumn:name="Trust-Domain",type=string,JSONPath=`.spec.trustDomain`
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.network`,priority=1
// +kubebuilder:printcolumn:name="Connected",type=string,JSONPath=`.status.conditions[?(@.type=="Connected")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.status.agentVersion`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +operator-sdk:csv:customresourcedefinitions:displayName="Mesh Cluster",resources={{Cluster,v1beta2,clusters},{Secret,v1}}
type MeshCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   MeshClusterSpec   `json:"spec"`
	Status MeshClusterStatus `json:"status,omitempty"`
}

// GetConditions returns the MeshCluster's conditions (Cluster API's util/conditions Getter).
func (m *MeshCluster) GetConditions() []metav1.Condition { return m.Status.Conditions }

// SetConditions sets the MeshCluster's conditions (Cluster API's util/conditions Setter).
func (m *MeshCluster) SetConditions(c []metav1.Condition) { m.Status.Conditions = c }

// MeshClusterList is a list of MeshClusters.
// +kubebuilder:object:root=true
type MeshClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshCluster `json:"items"`
}
