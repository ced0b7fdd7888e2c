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
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

func operatorMade() *meshv1alpha1.MeshCluster {
	return &meshv1alpha1.MeshCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "member-1",
			Labels: map[string]string{meshv1alpha1.InstallationLabel: "mesh"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: meshv1alpha1.GroupVersion.String(), Kind: "MeshInstallation",
				Name: "mesh", UID: "uid-mesh", Controller: ptr.To(true)}}},
		Spec: meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "member-1"}, Installation: "mesh"},
	}
}

func TestManaged(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*meshv1alpha1.MeshCluster)
		uid    types.UID
		want   bool
	}{
		"made by the operator":              {func(*meshv1alpha1.MeshCluster) {}, "", true},
		"made by the operator, uid checked": {func(*meshv1alpha1.MeshCluster) {}, "uid-mesh", true},
		"an earlier installation's":         {func(*meshv1alpha1.MeshCluster) {}, "uid-other", false},
		"named unlike its Cluster":          {func(mc *meshv1alpha1.MeshCluster) { mc.Name = "hand-made" }, "", false},
		"no owner":                          {func(mc *meshv1alpha1.MeshCluster) { mc.OwnerReferences = nil }, "", false},
		"owner not controller":              {func(mc *meshv1alpha1.MeshCluster) { mc.OwnerReferences[0].Controller = nil }, "", false},
		"owned by another installation":     {func(mc *meshv1alpha1.MeshCluster) { mc.OwnerReferences[0].Name = "other" }, "", false},
		"without the installation label":    {func(mc *meshv1alpha1.MeshCluster) { mc.Labels = nil }, "", false},
	} {
		t.Run(name, func(t *testing.T) {
			mc := operatorMade()
			tc.mutate(mc)
			if got := Managed(mc, tc.uid); got != tc.want {
				t.Errorf("Managed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckIdentity(t *testing.T) {
	c := fake.NewClientBuilder().WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: IdentityNamespace, UID: "uid-b"}}).Build()
	mc := operatorMade()
	if uid, err := CheckIdentity(context.Background(), c, mc); err != nil || uid != "uid-b" {
		t.Fatalf("unrecorded identity: uid %q, err %v; want uid-b and no error", uid, err)
	}
	mc.Status.KubeSystemUID = "uid-b"
	if _, err := CheckIdentity(context.Background(), c, mc); err != nil {
		t.Fatalf("same cluster: %v", err)
	}
	mc.Status.KubeSystemUID = "uid-a"
	_, err := CheckIdentity(context.Background(), c, mc)
	if !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("another cluster: err %v, want ErrIdentityChanged", err)
	}
	for _, want := range []string{"fleet/member-1-kubeconfig", "UID uid-b", "joined as UID uid-a", "clear status.kubeSystemUID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	}
}
