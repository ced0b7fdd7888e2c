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

// Package v1alpha1 holds the fleetmesh API: MeshInstallation, the user's one object,
// and MeshCluster, the operator's record of one member cluster.
// +kubebuilder:object:generate=true
// +groupName=mesh.fleetmesh.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the fleetmesh API.
	GroupVersion = schema.GroupVersion{Group: "mesh.fleetmesh.io", Version: "v1alpha1"}

	// SchemeBuilder registers the fleetmesh types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the fleetmesh types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&MeshInstallation{}, &MeshInstallationList{},
		&MeshCluster{}, &MeshClusterList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
