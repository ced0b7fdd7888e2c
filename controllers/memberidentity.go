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

package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/membership"
)

// IdentityNamespace is the member namespace whose UID identifies the member.
const IdentityNamespace = membership.IdentityNamespace

// ErrIdentityChanged: the member's kubeconfig now reaches another cluster than the one recorded
// at join (MeshCluster status.kubeSystemUID).
var ErrIdentityChanged = errors.New("member identity changed")

// MemberIdentity is the UID of the member's kube-system namespace, read through c.
func MemberIdentity(ctx context.Context, c client.Reader) (string, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: IdentityNamespace}, ns); err != nil {
		return "", fmt.Errorf("read namespace %s to identify the member: %w", IdentityNamespace, err)
	}
	return string(ns.UID), nil
}

// CheckIdentity compares the cluster c reaches with the one recorded for mc. An unrecorded
// identity passes (the MeshCluster reconciler records it at join); uid is what c reaches.
func CheckIdentity(ctx context.Context, c client.Reader, mc *meshv1alpha1.MeshCluster) (uid string, err error) {
	uid, err = MemberIdentity(ctx, c)
	if err != nil {
		return "", err
	}
	if want := mc.Status.KubeSystemUID; want != "" && want != uid {
		return uid, fmt.Errorf("%w: %s", ErrIdentityChanged, membership.IdentityMismatch(mc, uid))
	}
	return uid, nil
}

// MemberClient is the member's client from the cluster cache, only when the cluster it reaches is
// the one recorded for mc: every reconciler that writes into members goes through it, so a
// swapped kubeconfig Secret never gets another cluster written to under this member's name.
func MemberClient(ctx context.Context, cc clustercache.ClusterCache, mc *meshv1alpha1.MeshCluster) (client.Client, error) {
	c, err := cc.GetClient(ctx, client.ObjectKey{Namespace: mc.Namespace, Name: mc.Spec.ClusterRef.Name})
	if err != nil {
		return nil, err
	}
	if mc.Status.KubeSystemUID == "" {
		// Not joined yet: only the MeshCluster reconciler, which records the identity, may act.
		return nil, fmt.Errorf("member %s/%s has no recorded identity yet", mc.Namespace, mc.Name)
	}
	if _, err := CheckIdentity(ctx, c, mc); err != nil {
		return nil, err
	}
	return c, nil
}

// Managed tells whether mc is one the operator made: controlled by the MeshInstallation it names
// and named like its Cluster (the operator names every MeshCluster so); a non-empty uid must be the
// installation's. Any other MeshCluster is ignored: it never installs, and its deletion never
// uninstalls, a member's control plane.
func Managed(mc *meshv1alpha1.MeshCluster, uid types.UID) bool {
	if mc.Name != mc.Spec.ClusterRef.Name || mc.Labels[meshv1alpha1.InstallationLabel] != mc.Spec.Installation {
		return false
	}
	for _, ref := range mc.OwnerReferences {
		if ref.Controller != nil && *ref.Controller && ref.Kind == "MeshInstallation" &&
			ref.APIVersion == meshv1alpha1.GroupVersion.String() && ref.Name == mc.Spec.Installation && (uid == "" || ref.UID == uid) {
			return true
		}
	}
	return false
}
