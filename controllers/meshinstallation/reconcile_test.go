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

package meshinstallation

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

func TestMain(m *testing.M) { fleet.Main(m) }

// Reconcile on a real API server: a labelled Cluster becomes a MeshCluster the installation
// controls, the status is the installation controller's own server-side apply, a Cluster
// relabelled out loses its MeshCluster with an Event, and a deleted installation goes once no
// member is left.
func TestReconcileSelectsClustersAndReports(t *testing.T) {
	_, c := fleet.TestAPIServer(t, fleet.NewScheme(t, clientgoscheme.AddToScheme, clusterv1.AddToScheme, meshv1alpha1.AddToScheme), true)
	ctx := context.Background()
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"mesh": "true"}
	cluster := func(name string, labels map[string]string) *clusterv1.Cluster {
		return &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
			Spec: clusterv1.ClusterSpec{ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: "10.244.9.1", Port: 6443}}}
	}
	east, west := cluster("east", map[string]string{"mesh": "true"}), cluster("west", nil)
	for _, o := range []client.Object{mi, east, west} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	recorder := events.NewFakeRecorder(20)
	r := &Reconciler{Client: c, Recorder: recorder}
	req := ctrl.Request{NamespacedName: client.ObjectKey{Name: "demo"}}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}

	mc := &meshv1alpha1.MeshCluster{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "east"}, mc); err != nil {
		t.Fatalf("the labelled Cluster's MeshCluster: %v", err)
	}
	if err := c.Get(ctx, req.NamespacedName, mi); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(mc, mi) || mc.Spec.TrustDomain != "east.default.demo" {
		t.Errorf("MeshCluster = %+v, want controlled by the installation with its trust domain", mc)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "west"}, &meshv1alpha1.MeshCluster{}); !apierrors.IsNotFound(err) {
		t.Errorf("an unselected Cluster has a MeshCluster: %v", err)
	}
	if mi.Status.SelectedClusters != 1 || mi.Status.ObservedGeneration != mi.Generation || !slices.Contains(mi.Finalizers, Finalizer) {
		t.Errorf("status = %+v, finalizers %v", mi.Status, mi.Finalizers)
	}
	for _, typ := range []string{meshv1alpha1.ReadyCondition, meshv1alpha1.ProgressingCondition, meshv1alpha1.DegradedCondition} {
		if meta.FindStatusCondition(mi.Status.Conditions, typ) == nil {
			t.Errorf("no %s condition", typ)
		}
	}
	owners := map[string]bool{}
	for _, mf := range mi.ManagedFields {
		if mf.Subresource == "status" {
			owners[mf.Manager+"/"+string(mf.Operation)] = true
		}
	}
	if !owners[statusOwner+"/Apply"] || len(owners) != 1 {
		t.Errorf("status field managers %v, want only %s by server-side apply", owners, statusOwner)
	}

	// Relabelled out: its MeshCluster goes (here no MeshCluster finalizer holds it).
	east.Labels = nil
	if err := c.Update(ctx, east); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(mc), mc); !apierrors.IsNotFound(err) {
		t.Errorf("the MeshCluster of a Cluster relabelled out: %v", err)
	}
	if !drained(recorder, "MemberLeaving") {
		t.Error("no MemberLeaving Event")
	}

	if err := c.Delete(ctx, mi); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, mi); !apierrors.IsNotFound(err) {
		t.Errorf("an installation with no member left must go: %v", err)
	}
}

// drained reads the recorder's Events and tells whether one has the reason.
func drained(r *events.FakeRecorder, reason string) bool {
	found := false
	for len(r.Events) > 0 {
		if e := <-r.Events; strings.Contains(e, " "+reason+" ") {
			found = true
		}
	}
	return found
}

