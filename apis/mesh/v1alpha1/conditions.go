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

// Condition types. Ready, Progressing and Degraded are the names Argo CD and `kubectl wait` know.
const (
	ReadyCondition       = "Ready"
	ProgressingCondition = "Progressing"
	DegradedCondition    = "Degraded"

	ConnectedCondition         = "Connected"
	ControlPlaneReadyCondition = "ControlPlaneReady"
	TrustFederatedCondition    = "TrustFederated"
	ServicesSyncedCondition    = "ServicesSynced"
	// CAIssuedCondition (certManager mode only): the member's intermediate CA is signed.
	CAIssuedCondition = "CAIssued"
	// CARotationCondition: the member's CA rotation is idle or moving on (True), or waits for
	// members that cannot be reached, or switched without them (False). Not part of Ready: a
	// stalled rotation is a warning, the member works on.
	CARotationCondition = "CARotation"
	// GatewayReadyCondition (networking: Gateway only): the member's east-west gateway runs
	// and has an address members on other networks reach. Not part of Ready: a member whose
	// peers all share its network needs no gateway.
	GatewayReadyCondition = "GatewayReady"
)

// Condition reasons: each names what a person can act on.
const (
	ReasonReconciled       = "Reconciled"
	ReasonPending          = "Pending"
	ReasonMembersNotReady  = "MembersNotReady"
	ReasonNoClusters       = "NoClustersSelected"
	ReasonConflict         = "Conflict"
	ReasonInvalidSpec      = "InvalidSpec"
	ReasonClusterNotFound  = "ClusterNotFound"
	ReasonNotProvisioned   = "ClusterNotProvisioned"
	ReasonConnected        = "Connected"
	ReasonUnreachable      = "Unreachable"
	ReasonApplyFailed      = "ApplyFailed"
	ReasonRollingOut       = "RollingOut"
	ReasonVersionMismatch  = "AgentVersionMismatch"
	ReasonAgentReady       = "AgentReady"
	ReasonDeleting         = "Deleting"
	ReasonUninstallSkipped = "UninstallSkippedUnreachable"
	ReasonIdentityChanged  = "ClusterIdentityChanged"
	ReasonNotManaged       = "NotManagedByOperator"
	ReasonKubeconfigBad    = "KubeconfigInvalid"

	// TrustFederated reasons.
	ReasonFederated          = "Federated"
	ReasonBundleNotPublished = "BundleNotPublished"
	ReasonBundleInvalid      = "BundleInvalid"
	ReasonBundlesMissing     = "BundlesMissing"
	ReasonPropagating        = "Propagating"
	ReasonBundlesRefused     = "BundlesRefusedByAgent"

	// CARotation reasons.
	ReasonNotRotating      = "NotRotating"
	ReasonRotating         = "Rotating"
	ReasonRotationStalled  = "RotationStalled"
	ReasonSwitchedDeadline = "SwitchedAtDeadline"
	ReasonCAReplaced       = "CAReplacedAfterLoss"
	ReasonCASecretRestored = "CASecretRestored"

	// CAIssued reasons.
	ReasonCAIssued      = "Issued"
	ReasonCSRPending    = "AwaitingCSR"
	ReasonCAPending     = "IssuancePending"
	ReasonCADenied      = "RequestDenied"
	ReasonCAFailed      = "IssuanceFailed"
	ReasonCARequestFail = "RequestFailed"
	ReasonCSRInvalid    = "CSRInvalid"
	ReasonCARefused     = "IntermediateRefused"

	// GatewayReady reasons.
	ReasonGatewayReady     = "GatewayReady"
	ReasonGatewayNoAddress = "NoGatewayAddress"
)

// Finalizers and labels.
const (
	// MeshClusterFinalizer uninstalls the control plane from a member before its MeshCluster goes.
	MeshClusterFinalizer = "mesh.fleetmesh.io/uninstall"

	// InstallationLabel on a MeshCluster names its MeshInstallation.
	InstallationLabel = "mesh.fleetmesh.io/installation"
	// RotateCAAnnotation on a MeshCluster asks its agent to rotate the member's CA: set it to a
	// new value (a timestamp, say) for each rotation. The rotation publishes the new root
	// first, switches signing once every member holds it, and drops the old root after the last
	// SVID it signed has expired.
	RotateCAAnnotation = "mesh.fleetmesh.io/rotate-ca"

	// ManagedByLabel marks every object fleetmesh applies into a member.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel and the server-side apply field manager.
	ManagedByValue = "fleetmesh"
)
