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

package olm_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// almExamples reads the objects the OLM console offers as templates from the committed CSV.
func almExamples() []*unstructured.Unstructured {
	data, err := os.ReadFile(filepath.Join(bundleManifests, "fleetmesh.clusterserviceversion.yaml"))
	Expect(err).NotTo(HaveOccurred(), "bundle/manifests has no CSV: run make bundle")
	csv := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal(data, &csv.Object)).To(Succeed())
	raw, ok := csv.GetAnnotations()["alm-examples"]
	Expect(ok).To(BeTrue(), "the CSV has no alm-examples annotation")
	var list []map[string]any
	Expect(json.Unmarshal([]byte(raw), &list)).To(Succeed(), "alm-examples is not a JSON list")
	Expect(list).NotTo(BeEmpty())
	out := make([]*unstructured.Unstructured, 0, len(list))
	for _, o := range list {
		out = append(out, &unstructured.Unstructured{Object: o})
	}
	return out
}

// create asks the API server to create obj without persisting it: defaulting, the OpenAPI schema
// and the CEL rules all run. Strict field validation turns a field the schema does not know
// (which would otherwise be dropped with only a warning) into an error.
func create(ctx context.Context, obj *unstructured.Unstructured) error {
	return k8sClient.Create(ctx, obj.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict"))
}

var _ = Describe("alm-examples", func() {
	It("every example is accepted by the bundle's CRDs", func(ctx SpecContext) {
		kinds := map[string]bool{}
		for _, ex := range almExamples() {
			By("creating " + ex.GetKind() + " " + ex.GetName() + " (server-side dry run)")
			Expect(create(ctx, ex)).To(Succeed(), "alm-examples %s %s", ex.GetKind(), ex.GetName())
			kinds[ex.GetKind()] = true
		}
		Expect(kinds).To(HaveKey("MeshInstallation"))
		Expect(kinds).To(HaveKey("MeshCluster"))
	})

	It("the dry run really validates: a broken example is refused with the field named", func(ctx SpecContext) {
		for _, ex := range almExamples() {
			if ex.GetKind() != "MeshInstallation" {
				continue
			}
			bad := ex.DeepCopy()
			Expect(unstructured.SetNestedField(bad.Object, "{namespace}.{mesh}", "spec", "trust", "trustDomainTemplate")).To(Succeed())
			err := create(ctx, bad)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring("spec.trust.trustDomainTemplate"))

			unknown := ex.DeepCopy()
			Expect(unstructured.SetNestedField(unknown.Object, "x", "spec", "clusterSelectr")).To(Succeed())
			Expect(create(ctx, unknown)).To(MatchError(ContainSubstring("clusterSelectr")))
			return
		}
		Fail("no MeshInstallation in alm-examples")
	})
})
