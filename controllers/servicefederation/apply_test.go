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
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
)

func TestMain(m *testing.M) { fleet.Main(m) }

// The controller writes an import or slice only when the member's copy differs. On a real API
// server: a second write of the same desired objects is skipped (no new resourceVersion), and a
// hand edit inside an atomic list (a field added to an endpoint or a port) is repaired.
func TestApplyIfChangedOnFederatedObjects(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, mcsv1beta1.Install} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	env := fleet.NewEnvironment("", 1, scheme)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(mcscrd.ServiceImportCRD, crd); err != nil {
		t.Fatal(err)
	}
	env.CRDs = []*apiextensionsv1.CustomResourceDefinition{crd}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver from KUBEBUILDER_ASSETS (make kube-binaries): %v", err)
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}); err != nil {
		t.Fatal(err)
	}

	key := mcs.Key{Namespace: "demo", Name: "echo"}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP}},
			SessionAffinity:       corev1.ServiceAffinityClientIP,
			SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(300))}},
			InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyLocal),
			TrafficDistribution:   ptr.To(corev1.ServiceTrafficDistributionPreferSameZone),
		}}
	source := discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.2.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
	}
	imp, _ := mcs.Resolve([]mcs.Export{{Cluster: "east", Key: key, Created: time.Now(), Service: svc,
		Slices: []discoveryv1.EndpointSlice{source}, Region: "eu", Zone: "eu-1"}})
	desired := mcs.ForMember(imp, "east", "", "242.1.0.1", map[string]string{"mesh.fleetmesh.io/installation": "demo"})
	if desired.Import == nil || len(desired.Slices) != 1 {
		t.Fatalf("want an import and one slice, got %+v", desired)
	}
	objs := []client.Object{desired.Import, desired.Slices[0]}
	applyAll := func(wantWrites bool) map[string]string {
		t.Helper()
		versions := map[string]string{}
		for _, o := range objs {
			wrote, err := ssa.ApplyIfChanged(ctx, c, c, o)
			if err != nil {
				t.Fatal(err)
			}
			if wrote != wantWrites {
				t.Errorf("%s: wrote %v, want %v", o.GetObjectKind().GroupVersionKind().Kind, wrote, wantWrites)
			}
			live := o.DeepCopyObject().(client.Object)
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
				t.Fatal(err)
			}
			versions[o.GetObjectKind().GroupVersionKind().Kind] = live.GetResourceVersion()
		}
		return versions
	}
	applyAll(true)
	m := member{id: "east", reader: c, writer: c}
	for _, want := range []bool{true, false} {
		if wrote, err := applyImportStatus(ctx, m, desired.Import); err != nil || wrote != want {
			t.Fatalf("status.clusters: wrote %v (want %v), err %v", wrote, want, err)
		}
	}
	live := &mcsv1beta1.ServiceImport{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(desired.Import), live); err != nil {
		t.Fatal(err)
	}
	if len(live.Spec.Ports) != 3 || live.Spec.SessionAffinityConfig == nil || live.Spec.InternalTrafficPolicy == nil ||
		live.Spec.TrafficDistribution == nil || len(live.Spec.IPFamilies) != 1 || len(live.Status.Clusters) != 1 || live.Status.Clusters[0].Cluster != "east" {
		t.Errorf("the member's import lost a field: %+v", live)
	}
	first := applyAll(false)
	if again := applyAll(false); again["ServiceImport"] != first["ServiceImport"] || again["EndpointSlice"] != first["EndpointSlice"] {
		t.Errorf("applying the same desired objects again wrote them (resourceVersions %v -> %v)", first, again)
	}

	slice := &discoveryv1.EndpointSlice{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(desired.Slices[0]), slice); err != nil {
		t.Fatal(err)
	}
	slice.Endpoints[0].Hostname = ptr.To("hijacked")
	if err := c.Update(ctx, slice); err != nil {
		t.Fatal(err)
	}
	si := &mcsv1beta1.ServiceImport{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(desired.Import), si); err != nil {
		t.Fatal(err)
	}
	si.Spec.Ports[0].AppProtocol = ptr.To("kubernetes.io/h2c")
	if err := c.Update(ctx, si); err != nil {
		t.Fatal(err)
	}
	applyAll(true)
	if err := c.Get(ctx, client.ObjectKeyFromObject(slice), slice); err != nil {
		t.Fatal(err)
	}
	for _, e := range slice.Endpoints {
		if e.Hostname != nil {
			t.Errorf("a hostname added by hand to an endpoint must be removed, have %q", *e.Hostname)
		}
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil {
		t.Fatal(err)
	}
	if len(si.Spec.Ports) != 3 || si.Spec.Ports[0].AppProtocol != nil {
		t.Errorf("an appProtocol added by hand must be removed, import has ports %v", si.Spec.Ports)
	}
}
