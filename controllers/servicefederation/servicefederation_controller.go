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

// Package servicefederation turns ServiceExports in members into ServiceImports and MCS
// EndpointSlices in every member (KEP-1645). One reconcile is one service of one installation:
// an event in any member re-diffs that service in every member, from the members' caches, and
// never re-lists a member. Each reconcile gathers (gather.go), decides with internal/mcs's pure
// PlanService, applies (apply.go) and reports (report.go).
package servicefederation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/metrics"
	"github.com/fleetmesh/fleetmesh/internal/status"
)

// Request is one service of one installation; an empty Name asks for a sync of every service the
// installation knows (a member connected, left or changed).
type Request struct {
	Installation string
	Key          mcs.Key
}

// Reconciler federates services.
type Reconciler struct {
	Client       client.Client
	ClusterCache clustercache.ClusterCache
	Recorder     events.EventRecorder
	// Clock is the time source (the real clock when nil).
	Clock clock.PassiveClock

	controller controller.TypedController[Request]

	// mu guards the state below; no member is read or written while it is held, except the
	// allocator's one-time seeding from the members' caches.
	mu sync.Mutex
	// memory keeps each member's last known exports, for the grace period of an unreachable one.
	memory *mcs.Memory
	// known is, per installation, every service ever seen (true while it has an import).
	known      map[string]map[mcs.Key]bool
	allocators map[string]*mcs.Allocator
	// reports throttles the members' counts per installation.
	reports mcs.Throttle
	// changes is when a change of a service's source (its ServiceExport, Service or local
	// EndpointSlices in any member) was first seen and not yet federated: the start of the
	// propagation the metric times.
	changes mcs.Changes[Request]
	// written writes the MeshCluster status fields this controller owns.
	written *status.Writer
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.TypedOptions[Request]) error {
	if r.Client == nil || r.ClusterCache == nil || r.Recorder == nil {
		return errors.New("servicefederation: Client, ClusterCache and Recorder are required")
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.memory = mcs.NewMemory()
	r.known = map[string]map[mcs.Key]bool{}
	r.allocators = map[string]*mcs.Allocator{}
	r.reports = mcs.Throttle{Every: reportEvery}
	r.written = &status.Writer{Owner: "fleetmesh-servicefederation"}
	c, err := builder.TypedControllerManagedBy[Request](mgr).
		Named("servicefederation").
		WithOptions(opts).
		// A member's MeshCluster changes when it connects, disconnects, joins or leaves.
		WatchesRawSource(source.TypedKind(mgr.GetCache(), &meshv1alpha1.MeshCluster{},
			handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, mc *meshv1alpha1.MeshCluster) []Request {
				return []Request{{Installation: mc.Spec.Installation}}
			}),
			// Only what changes membership or reachability: the counts this controller writes
			// into MeshCluster status must not wake a sync of every service.
			predicate.TypedFuncs[*meshv1alpha1.MeshCluster]{
				UpdateFunc: func(e event.TypedUpdateEvent[*meshv1alpha1.MeshCluster]) bool {
					connected := func(mc *meshv1alpha1.MeshCluster) bool {
						return meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.ConnectedCondition)
					}
					return connected(e.ObjectOld) != connected(e.ObjectNew) ||
						e.ObjectOld.Generation != e.ObjectNew.Generation ||
						e.ObjectOld.DeletionTimestamp.IsZero() != e.ObjectNew.DeletionTimestamp.IsZero()
				},
			})).
		// What the installation federates (namespaces, createNamespaces, ranges) changed.
		WatchesRawSource(source.TypedKind(mgr.GetCache(), &meshv1alpha1.MeshInstallation{},
			handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, mi *meshv1alpha1.MeshInstallation) []Request {
				return []Request{{Installation: mi.Name}}
			}),
			predicate.TypedGenerationChangedPredicate[*meshv1alpha1.MeshInstallation]{})).
		Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	return nil
}

// Reconcile federates one service, or syncs a whole installation.
func (r *Reconciler) Reconcile(ctx context.Context, req Request) (ctrl.Result, error) {
	mi := &meshv1alpha1.MeshInstallation{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: req.Installation}, mi); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.Imports.DeletePartialMatch(prometheus.Labels{"installation": req.Installation})
			r.takeChange(req) // nothing will federate it now
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	members := &meshv1alpha1.MeshClusterList{}
	if err := r.Client.List(ctx, members, client.MatchingLabels{meshv1alpha1.InstallationLabel: mi.Name}); err != nil {
		return ctrl.Result{}, err
	}
	if req.Key.Name == "" {
		return r.syncInstallation(ctx, mi, members.Items)
	}
	return r.reconcileService(ctx, mi, members.Items, req.Key)
}

