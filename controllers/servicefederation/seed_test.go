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

package servicefederation

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
)

// The allocator a restarted operator makes holds the IP of every import the members show before
// it allocates: a new service whose hash lands on such an IP gets another one.
func TestSeedAllocatorHoldsEveryImportedIP(t *testing.T) {
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "mesh"}}
	mi.Spec.ServiceFederation.ClusterSetIPRange = "240.245.0.0/28"
	newcomer := mcs.Key{Namespace: "demo", Name: "new"}
	probe, _ := mcs.NewAllocator(mi.Spec.ServiceFederation.ClusterSetIPRange)
	hashIP, _ := probe.Allocate(newcomer, "")

	scheme := runtime.NewScheme()
	if err := mcsv1beta1.Install(scheme); err != nil {
		t.Fatal(err)
	}
	imported := func(ns, name, ip, installation string) *mcsv1beta1.ServiceImport {
		return &mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{meshv1alpha1.InstallationLabel: installation}},
			Spec:       mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, IPs: []string{ip}},
		}
	}
	// The import holding hashIP is shown only by the second member; another installation's
	// import of the same address is not this installation's.
	first := fake.NewClientBuilder().WithScheme(scheme).WithObjects(imported("demo", "other-mesh", hashIP, "other")).Build()
	second := fake.NewClientBuilder().WithScheme(scheme).WithObjects(imported("demo", "old", hashIP, "mesh")).Build()
	a, err := seedAllocator(context.Background(), mi, []member{{id: "m1", reader: first}, {id: "m2", reader: second}})
	if err != nil {
		t.Fatal(err)
	}
	if ip, _ := a.Allocate(newcomer, ""); ip == hashIP {
		t.Errorf("the newcomer took %s, which demo/old already shows", ip)
	}
	if ip, _ := a.Allocate(mcs.Key{Namespace: "demo", Name: "old"}, hashIP); ip != hashIP {
		t.Errorf("demo/old moved from %s to %s", hashIP, ip)
	}
}