// A MeshInstallation stored with a duration no time.Duration holds (as admission before it
// bounded durations let through; here the CRD's rule is lifted to store it, then restored, as
// an upgrade would) is listed with the others, and its own reconcile refuses it with the field
// named, joining no member.
func TestStoredOverflowingDurationIsReported(t *testing.T) {
	_, c := fleet.TestAPIServer(t, fleet.NewScheme(t, clientgoscheme.AddToScheme, clusterv1.AddToScheme, meshv1alpha1.AddToScheme), true)
	ctx := context.Background()
	g := gomega.NewWithT(t)

	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	if err := c.Get(ctx, client.ObjectKey{Name: "meshinstallations." + meshv1alpha1.GroupVersion.Group}, crd); err != nil {
		t.Fatal(err)
	}
	restored := crd.DeepCopy()
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	caTTL := []string{"schema", "openAPIV3Schema", "properties", "spec", "properties", "trust", "properties", "caTTL"}
	version := versions[0].(map[string]any)
	unstructured.RemoveNestedField(version, append(caTTL, "x-kubernetes-validations")...)
	versions[0] = version
	if err := unstructured.SetNestedSlice(crd.Object, versions, "spec", "versions"); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, crd); err != nil {
		t.Fatal(err)
	}
	old := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": meshv1alpha1.GroupVersion.String(), "kind": "MeshInstallation",
		"metadata": map[string]any{"name": "old"},
		"spec": map[string]any{
			"clusterSelector": map[string]any{"matchLabels": map[string]any{"mesh": "true"}},
			"trust":           map[string]any{"caTTL": "3000000h"},
		},
	}}
	// Until the API server serves the lifted rule.
	g.Eventually(func() error { return c.Create(ctx, old.DeepCopy()) }).WithTimeout(30 * time.Second).Should(gomega.Succeed())
	if err := c.Get(ctx, client.ObjectKeyFromObject(restored), crd); err != nil {
		t.Fatal(err)
	}
	restored.SetResourceVersion(crd.GetResourceVersion())
	if err := c.Update(ctx, restored); err != nil {
		t.Fatal(err)
	}
	fine := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "fine"}}
	fine.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"other": "true"}
	cluster := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Namespace: "default", Labels: map[string]string{"mesh": "true"}},
		Spec: clusterv1.ClusterSpec{ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: "10.244.9.1", Port: 6443}}}
	for _, o := range []client.Object{fine, cluster} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The restored rule refuses a new one, with the field named.
	g.Eventually(func() error {
		again := old.DeepCopy()
		again.SetName("new")
		return c.Create(ctx, again)
	}).WithTimeout(30 * time.Second).Should(gomega.MatchError(gomega.ContainSubstring("spec.trust.caTTL")))

	list := &meshv1alpha1.MeshInstallationList{}
	if err := c.List(ctx, list); err != nil {
		t.Fatalf("list MeshInstallations with one stored overflowing duration: %v", err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("listed %d MeshInstallations, want 2", len(list.Items))
	}

	r := &Reconciler{Client: c, Recorder: events.NewFakeRecorder(20)}
	for _, name := range []string{"old", "fine"} {
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Name: name}}); err != nil {
			t.Fatalf("reconcile %s: %v", name, err)
		}
	}
	mi := &meshv1alpha1.MeshInstallation{}
	if err := c.Get(ctx, client.ObjectKey{Name: "old"}, mi); err != nil {
		t.Fatal(err)
	}
	degraded := meta.FindStatusCondition(mi.Status.Conditions, meshv1alpha1.DegradedCondition)
	if degraded == nil || degraded.Status != metav1.ConditionTrue || degraded.Reason != meshv1alpha1.ReasonInvalidSpec ||
		!strings.Contains(degraded.Message, `spec.trust.caTTL: "3000000h"`) || degraded.ObservedGeneration != mi.Generation {
		t.Errorf("Degraded = %+v, want True/InvalidSpec naming spec.trust.caTTL", degraded)
	}
	if ready := meta.FindStatusCondition(mi.Status.Conditions, meshv1alpha1.ReadyCondition); ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != meshv1alpha1.ReasonInvalidSpec {
		t.Errorf("Ready = %+v, want False/InvalidSpec", ready)
	}
	t.Logf("the stored installation's Degraded condition: %s", degraded.Message)
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "east"}, &meshv1alpha1.MeshCluster{}); !apierrors.IsNotFound(err) {
		t.Errorf("the invalid installation joined its Cluster: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "fine"}, mi); err != nil {
		t.Fatal(err)
	}
	if mi.Status.ObservedGeneration != mi.Generation {
		t.Errorf("the other installation was not reconciled: %+v", mi.Status)
	}
}
