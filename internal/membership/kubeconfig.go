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

package membership

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"sigs.k8s.io/cluster-api/util/secret"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

// IdentityNamespace is the member namespace whose UID identifies the member: it is created with
// the cluster and never deleted, so a new UID means another cluster.
const IdentityNamespace = "kube-system"

// KubeconfigDigest identifies what a member's kubeconfig Secret holds (its key `value`) without
// keeping it: the Secret the cluster cache's connection was built from and the Secret as it is now
// are compared by digest. "" for an absent or empty kubeconfig.
func KubeconfigDigest(kubeconfig []byte) string {
	if len(kubeconfig) == 0 {
		return ""
	}
	sum := sha256.Sum256(kubeconfig)
	return hex.EncodeToString(sum[:])
}

// KubeconfigSecretName is the namespace/name of the kubeconfig Secret of mc's Cluster.
func KubeconfigSecretName(mc *meshv1alpha1.MeshCluster) string {
	return mc.Namespace + "/" + secret.Name(mc.Spec.ClusterRef.Name, secret.Kubeconfig)
}

// IdentityMismatch says that the member's kubeconfig Secret reaches the cluster whose kube-system
// namespace has the given UID, not the one mc joined as (status.kubeSystemUID), and what to do.
func IdentityMismatch(mc *meshv1alpha1.MeshCluster, uid string) string {
	return fmt.Sprintf("the kubeconfig Secret %s reaches a cluster whose %s namespace has UID %s, but %s/%s joined as UID %s; "+
		"fleetmesh writes nothing there. Restore the Secret, or, if the cluster was rebuilt on purpose, clear status.kubeSystemUID of MeshCluster %s/%s",
		KubeconfigSecretName(mc), IdentityNamespace, uid, mc.Namespace, mc.Spec.ClusterRef.Name, mc.Status.KubeSystemUID, mc.Namespace, mc.Name)
}

// KubeconfigInvalidMessage is the Connected condition's message for a kubeconfig Secret that holds
// no usable kubeconfig; problem names the Secret and what is wrong (never its content).
func KubeconfigInvalidMessage(problem string) string {
	return problem + ": fix it (Cluster API writes it when the cluster is provisioned); other members are unaffected"
}

// KubeconfigChange is what the operator found out about a member's kubeconfig Secret that no
// longer holds what the cluster cache's connection to the member was built from.
type KubeconfigChange struct {
	// MeshCluster is the member (its recorded identity, status.kubeSystemUID, is "" before it joins).
	MeshCluster *meshv1alpha1.MeshCluster
	// Problem says what is wrong with the Secret's kubeconfig (it names the Secret, never quotes
	// it); "" when it is a usable kubeconfig.
	Problem string
	// ReachedUID is the UID of the kube-system namespace of the cluster the new kubeconfig
	// reaches, read with it; ReachErr says why it could not be read. Both are empty with a Problem.
	ReachedUID string
	ReachErr   error
}

// KubeconfigDecision is what to do about a changed kubeconfig Secret. The cluster cache's
// connection is rebuilt from the new Secret in every case; Refuse says whether the member's
// clients are refused meanwhile (nothing is written into it), and then Reason and Message are the
// Connected=False condition that says why.
type KubeconfigDecision struct {
	Refuse          bool
	Reason, Message string
}

// DecideKubeconfigChange judges a changed kubeconfig Secret: new credentials of the same cluster
// (a rotation) go on being used; garbage, another cluster, or an API server that does not answer
// the new credentials refuse the member until the connection is rebuilt and its identity checked.
func DecideKubeconfigChange(c KubeconfigChange) KubeconfigDecision {
	mc := c.MeshCluster
	switch recorded := mc.Status.KubeSystemUID; {
	case c.Problem != "":
		return KubeconfigDecision{Refuse: true, Reason: meshv1alpha1.ReasonKubeconfigBad, Message: KubeconfigInvalidMessage(c.Problem)}
	case c.ReachErr != nil:
		return KubeconfigDecision{Refuse: true, Reason: meshv1alpha1.ReasonUnreachable, Message: fmt.Sprintf(
			"the kubeconfig Secret %s changed, and the API server it names does not answer its credentials (%v): nothing is written into %s/%s "+
				"until fleetmesh knows which cluster it reaches; it reconnects with the new Secret, and other members are unaffected",
			KubeconfigSecretName(mc), c.ReachErr, mc.Namespace, mc.Spec.ClusterRef.Name)}
	case recorded != "" && c.ReachedUID != recorded:
		return KubeconfigDecision{Refuse: true, Reason: meshv1alpha1.ReasonIdentityChanged, Message: IdentityMismatch(mc, c.ReachedUID)}
	default:
		// The member itself (or one that has not joined yet, whose identity the join records).
		return KubeconfigDecision{}
	}
}
