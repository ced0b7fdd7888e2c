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

package install

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/membership"
)

// KEP-2149 cluster identity: no Go module ships the ClusterProperty API here, so its CRD is
// built from the KEP's definition (group about.k8s.io, cluster-scoped, spec.value).
const (
	ClusterPropertyGroup = "about.k8s.io"
	// ClusterIDProperty holds the member's cluster ID, unique in the clusterset.
	ClusterIDProperty = "cluster.clusterset.k8s.io"
	// ClusterSetProperty holds the clusterset's name: the MeshInstallation's.
	ClusterSetProperty = "clusterset.k8s.io"
)

// ClusterID is the member's stable cluster ID (KEP-2149): see membership.ClusterID.
func ClusterID(mc *meshv1alpha1.MeshCluster) string {
	return membership.ClusterID(mc.Spec.ClusterRef.Name, mc.Namespace)
}

// DirectResources are the kinds that clients of a member must address by resource rather than
// through discovery (see controllers/meshcluster memberClient), by kind.
func DirectResources() map[string]schema.GroupVersionResource {
	return map[string]schema.GroupVersionResource{
		"ClusterProperty": {Group: ClusterPropertyGroup, Version: "v1alpha1", Resource: "clusterproperties"},
	}
}

func clusterPropertyCRD(labels map[string]string) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		TypeMeta: typeMeta("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
		ObjectMeta: metav1.ObjectMeta{
			Name: "clusterproperties." + ClusterPropertyGroup, Labels: labels,
			// *.k8s.io groups are protected: the API server refuses a CRD without this annotation.
			// fleetmesh ships the KEP's definition, not the reviewed sigs.k8s.io/about-api one.
			Annotations: map[string]string{"api-approved.kubernetes.io": "unapproved, KEP-2149 ClusterProperty as the KEP defines it; installed by fleetmesh until sigs.k8s.io/about-api is available"},
		},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: ClusterPropertyGroup,
			Scope: apiextensionsv1.ClusterScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural: "clusterproperties", Singular: "clusterproperty", Kind: "ClusterProperty", ListKind: "ClusterPropertyList",
			},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1alpha1", Served: true, Storage: true,
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					{Name: "Value", Type: "string", JSONPath: ".spec.value"},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:     "object",
					Required: []string{"spec"},
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"apiVersion": {Type: "string"}, "kind": {Type: "string"}, "metadata": {Type: "object"},
						"spec": {
							Type:     "object",
							Required: []string{"value"},
							Properties: map[string]apiextensionsv1.JSONSchemaProps{
								"value": {Type: "string", MinLength: ptr.To[int64](1), MaxLength: ptr.To[int64](128)},
							},
						},
					},
				}},
			}},
		},
	}
}

func clusterProperty(name, value string, labels map[string]string) client.Object {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(ClusterPropertyGroup + "/v1alpha1")
	u.SetKind("ClusterProperty")
	u.SetName(name)
	u.SetLabels(labels)
	_ = unstructured.SetNestedField(u.Object, value, "spec", "value")
	return u
}
