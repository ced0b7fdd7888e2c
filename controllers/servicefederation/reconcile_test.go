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
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/status"
)

// startMember starts a member's API server (envtest) with the MCS CRDs, stopped when the test ends.
func startMember(t *testing.T, scheme *runtime.Scheme, index int) client.Client {
	t.Helper()
	env := fleet.NewEnvironment("", index, scheme)
	for _, doc := range [][]byte{mcscrd.ServiceExportCRD, mcscrd.ServiceImportCRD} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(doc, crd); err != nil {
			t.Fatal(err)
		}
		env.CRDs = append(env.CRDs, crd)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver from KUBEBUILDER_ASSETS (make kube-binaries): %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setConnected sets the MeshCluster's Connected condition, as the MeshCluster controller does.
func setConnected(t *testing.T, mgmt client.Client, name string, connected bool) {
	t.Helper()
	mc := &meshv1alpha1.MeshCluster{}
	ctx := context.Background()
	if err := mgmt.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, mc); err != nil {
		t.Fatal(err)
	}
	cond := metav1.Condition{Type: meshv1alpha1.ConnectedCondition, Status: metav1.ConditionTrue, Reason: "Connected"}
	if !connected {
		cond.Status, cond.Reason = metav1.ConditionFalse, "Unreachable"
	}
	meta.SetStatusCondition(&mc.Status.Conditions, cond)
	if err := mgmt.Status().Update(ctx, mc); err != nil {
		t.Fatal(err)
	}
}