// syncInstallation registers the member watches, learns every exported service and federates
// each of them; it also refreshes every member's counts and ServicesSynced.
func (r *Reconciler) syncInstallation(ctx context.Context, mi *meshv1alpha1.MeshInstallation, meshClusters []meshv1alpha1.MeshCluster) (ctrl.Result, error) {
	var errs []error
	keys := map[mcs.Key]bool{}
	r.mu.Lock()
	for k := range r.known[mi.Name] {
		keys[k] = true
	}
	r.mu.Unlock()
	for i := range meshClusters {
		m := r.connected(ctx, &meshClusters[i])
		if m.reader == nil {
			continue
		}
		if err := r.watchMember(ctx, mi.Name, m.mc); err != nil {
			errs = append(errs, err)
			continue
		}
		exports := &mcsv1beta1.ServiceExportList{}
		if err := m.reader.List(ctx, exports); err != nil {
			errs = append(errs, fmt.Errorf("list ServiceExports of %s: %w", m.id, err))
			continue
		}
		for _, e := range exports.Items {
			keys[mcs.Key{Namespace: e.Namespace, Name: e.Name}] = true
		}
		imports := &mcsv1beta1.ServiceImportList{}
		if err := m.reader.List(ctx, imports, client.MatchingLabels{meshv1alpha1.InstallationLabel: mi.Name}); err != nil {
			errs = append(errs, fmt.Errorf("list ServiceImports of %s: %w", m.id, err))
			continue
		}
		for _, imp := range imports.Items {
			keys[mcs.Key{Namespace: imp.Namespace, Name: imp.Name}] = true
		}
	}
	var requeue time.Duration
	for k := range keys {
		res, err := r.federate(ctx, mi, meshClusters, k)
		errs = append(errs, err)
		if res.RequeueAfter > 0 && (requeue == 0 || res.RequeueAfter < requeue) {
			requeue = res.RequeueAfter
		}
	}
	err := errors.Join(errs...)
	errs = append(errs, r.reportMembers(ctx, mi, meshClusters, err))
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// reportEvery bounds how often per-service reconciles rewrite the members' counts: a burst of
// exports must not turn into a burst of MeshCluster status writes.
const reportEvery = 2 * time.Second

// reconcileService federates one service and, at most every reportEvery, refreshes the members'
// counts and ServicesSynced; a failure is always reported. When a report is skipped, one
// request per installation comes back after reportEvery, so a burst's last change is reported.
func (r *Reconciler) reconcileService(ctx context.Context, mi *meshv1alpha1.MeshInstallation, meshClusters []meshv1alpha1.MeshCluster, key mcs.Key) (ctrl.Result, error) {
	res, err := r.federate(ctx, mi, meshClusters, key)
	r.mu.Lock()
	due, deferAfter := r.reports.Due(mi.Name, r.Clock.Now(), err != nil)
	r.mu.Unlock()
	if !due {
		if deferAfter > 0 && (res.RequeueAfter == 0 || res.RequeueAfter > deferAfter) {
			res.RequeueAfter = deferAfter
		}
		return res, nil
	}
	return res, errors.Join(err, r.reportMembers(ctx, mi, meshClusters, err))
}

// federate is one service across the installation's members: gather, plan (pure), apply,
// report.
func (r *Reconciler) federate(ctx context.Context, mi *meshv1alpha1.MeshInstallation, meshClusters []meshv1alpha1.MeshCluster, key mcs.Key) (ctrl.Result, error) {
	now := r.Clock.Now()
	req := Request{Installation: mi.Name, Key: key}
	changed, seen := r.takeChange(req)
	if !seen {
		changed = now // a resync, or a change this pass finds before its event
	}
	in, live, requeue, errs := r.gather(ctx, mi, meshClusters, key, now)
	plan, err := r.plan(ctx, mi, in, live)
	errs = append(errs, err)
	wrote, err := r.apply(ctx, live, mi.Name, key, plan)
	errs = append(errs, err)
	failed := errors.Join(errs...) != nil
	switch {
	case failed && seen:
		r.noteChange(req, changed) // retried: the propagation is not over
	case plan.Import != nil && wrote:
		// Only passes that carried a change to the members: a no-op pass propagates nothing.
		metrics.Propagation.WithLabelValues(mi.Name).Observe(r.Clock.Since(changed).Seconds())
	}
	for _, m := range live {
		if v, ok := plan.Verdicts[m.id]; ok {
			errs = append(errs, r.writeExportStatus(ctx, m, key, v, plan.Import != nil && !failed))
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// plan decides, under the lock: the installation's allocator (seeded on first use from every
// import the live members show), PlanService, and what the installation knows.
func (r *Reconciler) plan(ctx context.Context, mi *meshv1alpha1.MeshInstallation, in mcs.PlanInput, live []member) (mcs.Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var seedErr error
	a := r.allocators[mi.Name]
	if a == nil {
		// First allocation since the operator started: every IP an import already shows is held
		// before any is handed out, so no import's IP ever changes across a restart. (The members'
		// imports come from their caches: no request is made under the lock.)
		if a, seedErr = seedAllocator(ctx, mi, live); seedErr == nil {
			r.allocators[mi.Name] = a
		}
	}
	p, err := mcs.PlanService(in, a)
	if r.known[mi.Name] == nil {
		r.known[mi.Name] = map[mcs.Key]bool{}
	}
	r.known[mi.Name][in.Key] = p.Import != nil
	return p, errors.Join(seedErr, err)
}

// noteChange records that a service's source changed at t, unless an earlier change is pending.
func (r *Reconciler) noteChange(req Request, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes.Note(req, t)
}

// takeChange returns (and forgets) when the pending change of a service was first seen.
func (r *Reconciler) takeChange(req Request) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changes.Take(req)
}

var _ reconcile.TypedReconciler[Request] = &Reconciler{}
