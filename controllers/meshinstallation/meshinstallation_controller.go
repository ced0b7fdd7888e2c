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

// Package meshinstallation reconciles a MeshInstallation into one MeshCluster per Cluster API
// cluster it owns, and sums its members up in its status.
package meshinstallation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/finalizers"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/internal/finalizer"
	"github.com/fleetmesh/fleetmesh/internal/membership"
	"github.com/fleetmesh/fleetmesh/internal/metrics"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
	"github.com/fleetmesh/fleetmesh/internal/status"
)

// Finalizer waits for every member to be uninstalled before the MeshInstallation goes: a
// management cluster without garbage collection, or a member that must be cleaned first, must not
// leave MeshClusters (and installed control planes) behind.
const Finalizer = "mesh.fleetmesh.io/members"

// Reconciler reconciles MeshInstallations.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.Recorder == nil {
		return errors.New("meshinstallation: Client and Recorder are required")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1alpha1.MeshInstallation{}).
		Owns(&meshv1alpha1.MeshCluster{}, builder.WithPredicates(controllers.IgnoreServiceCounts())).
		// A Cluster's labels decide membership, possibly of any installation.
		Watches(&clusterv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(r.allInstallations)).
		Complete(r)
}

func (r *Reconciler) allInstallations(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &meshv1alpha1.MeshInstallationList{}
	if err := r.Client.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list MeshInstallations to map a Cluster event")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, mi := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: mi.Name}})
	}
	return reqs
}

// Reconcile selects the members, converges their MeshClusters and reports status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mi := &meshv1alpha1.MeshInstallation{}
	if err := r.Client.Get(ctx, req.NamespacedName, mi); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mi.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, mi)
	}
	if _, err := finalizers.EnsureFinalizer(ctx, r.Client, mi, Finalizer); err != nil {
		return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
	}

	clusters := &clusterv1.ClusterList{}
	if err := r.Client.List(ctx, clusters); err != nil {
		return ctrl.Result{}, fmt.Errorf("list Clusters: %w", err)
	}
	all := &meshv1alpha1.MeshInstallationList{}
	if err := r.Client.List(ctx, all); err != nil {
		return ctrl.Result{}, fmt.Errorf("list MeshInstallations: %w", err)
	}
	sel, err := membership.Select(mi, all.Items, clusters.Items)
	if err != nil {
		// Nothing is applied: the members stay as they are until the spec is fixed.
		invalid := func(typ string, st metav1.ConditionStatus) metav1.Condition {
			return metav1.Condition{Type: typ, Status: st, Reason: meshv1alpha1.ReasonInvalidSpec, Message: err.Error(), ObservedGeneration: mi.Generation}
		}
		return ctrl.Result{}, r.patchStatus(ctx, mi, membership.Summary{Conditions: []metav1.Condition{
			invalid(meshv1alpha1.DegradedCondition, metav1.ConditionTrue), invalid(meshv1alpha1.ReadyCondition, metav1.ConditionFalse),
		}})
	}
	existing, err := r.members(ctx, mi.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	plan := membership.PlanMembers(mi, sel.Members, existing)

	applyErr := r.converge(ctx, mi, plan, existing)

	members, err := r.members(ctx, mi.Name)
	if err != nil {
		return ctrl.Result{}, errors.Join(applyErr, err)
	}
	summary := membership.Summarize(mi.Generation, len(sel.Members), members, sel.Conflicts, plan.Refused)
	recordMembers(mi.Name, members)
	return ctrl.Result{}, errors.Join(applyErr, r.patchStatus(ctx, mi, summary))
}