// A ServiceExport with its Service and EndpointSlice in member east becomes, in one Reconcile, a
// ServiceImport with a clusterset IP from the installation's range and an MCS EndpointSlice of
// east's ready endpoints in member west (which has the namespace), and in east itself; the export
// is Valid and Ready, and both MeshClusters report ServicesSynced with their counts. When east
// becomes unreachable its endpoints stay in west, marked stale, for the grace period (the
// injected clock), and go once it has passed. When east, reachable, deletes its export, the
// imports go at once.
func TestReconcileFederatesAnExportedService(t *testing.T) {
	ctx := context.Background()
	scheme := fleet.NewScheme(t, clientgoscheme.AddToScheme, clusterv1.AddToScheme, meshv1alpha1.AddToScheme)
	memberScheme := fleet.NewScheme(t, clientgoscheme.AddToScheme, mcsv1beta1.Install)
	_, mgmt := fleet.TestAPIServer(t, scheme, true)
	const (
		ipRange = "240.245.3.0/24"
		grace   = 30 * time.Second
	)
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"mesh": "true"}
	mi.Spec.ServiceFederation.ClusterSetIPRange = ipRange
	mi.Spec.ServiceFederation.EndpointGracePeriod = &meshv1alpha1.Duration{Duration: grace}
	if err := mgmt.Create(ctx, mi); err != nil {
		t.Fatal(err)
	}
	cache := fleet.MemberCache{Clients: map[client.ObjectKey]client.Client{}}
	members := map[string]client.Client{}
	for i, name := range []string{"east", "west"} {
		c := startMember(t, memberScheme, i+1)
		members[name] = c
		cache.Clients[client.ObjectKey{Namespace: "default", Name: name}] = c
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}); err != nil {
			t.Fatal(err)
		}
		mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{meshv1alpha1.InstallationLabel: "demo"}},
			Spec: meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: name}, Installation: "demo", TrustDomain: name + ".default.demo"}}
		if err := controllerutil.SetControllerReference(mi, mc, scheme); err != nil {
			t.Fatal(err)
		}
		if err := mgmt.Create(ctx, mc); err != nil {
			t.Fatal(err)
		}
		// A spec change: observedGeneration must follow the generation, not just be 1.
		mc.Spec.Locality = meshv1alpha1.Locality{Region: "eu-" + name, Zone: "eu-" + name + "-1"}
		if err := mgmt.Update(ctx, mc); err != nil {
			t.Fatal(err)
		}
		if mc.Generation != 2 {
			t.Fatalf("MeshCluster %s has generation %d after a spec change, want 2", name, mc.Generation)
		}
		mc.Status.KubeSystemUID = fleet.KubeSystemUID(t, c)
		if err := mgmt.Status().Update(ctx, mc); err != nil {
			t.Fatal(err)
		}
		setConnected(t, mgmt, name, true)
	}
	east, west := members["east"], members["west"]
	eastID := "east-default" // the MCS cluster ID of Cluster default/east

	// East exports demo/echo: a ClusterIP Service and its EndpointSlice, one endpoint not ready.
	key := mcs.Key{Namespace: "demo", Name: "echo"}
	for _, o := range []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo-x7k2p", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.1.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.244.1.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			}},
		&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo"}},
	} {
		if err := east.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	clock := clocktesting.NewFakeClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	r := &Reconciler{Client: mgmt, ClusterCache: cache, Recorder: events.NewFakeRecorder(500), Clock: clock,
		memory: mcs.NewMemory(), known: map[string]map[mcs.Key]bool{}, allocators: map[string]*mcs.Allocator{},
		reports: mcs.Throttle{Every: reportEvery}, written: &status.Writer{Owner: "fleetmesh-servicefederation"}}
	req := Request{Installation: "demo", Key: key}
	reconcile := func(step time.Duration) time.Duration {
		t.Helper()
		// Past reportEvery, so that every Reconcile also reports the members' counts.
		clock.Step(step)
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return res.RequeueAfter
	}
	imported := func(c client.Client) (*mcsv1beta1.ServiceImport, []discoveryv1.EndpointSlice) {
		t.Helper()
		si := &mcsv1beta1.ServiceImport{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "echo"}, si); apierrors.IsNotFound(err) {
			si = nil
		} else if err != nil {
			t.Fatal(err)
		}
		list := &discoveryv1.EndpointSliceList{}
		if err := c.List(ctx, list, client.InNamespace("demo"), client.MatchingLabels{mcsv1beta1.LabelServiceName: "echo"}); err != nil {
			t.Fatal(err)
		}
		return si, list.Items
	}
	synced := func(name string, exported, imports int32) {
		t.Helper()
		mc := &meshv1alpha1.MeshCluster{}
		if err := mgmt.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, mc); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(mc.Status.Conditions, meshv1alpha1.ServicesSyncedCondition)
		want := fmt.Sprintf("%d services exported here, %d imported", exported, imports)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "Synced" || c.ObservedGeneration != mc.Generation || c.Message != want {
			t.Errorf("%s: ServicesSynced = %+v, want True/Synced %q at generation %d", name, c, want, mc.Generation)
		}
		if mc.Status.ExportedServices != exported || mc.Status.ImportedServices != imports {
			t.Errorf("%s: status counts exported %d imported %d, want %d and %d", name, mc.Status.ExportedServices, mc.Status.ImportedServices, exported, imports)
		}
	}

	if requeue := reconcile(0); requeue != 0 {
		t.Errorf("requeue after %s with every member reachable, want none", requeue)
	}
	si, got := imported(west)
	if si == nil {
		t.Fatal("west has no ServiceImport demo/echo")
	}
	if len(si.Spec.IPs) != 1 {
		t.Fatalf("west's import has clusterset IPs %v, want one", si.Spec.IPs)
	}
	ip, err := netip.ParseAddr(si.Spec.IPs[0])
	if err != nil || !netip.MustParsePrefix(ipRange).Contains(ip) {
		t.Errorf("west's import has clusterset IP %s, want one from %s", si.Spec.IPs[0], ipRange)
	}
	if si.Spec.Type != mcsv1beta1.ClusterSetIP || len(si.Spec.Ports) != 1 || si.Spec.Ports[0].Port != 80 || si.Spec.Ports[0].Name != "http" ||
		si.Labels[meshv1alpha1.InstallationLabel] != "demo" {
		t.Errorf("west's import = %+v, want a ClusterSetIP import of port http/80 labelled for demo", si)
	}
	if len(si.Status.Clusters) != 1 || si.Status.Clusters[0].Cluster != eastID {
		t.Errorf("west's import status.clusters %v, want [%s]", si.Status.Clusters, eastID)
	}
	if len(got) != 1 {
		t.Fatalf("west has %d MCS EndpointSlices of demo/echo, want 1 (east's)", len(got))
	}
	s := got[0]
	if s.Name != mcs.SliceName(key, eastID) || s.Labels[mcsv1beta1.LabelSourceCluster] != eastID || s.Labels[discoveryv1.LabelManagedBy] != mcs.ManagedBy ||
		s.Labels[meshv1alpha1.InstallationLabel] != "demo" || s.Labels[mcs.RegionLabel] != "eu-east" || s.Labels[mcs.StaleLabel] != "" {
		t.Errorf("west's MCS slice %s has labels %v", s.Name, s.Labels)
	}
	if len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != "10.244.1.10" || len(s.Ports) != 1 || ptr.Deref(s.Ports[0].Port, 0) != 8080 {
		t.Errorf("west's MCS slice endpoints %+v ports %+v, want east's ready endpoint 10.244.1.10 on 8080", s.Endpoints, s.Ports)
	}
	if own, ownSlices := imported(east); own == nil || !slices.Equal(own.Spec.IPs, si.Spec.IPs) || len(ownSlices) != 1 {
		t.Errorf("east's own import %+v (%d MCS slices), want the same clusterset IP %v and its own slice", own, len(ownSlices), si.Spec.IPs)
	}
	se := &mcsv1beta1.ServiceExport{}
	if err := east.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "echo"}, se); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{string(mcsv1beta1.ServiceExportConditionValid), string(mcsv1beta1.ServiceExportConditionReady)} {
		if !meta.IsStatusConditionTrue(se.Status.Conditions, typ) {
			t.Errorf("the export's %s = %s, want True", typ, fleet.ConditionOf(se.Status.Conditions, typ))
		}
	}
	synced("east", 1, 1)
	synced("west", 0, 1)

	// East is unreachable: its endpoints stay in west, marked stale, for the grace period.
	setConnected(t, mgmt, "east", false)
	if requeue := reconcile(3 * time.Second); requeue != grace {
		t.Errorf("requeue after %s with east away, want the grace period %s", requeue, grace)
	}
	si, got = imported(west)
	if si == nil || !slices.Equal(si.Spec.IPs, []string{ip.String()}) || len(got) != 1 || got[0].Labels[mcs.StaleLabel] != "true" ||
		len(got[0].Endpoints) != 1 || got[0].Endpoints[0].Addresses[0] != "10.244.1.10" {
		t.Fatalf("west within the grace period: import %+v, slices %+v; want the import kept and east's slice marked stale", si, got)
	}
	if requeue := reconcile(grace - time.Second); requeue != time.Second {
		t.Errorf("requeue after %s a second before the grace period ends, want 1s", requeue)
	}
	if si, _ = imported(west); si == nil {
		t.Fatal("west lost the import before the grace period ended")
	}
	if requeue := reconcile(2 * time.Second); requeue != 0 {
		t.Errorf("requeue after %s once the grace period is over, want none", requeue)
	}
	if si, got = imported(west); si != nil || len(got) != 0 {
		t.Fatalf("west after the grace period: import %v, %d MCS slices; want none", si, len(got))
	}
	synced("west", 0, 0)

	// East is back; then, reachable, it deletes its export: the imports go at once.
	setConnected(t, mgmt, "east", true)
	reconcile(3 * time.Second)
	if si, got = imported(west); si == nil || len(got) != 1 || got[0].Labels[mcs.StaleLabel] != "" {
		t.Fatalf("west once east is back: import %v, slices %+v; want the import and a fresh slice", si, got)
	}
	if err := east.Delete(ctx, se); err != nil {
		t.Fatal(err)
	}
	reconcile(3 * time.Second)
	for name, c := range members {
		if si, got := imported(c); si != nil || len(got) != 0 {
			t.Errorf("%s after the export was deleted: import %v, %d MCS slices; want none", name, si, len(got))
		}
	}
	synced("east", 0, 0)
	synced("west", 0, 0)
}
