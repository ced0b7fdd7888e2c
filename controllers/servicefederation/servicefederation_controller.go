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
// never re-lists a member.
package servicefederation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
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
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/metrics"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
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
	Now          func() time.Time

	controller controller.TypedController[Request]

	mu sync.Mutex
	// lastKnown keeps each member's exports so an unreachable member's endpoints stay for the
	// grace period; goneSince is when a member was first seen unreachable.
	lastKnown     map[string]map[mcs.Key]mcs.Export
	goneSince     map[string]time.Time
	known         map[string]map[mcs.Key]bool // installation -> services ever seen
	allocators    map[string]*mcs.Allocator
	lastReport    map[string]time.Time // installation -> last counts report
	reportPending map[string]bool      // installation -> a deferred report is queued
	// changedAt is when a change of a service's source (its ServiceExport, Service or local
	// EndpointSlices in any member) was first seen and not yet federated: the start of the
	// propagation the metric times.
	changedAt map[Request]time.Time
	// written writes the MeshCluster status fields this controller owns.
	written *status.Writer
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.TypedOptions[Request]) error {
	if r.Client == nil || r.ClusterCache == nil || r.Recorder == nil {
		return errors.New("servicefederation: Client, ClusterCache and Recorder are required")
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	r.lastKnown = map[string]map[mcs.Key]mcs.Export{}
	r.goneSince = map[string]time.Time{}
	r.known = map[string]map[mcs.Key]bool{}
	r.allocators = map[string]*mcs.Allocator{}
	r.lastReport = map[string]time.Time{}
	r.reportPending = map[string]bool{}
	r.changedAt = map[Request]time.Time{}
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

type member struct {
	mc     *meshv1alpha1.MeshCluster
	id     string
	reader client.Reader // nil when unreachable
	writer client.Client
}

func (r *Reconciler) connected(ctx context.Context, mc *meshv1alpha1.MeshCluster) member {
	m := member{mc: mc, id: install.ClusterID(mc)}
	if !mc.DeletionTimestamp.IsZero() || !meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.ConnectedCondition) {
		return m
	}
	c, err := controllers.MemberClient(ctx, r.ClusterCache, mc)
	if err != nil {
		return m // not connected, or not this member (identity changed)
	}
	m.reader, m.writer = c, c
	return m
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
	now := r.Now()
	r.mu.Lock()
	wait := reportEvery - now.Sub(r.lastReport[mi.Name])
	due := err != nil || wait <= 0
	deferred := false
	switch {
	case due:
		r.lastReport[mi.Name] = now
		delete(r.reportPending, mi.Name)
	case !r.reportPending[mi.Name]:
		r.reportPending[mi.Name] = true
		deferred = true
	}
	r.mu.Unlock()
	if !due {
		if deferred && (res.RequeueAfter == 0 || res.RequeueAfter > wait) {
			res.RequeueAfter = wait
		}
		return res, nil
	}
	return res, errors.Join(err, r.reportMembers(ctx, mi, meshClusters, err))
}

// federate gathers one service's exports from every member and converges every member.
func (r *Reconciler) federate(ctx context.Context, mi *meshv1alpha1.MeshInstallation, meshClusters []meshv1alpha1.MeshCluster, key mcs.Key) (ctrl.Result, error) {
	grace := mi.Spec.ServiceFederation.EndpointGracePeriodOrDefault()
	now := r.Now()
	req := Request{Installation: mi.Name, Key: key}
	changed, seen := r.takeChange(req)
	if !seen {
		changed = now // a resync, or a change this pass finds before its event
	}
	var (
		exports []mcs.Export
		live    []member
		errs    []error
		requeue time.Duration
	)
	for i := range meshClusters {
		m := r.connected(ctx, &meshClusters[i])
		if m.reader != nil {
			live = append(live, m)
			e, ok, err := readExport(ctx, m, key)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			r.remember(m.id, key, e, ok)
			if ok {
				exports = append(exports, e)
			}
			continue
		}
		// Unreachable: its last known export stays, marked stale, for the grace period.
		if e, ok, left := r.lastKnownExport(m.id, key, now, grace); ok {
			e.Stale = true
			exports = append(exports, e)
			if requeue == 0 || left < requeue {
				requeue = left
			}
		}
	}
	imp, verdicts := mcs.Resolve(exports)
	r.mu.Lock()
	if r.known[mi.Name] == nil {
		r.known[mi.Name] = map[mcs.Key]bool{}
	}
	r.known[mi.Name][key] = imp != nil
	r.mu.Unlock()

	ip := ""
	if imp != nil && imp.Type == mcsv1beta1.ClusterSetIP {
		var err error
		if ip, err = r.clusterSetIP(ctx, mi, live, key); err != nil {
			errs = append(errs, err)
		}
	} else {
		r.releaseIP(mi.Name, key)
	}

	// Members converge in parallel: the slowest member sets the latency, not their sum.
	labels := map[string]string{meshv1alpha1.ManagedByLabel: meshv1alpha1.ManagedByValue, meshv1alpha1.InstallationLabel: mi.Name}
	var mu sync.Mutex
	var wg sync.WaitGroup
	applied := map[string]error{}
	wrote := false
	for _, m := range live {
		wg.Add(1)
		go func(m member) {
			defer wg.Done()
			w, err := r.converge(ctx, m, mi, imp, ip, key, labels)
			mu.Lock()
			applied[m.id] = err
			wrote = wrote || w
			mu.Unlock()
		}(m)
	}
	wg.Wait()
	for _, m := range live {
		if err := applied[m.id]; err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case len(errs) > 0 && seen:
		r.noteChange(req, changed) // retried: the propagation is not over
	case imp != nil && wrote:
		// Only passes that carried a change to the members: a no-op pass propagates nothing.
		metrics.Propagation.WithLabelValues(mi.Name).Observe(r.Now().Sub(changed).Seconds())
	}
	for _, m := range live {
		if v, ok := verdicts[m.id]; ok {
			errs = append(errs, r.writeExportStatus(ctx, m, key, v, imp != nil && errors.Join(errs...) == nil))
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// readExport builds a member's Export of a service from its cache.
func readExport(ctx context.Context, m member, key mcs.Key) (mcs.Export, bool, error) {
	se := &mcsv1beta1.ServiceExport{}
	if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, se); err != nil {
		if apierrors.IsNotFound(err) {
			return mcs.Export{}, false, nil
		}
		return mcs.Export{}, false, fmt.Errorf("get ServiceExport %s in %s: %w", key, m.id, err)
	}
	e := mcs.Export{
		Cluster: m.id, Key: key, Created: se.CreationTimestamp.Time,
		ExportedLabels: se.Spec.ExportedLabels, ExportedAnnotations: se.Spec.ExportedAnnotations,
		ExportTo: mcs.ParseExportTo(se.Annotations),
		Region:   m.mc.Spec.Locality.Region, Zone: m.mc.Spec.Locality.Zone,
	}
	svc := &corev1.Service{}
	if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, svc); err == nil {
		e.Service = svc
	} else if !apierrors.IsNotFound(err) {
		return e, false, fmt.Errorf("get Service %s in %s: %w", key, m.id, err)
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := m.reader.List(ctx, slices, client.InNamespace(key.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: key.Name}); err != nil {
		return e, false, fmt.Errorf("list EndpointSlices of %s in %s: %w", key, m.id, err)
	}
	for _, s := range slices.Items {
		if s.Labels[discoveryv1.LabelManagedBy] != mcs.ManagedBy {
			e.Slices = append(e.Slices, s)
		}
	}
	return e, true, nil
}

func (r *Reconciler) remember(cluster string, key mcs.Key, e mcs.Export, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.goneSince, cluster)
	if r.lastKnown[cluster] == nil {
		r.lastKnown[cluster] = map[mcs.Key]mcs.Export{}
	}
	if ok {
		r.lastKnown[cluster][key] = e
	} else {
		delete(r.lastKnown[cluster], key)
	}
}

// lastKnownExport returns an unreachable member's last export while within the grace period.
func (r *Reconciler) lastKnownExport(cluster string, key mcs.Key, now time.Time, grace time.Duration) (mcs.Export, bool, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.lastKnown[cluster][key]
	if !ok {
		return e, false, 0
	}
	since, seen := r.goneSince[cluster]
	if !seen {
		since = now
		r.goneSince[cluster] = now
	}
	left := since.Add(grace).Sub(now)
	if left <= 0 {
		delete(r.lastKnown[cluster], key)
		return e, false, 0
	}
	return e, true, left
}

func (r *Reconciler) clusterSetIP(ctx context.Context, mi *meshv1alpha1.MeshInstallation, live []member, key mcs.Key) (string, error) {
	current := ""
	for _, m := range live {
		si := &mcsv1beta1.ServiceImport{}
		if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, si); err == nil && len(si.Spec.IPs) > 0 {
			current = si.Spec.IPs[0]
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.allocators[mi.Name]
	if a == nil {
		// First allocation since the operator started: every IP an import already shows is held
		// before any is handed out, so no import's IP ever changes across a restart. (The members'
		// imports come from their caches: no request is made under the lock.)
		var err error
		if a, err = seedAllocator(ctx, mi, live); err != nil {
			return "", err
		}
		r.allocators[mi.Name] = a
	}
	return a.Allocate(key, current)
}

// seedAllocator is a new allocator of the installation's range holding the IP of every
// ServiceImport of the installation that the live members show.
func seedAllocator(ctx context.Context, mi *meshv1alpha1.MeshInstallation, live []member) (*mcs.Allocator, error) {
	a, err := mcs.NewAllocator(mi.Spec.ServiceFederation.ClusterSetIPRange)
	if err != nil {
		return nil, err
	}
	for _, m := range live {
		imports := &mcsv1beta1.ServiceImportList{}
		if err := m.reader.List(ctx, imports, client.MatchingLabels{meshv1alpha1.InstallationLabel: mi.Name}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("list the imports of member %s to seed the clusterset IP allocator: %w", m.id, err)
		}
		for i := range imports.Items {
			if si := &imports.Items[i]; len(si.Spec.IPs) > 0 {
				// An address out of range or already held (never so in a sound fleet) is left to
				// Allocate when its service is federated.
				a.Hold(mcs.Key{Namespace: si.Namespace, Name: si.Name}, si.Spec.IPs[0])
			}
		}
	}
	return a, nil
}

func (r *Reconciler) releaseIP(installation string, key mcs.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.allocators[installation]; a != nil {
		a.Release(key)
	}
}

// converge applies one service's desired import and slices to one member, and deletes the
// slices (and import) of this installation that are no longer desired there. wrote tells whether
// the member's copy had to change.
func (r *Reconciler) converge(ctx context.Context, m member, mi *meshv1alpha1.MeshInstallation, imp *mcs.Import, ip string, key mcs.Key, labels map[string]string) (wrote bool, _ error) {
	var desired mcs.Desired
	if imp != nil && r.importsInto(ctx, m, mi, key.Namespace) {
		desired = mcs.ForMember(imp, m.id, ip, labels)
	}
	var errs []error
	if desired.Import != nil {
		if mi.Spec.ServiceFederation.CreateNamespaces {
			ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: key.Namespace}}
			w, err := ssa.ApplyIfChanged(ctx, m.reader, m.writer, ns)
			wrote = wrote || w
			errs = append(errs, err)
		}
		// The import and its slices are independent objects: written together, and only
		// when the member's copy differs (this reconcile is also woken by its own writes).
		objs := append([]client.Object{desired.Import}, slicesAsObjects(desired.Slices)...)
		applied := make([]error, len(objs))
		written := make([]bool, len(objs))
		var wg sync.WaitGroup
		for i, o := range objs {
			wg.Go(func() { written[i], applied[i] = ssa.ApplyIfChanged(ctx, m.reader, m.writer, o) })
		}
		wg.Wait()
		errs = append(errs, applied...)
		wrote = wrote || slices.Contains(written, true)
		if applied[0] == nil {
			w, err := applyImportStatus(ctx, m, desired.Import)
			wrote = wrote || w
			errs = append(errs, err)
		}
	}
	want := map[string]bool{}
	for _, s := range desired.Slices {
		want[s.Name] = true
	}
	have := &discoveryv1.EndpointSliceList{}
	if err := m.reader.List(ctx, have, client.InNamespace(key.Namespace), client.MatchingLabels{
		mcsv1beta1.LabelServiceName: key.Name, discoveryv1.LabelManagedBy: mcs.ManagedBy, meshv1alpha1.InstallationLabel: mi.Name,
	}); err != nil {
		return wrote, fmt.Errorf("list MCS EndpointSlices of %s in %s: %w", key, m.id, err)
	}
	for i := range have.Items {
		if !want[have.Items[i].Name] {
			wrote = true
			errs = append(errs, client.IgnoreNotFound(m.writer.Delete(ctx, &have.Items[i])))
		}
	}
	if desired.Import == nil {
		si := &mcsv1beta1.ServiceImport{}
		err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, si)
		if err == nil && si.Labels[meshv1alpha1.InstallationLabel] == mi.Name {
			wrote = true
			errs = append(errs, client.IgnoreNotFound(m.writer.Delete(ctx, si)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return wrote, fmt.Errorf("converge %s in %s: %w", key, m.id, err)
	}
	return wrote, nil
}

// applyImportStatus writes the import's status.clusters (the exporting clusters, KEP-1645)
// through the status subresource, unless the member's copy already says so.
func applyImportStatus(ctx context.Context, m member, want *mcsv1beta1.ServiceImport) (bool, error) {
	live := &mcsv1beta1.ServiceImport{}
	if err := m.reader.Get(ctx, client.ObjectKeyFromObject(want), live); err == nil && equality.Semantic.DeepEqual(live.Status.Clusters, want.Status.Clusters) {
		return false, nil
	}
	return true, status.Apply(ctx, m.writer, want, ssa.FieldOwner, &mcsv1beta1.ServiceImportStatus{Clusters: want.Status.Clusters})
}

// noteChange records that a service's source changed at t, unless an earlier change is pending.
func (r *Reconciler) noteChange(req Request, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.changedAt[req]; !ok || t.Before(at) {
		r.changedAt[req] = t
	}
}

// takeChange returns (and forgets) when the pending change of a service was first seen.
func (r *Reconciler) takeChange(req Request) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.changedAt[req]
	delete(r.changedAt, req)
	return at, ok
}

func slicesAsObjects(slices []*discoveryv1.EndpointSlice) []client.Object {
	out := make([]client.Object, len(slices))
	for i, s := range slices {
		out[i] = s
	}
	return out
}

// importsInto applies namespace sameness: a member imports a service only into a namespace it
// has, unless the installation creates namespaces.
func (r *Reconciler) importsInto(ctx context.Context, m member, mi *meshv1alpha1.MeshInstallation, namespace string) bool {
	if ns := mi.Spec.ServiceFederation.Namespaces; len(ns) > 0 && !contains(ns, namespace) {
		return false
	}
	if mi.Spec.ServiceFederation.CreateNamespaces {
		return true
	}
	err := m.reader.Get(ctx, client.ObjectKey{Name: namespace}, &corev1.Namespace{})
	return err == nil
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// writeExportStatus sets Valid, Conflict and Ready on the member's ServiceExport.
func (r *Reconciler) writeExportStatus(ctx context.Context, m member, key mcs.Key, v mcs.Verdict, imported bool) error {
	se := &mcsv1beta1.ServiceExport{}
	if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, se); err != nil {
		return client.IgnoreNotFound(err)
	}
	before := se.DeepCopy()
	set := func(t mcsv1beta1.ServiceExportConditionType, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		// The export lives in the member: its transitions are Events on the member's MeshCluster.
		status.SetAbout(&se.Status.Conditions, r.Recorder, m.mc, "ServiceExport "+key.String(),
			metav1.Condition{Type: string(t), Status: st, Reason: reason, Message: msg, ObservedGeneration: se.Generation})
	}
	set(mcsv1beta1.ServiceExportConditionValid, v.Valid, v.ValidReason, v.ValidMessage)
	set(mcsv1beta1.ServiceExportConditionConflict, v.Conflict, v.ConflictReason, v.ConflictMessage)
	switch {
	case !v.Valid:
		set(mcsv1beta1.ServiceExportConditionReady, false, string(mcsv1beta1.ServiceExportReasonPending), "not exported: the export is not valid")
	case imported:
		set(mcsv1beta1.ServiceExportConditionReady, true, string(mcsv1beta1.ServiceExportReasonReady), "imported by every member that has the namespace")
	default:
		set(mcsv1beta1.ServiceExportConditionReady, false, string(mcsv1beta1.ServiceExportReasonPending), "propagating to the members (retrying)")
	}
	if status.EqualAll(before.Status.Conditions, se.Status.Conditions) {
		return nil
	}
	if err := m.writer.Status().Patch(ctx, se, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("status of ServiceExport %s in %s: %w", key, m.id, err)
	}
	return nil
}

// reportMembers writes each member's export/import counts and ServicesSynced.
func (r *Reconciler) reportMembers(ctx context.Context, mi *meshv1alpha1.MeshInstallation, meshClusters []meshv1alpha1.MeshCluster, syncErr error) error {
	var errs []error
	members := map[string]bool{}
	for i := range meshClusters {
		members[install.ClusterID(&meshClusters[i])] = true
	}
	metrics.Retain(metrics.Imports, mi.Name, "cluster", members) // members that left
	for i := range meshClusters {
		m := r.connected(ctx, &meshClusters[i])
		if m.reader == nil {
			continue
		}
		exports := &mcsv1beta1.ServiceExportList{}
		imports := &mcsv1beta1.ServiceImportList{}
		// Counting only: no deep copies of the cached objects.
		if err := m.reader.List(ctx, exports, client.UnsafeDisableDeepCopy); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.reader.List(ctx, imports, client.MatchingLabels{meshv1alpha1.InstallationLabel: mi.Name}, client.UnsafeDisableDeepCopy); err != nil {
			errs = append(errs, err)
			continue
		}
		mc := m.mc.DeepCopy()
		before := mc.DeepCopy()
		mc.Status.ExportedServices = int32(len(exports.Items))
		mc.Status.ImportedServices = int32(len(imports.Items))
		metrics.Imports.WithLabelValues(mi.Name, m.id).Set(float64(len(imports.Items)))
		cond := metav1.Condition{Type: meshv1alpha1.ServicesSyncedCondition, Status: metav1.ConditionTrue, Reason: "Synced",
			Message: fmt.Sprintf("%d services exported here, %d imported", len(exports.Items), len(imports.Items)), ObservedGeneration: mc.Generation}
		if syncErr != nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "SyncFailed", "service federation is retrying: "+status.Truncate(syncErr.Error(), 900)
		}
		status.Set(&mc.Status.Conditions, r.Recorder, mc, cond)
		cacheHolds := status.EqualAll(before.Status.Conditions, mc.Status.Conditions) &&
			before.Status.ExportedServices == mc.Status.ExportedServices && before.Status.ImportedServices == mc.Status.ImportedServices
		// This controller owns only these fields of the status (see status.Apply), and is not
		// woken by its own writes of them: the cache alone must not decide to skip (status.Writer).
		err := r.written.Write(ctx, r.Client, mc, cacheHolds, &meshv1alpha1.MeshClusterStatus{
			Conditions:       status.Owned(mc.Status.Conditions, meshv1alpha1.ServicesSyncedCondition),
			ExportedServices: mc.Status.ExportedServices,
			ImportedServices: mc.Status.ImportedServices,
		}, "exportedServices", "importedServices")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// watchMember registers the member watches that wake this controller: exports, services,
// endpoint slices, imports and namespaces, mapped to the service they concern.
func (r *Reconciler) watchMember(ctx context.Context, installation string, mc *meshv1alpha1.MeshCluster) error {
	key := client.ObjectKey{Namespace: mc.Namespace, Name: mc.Spec.ClusterRef.Name}
	byName := func(_ context.Context, o client.Object) []Request {
		return []Request{{Installation: installation, Key: mcs.Key{Namespace: o.GetNamespace(), Name: o.GetName()}}}
	}
	// A source of a service changed: the propagation the metric times starts now.
	sourceByName := func(ctx context.Context, o client.Object) []Request {
		reqs := byName(ctx, o)
		r.noteChange(reqs[0], r.Now())
		return reqs
	}
	bySliceLabel := func(_ context.Context, o client.Object) []Request {
		if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" { // the member's own slice
			req := Request{Installation: installation, Key: mcs.Key{Namespace: o.GetNamespace(), Name: name}}
			r.noteChange(req, r.Now())
			return []Request{req}
		}
		if name := o.GetLabels()[mcsv1beta1.LabelServiceName]; name != "" { // an MCS slice
			return []Request{{Installation: installation, Key: mcs.Key{Namespace: o.GetNamespace(), Name: name}}}
		}
		return nil
	}
	byNamespace := func(_ context.Context, o client.Object) []Request {
		r.mu.Lock()
		defer r.mu.Unlock()
		var reqs []Request
		for k, live := range r.known[installation] {
			if live && k.Namespace == o.GetName() {
				reqs = append(reqs, Request{Installation: installation, Key: k})
			}
		}
		return reqs
	}
	watches := []struct {
		kind client.Object
		fn   handler.TypedMapFunc[client.Object, Request]
	}{
		{&mcsv1beta1.ServiceExport{}, sourceByName},
		{&mcsv1beta1.ServiceImport{}, byName},
		{&corev1.Service{}, sourceByName},
		{&discoveryv1.EndpointSlice{}, bySliceLabel},
		{&corev1.Namespace{}, byNamespace},
	}
	for _, w := range watches {
		err := r.ClusterCache.Watch(ctx, key, clustercache.NewWatcher(clustercache.TypedWatcherOptions[client.Object, Request]{
			Name:         fmt.Sprintf("servicefederation-%T", w.kind),
			Watcher:      r.controller,
			Kind:         w.kind,
			EventHandler: handler.TypedEnqueueRequestsFromMapFunc(w.fn),
		}))
		if err != nil {
			return fmt.Errorf("watch %T in member %s: %w", w.kind, key, err)
		}
	}
	return nil
}

var _ reconcile.TypedReconciler[Request] = &Reconciler{}