// converge creates or updates the desired MeshClusters and deletes the others of this installation.
func (r *Reconciler) converge(ctx context.Context, mi *meshv1alpha1.MeshInstallation, plan membership.Plan, existing []meshv1alpha1.MeshCluster) error {
	var errs []error
	for key, spec := range plan.Specs {
		ns, name, _ := strings.Cut(key, "/")
		mc := &meshv1alpha1.MeshCluster{
			TypeMeta: metav1.TypeMeta{APIVersion: meshv1alpha1.GroupVersion.String(), Kind: "MeshCluster"},
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: ns,
				Labels: map[string]string{meshv1alpha1.InstallationLabel: mi.Name},
			},
			Spec: spec,
		}
		if err := controllerutil.SetControllerReference(mi, mc, r.Client.Scheme()); err != nil {
			errs = append(errs, err)
			continue
		}
		// A MeshCluster of the same name may belong to another installation (a Cluster handed
		// over): it must be gone before this one takes the name.
		current := &meshv1alpha1.MeshCluster{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(mc), current); err == nil && current.Spec.Installation != mi.Name {
			continue
		} else if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		u, err := ownedSpec(mc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ssa.Apply(ctx, r.Client, u); err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", key, err))
		}
	}
	for i := range existing {
		mc := &existing[i]
		if _, ok := plan.Specs[mc.Namespace+"/"+mc.Name]; ok || !mc.DeletionTimestamp.IsZero() {
			continue
		}
		r.Recorder.Eventf(mi, mc, "Normal", "MemberLeaving", "Leave", "cluster %s/%s no longer selected: uninstalling", mc.Namespace, mc.Name)
		if err := r.Client.Delete(ctx, mc); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete MeshCluster %s/%s: %w", mc.Namespace, mc.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) members(ctx context.Context, installation string) ([]meshv1alpha1.MeshCluster, error) {
	list := &meshv1alpha1.MeshClusterList{}
	if err := r.Client.List(ctx, list, client.MatchingLabels{meshv1alpha1.InstallationLabel: installation}); err != nil {
		return nil, fmt.Errorf("list MeshClusters: %w", err)
	}
	return list.Items, nil
}

// reconcileDelete deletes every MeshCluster (each uninstalls its member through its own
// finalizer) and lets the installation go once they are gone.
func (r *Reconciler) reconcileDelete(ctx context.Context, mi *meshv1alpha1.MeshInstallation) (ctrl.Result, error) {
	members, err := r.members(ctx, mi.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	for i := range members {
		if members[i].DeletionTimestamp.IsZero() {
			if err := r.Client.Delete(ctx, &members[i]); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("delete MeshCluster %s/%s: %w", members[i].Namespace, members[i].Name, err)
			}
		}
	}
	if len(members) > 0 {
		// MeshCluster deletions wake this reconciler (Owns); the requeue is a safety net.
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	if err := finalizer.Remove(ctx, r.Client, mi, Finalizer); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

func (r *Reconciler) patchStatus(ctx context.Context, mi *meshv1alpha1.MeshInstallation, s membership.Summary) error {
	before := mi.DeepCopy()
	mi.Status.SelectedClusters = s.Selected
	mi.Status.ReadyClusters = s.Ready
	mi.Status.ObservedGeneration = mi.Generation
	status.Set(&mi.Status.Conditions, r.Recorder, mi, s.Conditions...)
	if apiequality.Semantic.DeepEqual(before.Status, mi.Status) {
		return nil
	}
	// Server-side apply of the fields this controller owns, as every status writer does (the
	// trust federation controller owns federatedTrustDomains).
	return status.Apply(ctx, r.Client, mi, statusOwner, &meshv1alpha1.MeshInstallationStatus{
		ObservedGeneration: mi.Status.ObservedGeneration,
		Conditions: status.Owned(mi.Status.Conditions,
			meshv1alpha1.ReadyCondition, meshv1alpha1.ProgressingCondition, meshv1alpha1.DegradedCondition),
		SelectedClusters: mi.Status.SelectedClusters,
		ReadyClusters:    mi.Status.ReadyClusters,
	}, "selectedClusters", "readyClusters")
}

// statusOwner is this controller's field manager for the MeshInstallation status it writes.
const statusOwner = "fleetmesh-meshinstallation"

// recordMembers exports the members-by-condition gauge.
func recordMembers(installation string, members []meshv1alpha1.MeshCluster) {
	metrics.Members.DeletePartialMatch(map[string]string{"installation": installation})
	counts := map[[2]string]float64{}
	for _, m := range members {
		for _, c := range m.Status.Conditions {
			counts[[2]string{c.Type, string(c.Status)}]++
		}
	}
	for k, n := range counts {
		metrics.Members.WithLabelValues(installation, k[0], k[1]).Set(n)
	}
}

// ownedSpec is mc to apply with every spec field present, empty ones too: server-side apply then
// owns them all, so a hand edit of any (a zone set on a member whose Cluster has none) is
// reverted at the next reconcile instead of reaching the agent. (JSON omits empty strings.)
func ownedSpec(mc *meshv1alpha1.MeshCluster) (*unstructured.Unstructured, error) {
	u, err := ssa.ToUnstructured(mc)
	if err != nil {
		return nil, err
	}
	for path, v := range map[string]string{"region": mc.Spec.Locality.Region, "zone": mc.Spec.Locality.Zone} {
		if err := unstructured.SetNestedField(u.Object, v, "spec", "locality", path); err != nil {
			return nil, err
		}
	}
	if err := unstructured.SetNestedField(u.Object, mc.Spec.GatewayAddress, "spec", "gatewayAddress"); err != nil {
		return nil, err
	}
	return u, nil
}
