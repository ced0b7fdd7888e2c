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

// Package wire is the contract between the operator and the agents: the ConfigMaps in a
// member's fleetmesh-system namespace through which they talk (the operator never reaches an
// agent any other way), their keys, and the digests that tie an answer to what it answers.
// Both binaries use it; it depends on the standard library only, so the manager links none of
// the agent's xDS or identity code. It also holds the agent's contract with the sidecar proxy
// (sidecar.go), so that the proxy links neither.
package wire

import (
	"crypto/sha256"
	"encoding/hex"
)

// The agent's status: what it runs and what it has loaded.
const (
	// StatusConfigMap is the object in the agent's namespace through which it reports to the
	// operator.
	StatusConfigMap = "fleetmesh-agent-status"
	// StatusKeyVersion is the version the agent runs.
	StatusKeyVersion = "version"
	// StatusKeyFederated is Digest of the federated bundle map the agent loaded, so the
	// operator knows the member really has what it wrote (TrustFederated).
	StatusKeyFederated = "federatedBundles"
	// StatusKeyFederatedError explains why the agent refused the federated bundle map.
	StatusKeyFederatedError = "federatedBundlesError"
	// StatusKeyCARotation is the phase of the member's CA rotation (trust.Phase).
	StatusKeyCARotation = "caRotation"
	// StatusKeyCARotationDeadline, while the phase is Publishing, is when signing switches to
	// the next CA even if some member does not hold it yet (RFC 3339; trust.SwitchDeadline).
	StatusKeyCARotationDeadline = "caRotationSwitchDeadline"
	// StatusKeyCARotationForced is "true" while the phase is Retiring after a switch made at
	// the deadline.
	StatusKeyCARotationForced = "caRotationForced"
	// StatusKeyCALostSince and StatusKeyCALostUntil (RFC 3339) say that the CA Secret was
	// lost while no agent ran: a new CA signs since then, and the lost one's roots stay
	// published until then.
	StatusKeyCALostSince = "caLostSince"
	StatusKeyCALostUntil = "caLostUntil"
	// StatusKeyCASecretRestoredAt (RFC 3339) is when the agent found its CA Secret deleted and
	// wrote it again from memory.
	StatusKeyCASecretRestoredAt = "caSecretRestoredAt"
)

// Trust: the agent publishes its bundle; the operator writes every other member's bundle back.
const (
	BundleConfigMap      = "fleetmesh-bundle"
	BundleKeyTrustDomain = "trustDomain"
	BundleKeyDocument    = "bundle.json"

	FederatedConfigMap    = "fleetmesh-federated-bundles"
	FederatedKeyBundleMap = "bundle-map.json"
	// FederatedKeyHeldSequence is the lowest sequence of this member's bundle that every other
	// member's agent has loaded: a CA rotation switches signing only once it has caught up.
	FederatedKeyHeldSequence = "ownBundleSequenceHeld"
	// FederatedKeyRotateRequest carries the MeshCluster's rotate-ca annotation: a new value
	// starts a CA rotation.
	FederatedKeyRotateRequest = "rotateCARequest"

	// CASecret is the agent's CA Secret. Only its name is shared: the operator never reads it
	// (it names it in status messages).
	CASecret = "fleetmesh-ca"
)

// certManager mode: the agent generates its CA key in the member and publishes only a CSR; the
// operator has it signed by a cert-manager issuer in the management cluster and writes the
// certificate back. The key never leaves the member's CA Secret.
const (
	// CARequestConfigMap holds the member's intermediate CSR, published by the agent.
	CARequestConfigMap = "fleetmesh-ca-request"
	CARequestKeyCSR    = "csr.pem"
	// CAIssuedConfigMap holds the signed intermediate, written by the operator: the certificate
	// chain (cert-manager's status.certificate) and the issuer's root(s) (status.ca).
	CAIssuedConfigMap = "fleetmesh-ca-issued"
	CAIssuedKeyChain  = "chain.pem"
	CAIssuedKeyRoots  = "ca.pem"
	// CAKeyRequest, in both ConfigMaps, is CSRDigest of the CSR: it ties an answer to its request.
	CAKeyRequest = "request"
)

// IdentityAudience is the audience a workload's ServiceAccount token must carry for the agent's
// identity API (the injector projects such a token into every meshed pod).
const IdentityAudience = "fleetmesh"

// Digest identifies a federated bundle map by content, for StatusKeyFederated.
func Digest(bundleMap []byte) string {
	sum := sha256.Sum256(bundleMap)
	return hex.EncodeToString(sum[:16])
}

// CSRDigest identifies an intermediate CSR.
func CSRDigest(csr []byte) string { return Digest(csr) }
