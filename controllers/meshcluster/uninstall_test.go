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

package meshcluster

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

// unreachable is the cluster cache of a member that never answers: no client, probes failing.
// Any other use of the cache is a test failure (the embedded nil interface panics).
type unreachable struct{ clustercache.ClusterCache }

func (unreachable) GetClient(context.Context, client.ObjectKey) (client.Client, error) {
	return nil, clustercache.ErrClusterNotConnected
}

func (unreachable) GetHealthCheckingState(context.Context, client.ObjectKey) clustercache.HealthCheckingState {
	return clustercache.HealthCheckingState{ConsecutiveFailures: 12}
}

// Reconcile of a deleted MeshCluster whose member stays unreachable: it waits, saying until
// when, and once the uninstall timeout has passed it lets the MeshCluster go, leaving the
// member's objects in place with a Warning Event that says so.
func TestReconcileGivesUpUninstallingAnUnreachableMember(t *testing.T) {
	scheme := fleet.NewScheme(t, clientgoscheme.AddToScheme, clusterv1.AddToScheme, meshv1alpha1.AddToScheme)
	_, c := fleet.TestAPIServer(t, scheme, true)
	ctx := context.Background()

	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"mesh": "true"}
	cluster := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Namespace: "default"},
		Spec: clusterv1.ClusterSpec{ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: "10.244.9.1", Port: 6443}}}
	for _, o := range []client.Object{mi, cluster} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Namespace: "default",
		Labels: map[string]string{meshv1alpha1.InstallationLabel: "demo"}, Finalizers: []string{meshv1alpha1.MeshClusterFinalizer}},
		Spec: meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "east"}, Installation: "demo", TrustDomain: "east.default.demo"}}
	if err := controllerutil.SetControllerReference(mi, mc, scheme); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, mc); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(mc), mc); err != nil || mc.DeletionTimestamp.IsZero() {
		t.Fatalf("the finalizer holds the deleted MeshCluster: %v", err)
	}

	clock := clocktesting.NewFakePassiveClock(mc.DeletionTimestamp.Add(time.Minute))
	recorder := events.NewFakeRecorder(10)
	r := &Reconciler{Client: c, ClusterCache: unreachable{}, Recorder: recorder, UninstallTimeout: 5 * time.Minute, Clock: clock}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(mc)}

	res, err := r.Reconcile(ctx, req)
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("within the timeout: %v, requeue %s; want a wait", err, res.RequeueAfter)
	}
	if err := c.Get(ctx, req.NamespacedName, mc); err != nil {
		t.Fatal(err)
	}
	ready := meta.FindStatusCondition(mc.Status.Conditions, meshv1alpha1.ReadyCondition)
	if ready == nil || ready.Reason != meshv1alpha1.ReasonDeleting || !strings.Contains(ready.Message, "gives up at") {
		t.Fatalf("Ready while waiting = %+v, want Deleting with the give-up time", ready)
	}

	clock.SetTime(mc.DeletionTimestamp.Add(6 * time.Minute))
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, mc); !apierrors.IsNotFound(err) {
		t.Fatalf("after the timeout the MeshCluster must go: %v (finalizers %v)", err, mc.Finalizers)
	}
	var seen []string
	for len(recorder.Events) > 0 {
		e := <-recorder.Events
		seen = append(seen, e)
		if strings.HasPrefix(e, "Warning "+meshv1alpha1.ReasonUninstallSkipped) && strings.Contains(e, "left in place") {
			return
		}
	}
	t.Errorf("events %q, want a Warning %s saying the objects are left in place", seen, meshv1alpha1.ReasonUninstallSkipped)
}
