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

// Package trustfederation federates SPIFFE trust domains: it gathers the bundle every member's
// agent publishes and writes every other member's bundle into each member, then reports each
// member's bundle and whether its agent holds the current federated set (TrustFederated).
// It carries only public bundles: CA keys stay in their member and are never read.
package trustfederation

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/metrics"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
	"github.com/fleetmesh/fleetmesh/internal/status"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// resync refreshes status and the expiry metric even when nothing changed;
// notFederatedRecheck is sooner, while a member is not yet federated.
const (
	resync              = 5 * time.Minute
	notFederatedRecheck = 10 * time.Second
)

// Reconciler federates the trust domains of one installation per request (Name = installation).
type Reconciler struct {
	Client       client.Client
	ClusterCache clustercache.ClusterCache
	Recorder     events.EventRecorder
	// Clock is the time source (the real clock when nil).
	Clock clock.PassiveClock

	controller controller.Controller

	mu sync.Mutex
	// lastKnown is each member's last bundle read, so an unreachable member's bundle stays
	// federated (its workloads still call and are called).
	lastKnown map[client.ObjectKey]*spiffebundle.Bundle
	// external holds the outside trust domains' bundles (spec.trust.federatesWith); the
	// fetch loop (fetchExternal) fetches them and sends each finished fetch's installation on
	// fetched, a source of this controller.
	external *trust.External
	fetched  chan event.TypedGenericEvent[*meshv1alpha1.MeshInstallation]
	// written writes the MeshCluster status fields this controller owns.
	written *status.Writer
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if r.Client == nil || r.ClusterCache == nil || r.Recorder == nil {
		return errors.New("trustfederation: Client, ClusterCache and Recorder are required")
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.lastKnown = map[client.ObjectKey]*spiffebundle.Bundle{}
	r.external = &trust.External{Fetch: countFetches(federation.FetchBundle)}
	r.fetched = make(chan event.TypedGenericEvent[*meshv1alpha1.MeshInstallation])
	if err := mgr.Add(manager.RunnableFunc(r.fetchExternal)); err != nil {
		return err
	}
	r.written = &status.Writer{Owner: fieldOwner}
	c, err := ctrl.NewControllerManagedBy(mgr).
		Named("trustfederation").
		WithOptions(opts).
		For(&meshv1alpha1.MeshInstallation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&meshv1alpha1.MeshCluster{},
			handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.(*meshv1alpha1.MeshCluster).Spec.Installation}}}
			}),
			// Joining, leaving and reachability change the federated set; this controller's own
			// status writes must not wake it.
			builder.WithPredicates(predicate.Funcs{
				UpdateFunc: func(e event.UpdateEvent) bool {
					o, n := e.ObjectOld.(*meshv1alpha1.MeshCluster), e.ObjectNew.(*meshv1alpha1.MeshCluster)
					connected := func(mc *meshv1alpha1.MeshCluster) bool {
						return meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.ConnectedCondition)
					}
					return connected(o) != connected(n) || o.Generation != n.Generation ||
						o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() ||
						o.Annotations[meshv1alpha1.RotateCAAnnotation] != n.Annotations[meshv1alpha1.RotateCAAnnotation]
				},
			})).
		WatchesRawSource(source.Channel(r.fetched, &handler.TypedEnqueueRequestForObject[*meshv1alpha1.MeshInstallation]{})).
		Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	return nil
}

// countFetches counts each bundle endpoint fetch by result.
func countFetches(fetch trust.FetchFunc) trust.FetchFunc {
	return func(ctx context.Context, td spiffeid.TrustDomain, url string, opts ...federation.FetchOption) (*spiffebundle.Bundle, error) {
		b, err := fetch(ctx, td, url, opts...)
		result := "success"
		if err != nil {
			result = "failure"
		}
		metrics.BundleFetches.WithLabelValues(td.Name(), result).Inc()
		return b, err
	}
}

// member is one MeshCluster and what was read of it.
type member struct {
	mc      *meshv1alpha1.MeshCluster
	td      spiffeid.TrustDomain
	c       client.Client // nil when unreachable
	bundle  *spiffebundle.Bundle
	readErr error // the published bundle could not be read or is invalid
	// unpublished: reachable, and the agent's bundle ConfigMap does not exist (bundle may still
	// be the last one known, which stays federated).
	unpublished bool
	current     *trust.BundleSet  // the federated set the member holds now (nil if none)
	currData    map[string]string // its ConfigMap data
	agent       map[string]string // the agent's status ConfigMap data
}

// loaded is the federated set the member's agent confirmed loading, nil if unknown.
func (m *member) loaded() *trust.BundleSet {
	if m.current == nil || m.agent[wire.StatusKeyFederated] != wire.Digest([]byte(m.currData[wire.FederatedKeyBundleMap])) {
		return nil
	}
	return m.current
}

// rotationInputs are what a member's agent needs to drive a CA rotation, written beside its
// federated set: the lowest sequence of its own bundle that every other member holds, and the
// rotation asked for by the MeshCluster's annotation. behind lists the other members that do not
// hold the member's current bundle yet (what a rotation waits for).
func rotationInputs(m *member, members []*member) (map[string]string, []Behind) {
	out := map[string]string{}
	var behind []Behind
	if m.bundle != nil {
		own, _ := m.bundle.SequenceNumber()
		var held []*trust.BundleSet
		for _, o := range members {
			if o == m {
				continue
			}
			held = append(held, o.loaded())
			if trust.HeldSequence(m.td, own, []*trust.BundleSet{o.loaded()}) < own {
				behind = append(behind, Behind{Member: o.mc.Name, Reachable: o.c != nil})
			}
		}
		out[wire.FederatedKeyHeldSequence] = strconv.FormatUint(trust.HeldSequence(m.td, own, held), 10)
	}
	if req := m.mc.Annotations[meshv1alpha1.RotateCAAnnotation]; req != "" {
		out[wire.FederatedKeyRotateRequest] = req
	}
	return out, behind
}

// Reconcile federates one installation's trust domains.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	mi := &meshv1alpha1.MeshInstallation{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: req.Name}, mi); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.BundleExpiry.DeletePartialMatch(prometheus.Labels{"installation": req.Name})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mi.DeletionTimestamp.IsZero() {
		r.external.Snapshot(mi.Name, nil) // forget its outside trust domains
		metrics.BundleExpiry.DeletePartialMatch(prometheus.Labels{"installation": mi.Name})
		return ctrl.Result{}, nil
	}
	list := &meshv1alpha1.MeshClusterList{}
	if err := r.Client.List(ctx, list, client.MatchingLabels{meshv1alpha1.InstallationLabel: mi.Name}); err != nil {
		return ctrl.Result{}, err
	}
	var (
		members []*member
		bundles []trust.MemberBundle
		errs    []error
	)
	live := map[client.ObjectKey]bool{}
	for i := range list.Items {
		mc := &list.Items[i]
		if !mc.DeletionTimestamp.IsZero() {
			continue // leaving: dropped from every other member's set
		}
		td, err := spiffeid.TrustDomainFromString(mc.Spec.TrustDomain)
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: trust domain %q: %w", client.ObjectKeyFromObject(mc), mc.Spec.TrustDomain, err))
			continue
		}
		m := &member{mc: mc, td: td}
		live[client.ObjectKeyFromObject(mc)] = true
		if err := r.read(ctx, mi.Name, m); err != nil {
			errs = append(errs, err)
		}
		members = append(members, m)
		bundles = append(bundles, trust.MemberBundle{Member: client.ObjectKeyFromObject(mc).String(), TrustDomain: td, Bundle: m.bundle})
	}
	r.forgetExcept(live)
	memberTDs := map[string]bool{}
	for _, m := range members {
		memberTDs[m.td.Name()] = true
	}
	external, externalErr := r.refreshExternal(ctx, mi, memberTDs)
	federated := maps.Clone(memberTDs)
	for _, b := range external {
		federated[b.TrustDomain().Name()] = true
	}
	metrics.Retain(metrics.BundleExpiry, mi.Name, "trust_domain", federated)

	requeue := resync
	errs = append(errs, externalErr)
	// Members converge in parallel: a new bundle reaches the last member after the slowest
	// write, not after the sum of them.
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, m := range members {
		extra, behind := rotationInputs(m, members)
		wg.Go(func() {
			federated, err := r.converge(ctx, mi, m, bundles, external, extra, behind)
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			if !federated {
				// Waiting for an agent: its status event wakes us, this is the safety net.
				requeue = min(requeue, notFederatedRecheck)
			}
		})
	}
	wg.Wait()
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// read fills in what a reachable member publishes, or the last known bundle of one that is not.
func (r *Reconciler) read(ctx context.Context, installation string, m *member) error {
	key := client.ObjectKeyFromObject(m.mc)
	defer func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if m.bundle != nil {
			r.lastKnown[key] = m.bundle
		} else if m.readErr == nil {
			m.bundle = r.lastKnown[key]
		}
	}()
	if !meta.IsStatusConditionTrue(m.mc.Status.Conditions, meshv1alpha1.ConnectedCondition) {
		return nil
	}
	c, err := controllers.MemberClient(ctx, r.ClusterCache, m.mc)
	if err != nil {
		return nil // not connected after all, or not this member; the MeshCluster watch brings us back
	}
	if err := r.watchMember(ctx, installation, m.mc); err != nil {
		return err
	}
	m.c = c
	get := func(name string) (map[string]string, error) {
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: name}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("member %s: read %s/%s: %w", key, install.Namespace, name, err)
		}
		return cm.Data, nil
	}
	published, err := get(wire.BundleConfigMap)
	if err != nil {
		return err
	}
	if published != nil {
		m.bundle, m.readErr = parsePublished(m.td, published)
	}
	m.unpublished = published == nil
	if m.currData, err = get(wire.FederatedConfigMap); err != nil {
		return err
	}
	if doc := m.currData[wire.FederatedKeyBundleMap]; doc != "" {
		// What the operator wrote before; a map that no longer parses is simply replaced.
		m.current, _ = trust.ParseBundleMap([]byte(doc))
	}
	m.agent, err = get(wire.StatusConfigMap)
	return err
}

// parsePublished reads the bundle an agent published, which must be for the member's own
// trust domain: an agent cannot speak for another member.
func parsePublished(td spiffeid.TrustDomain, data map[string]string) (*spiffebundle.Bundle, error) {
	if got := data[wire.BundleKeyTrustDomain]; got != td.Name() {
		return nil, fmt.Errorf("the agent published a bundle for trust domain %q, the member's is %q", got, td.Name())
	}
	return trust.ParseBundle(td, []byte(data[wire.BundleKeyDocument]))
}

func (r *Reconciler) forgetExcept(live map[client.ObjectKey]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.lastKnown {
		if !live[k] {
			delete(r.lastKnown, k)
		}
	}
}

// converge writes a reachable member's federated set and reports every member's status; it
// returns whether the member is federated.
func (r *Reconciler) converge(ctx context.Context, mi *meshv1alpha1.MeshInstallation, m *member, all []trust.MemberBundle, external []*spiffebundle.Bundle, extra map[string]string, behind []Behind) (bool, error) {
	var (
		writeErr error
		digest   string
		set      *trust.BundleSet
		missing  []string
	)
	if m.c != nil {
		set, missing = trust.FederatedFor(m.td, all, external, m.current)
		digest, writeErr = r.write(ctx, mi.Name, m, set, extra)
	}
	if m.bundle != nil {
		if exp, ok := trust.EarliestExpiry(m.bundle); ok {
			metrics.BundleExpiry.WithLabelValues(mi.Name, m.td.Name()).Set(float64(exp.Unix()))
		}
	}
	cond, bs := Verdict(VerdictInput{Reachable: m.c != nil, Own: m.bundle, Unpublished: m.unpublished, ReadErr: m.readErr, Set: set, Digest: digest,
		Missing: missing, AgentStatus: m.agent, WriteErr: writeErr})
	rotation := RotationVerdict(RotationInput{Reachable: m.c != nil, AgentStatus: m.agent, Behind: behind, Now: r.Clock.Now()})
	return cond.Status == metav1.ConditionTrue, errors.Join(writeErr, r.report(ctx, m, bs, cond, rotation))
}

// write applies the member's federated set: gRPC's bundle-map file and one SPIFFE bundle
// document per trust domain, plus extra keys. It returns the map's digest, which the agent
// echoes once loaded.
func (r *Reconciler) write(ctx context.Context, installation string, m *member, set *trust.BundleSet, extra map[string]string) (string, error) {
	bundleMap, err := set.MarshalBundleMap()
	if err != nil {
		return "", err
	}
	docs, err := set.MarshalDocuments()
	if err != nil {
		return "", err
	}
	data := map[string]string{wire.FederatedKeyBundleMap: string(bundleMap)}
	maps.Copy(data, extra)
	for td, d := range docs {
		data[td+".json"] = string(d)
	}
	digest := wire.Digest(bundleMap)
	if maps.Equal(data, m.currData) {
		return digest, nil
	}
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Name: wire.FederatedConfigMap, Namespace: install.Namespace,
			// Not the managed-by label of rendered objects: the install's prune must not take it.
			Labels: map[string]string{"app.kubernetes.io/part-of": "fleetmesh", meshv1alpha1.InstallationLabel: installation},
		},
		Data: data,
	}
	if err := ssa.Apply(ctx, m.c, cm); err != nil {
		return "", fmt.Errorf("member %s: %w", client.ObjectKeyFromObject(m.mc), err)
	}
	return digest, nil
}

// bundleStatus shows a bundle: its roots' fingerprint, sequence and first expiry.
func bundleStatus(b *spiffebundle.Bundle) *meshv1alpha1.BundleStatus {
	bs := &meshv1alpha1.BundleStatus{Fingerprint: trust.Fingerprint(b)}
	if seq, ok := b.SequenceNumber(); ok {
		bs.Sequence = seq
	}
	if exp, ok := trust.EarliestExpiry(b); ok {
		t := metav1.NewTime(exp)
		bs.Expiry = &t
	}
	return bs
}

// VerdictInput is what a member's TrustFederated verdict is decided from.
type VerdictInput struct {
	// Reachable: the member's API server answers.
	Reachable bool
	// Own is the member's published bundle (nil: none yet), or the last one known when
	// Unpublished (the agent's bundle ConfigMap is gone); ReadErr why it was refused.
	Own         *spiffebundle.Bundle
	Unpublished bool
	ReadErr     error
	// Set is the federated bundle set written for it, Digest its digest, and Missing the trust
	// domains of members with no bundle known yet.
	Set     *trust.BundleSet
	Digest  string
	Missing []string
	// AgentStatus is the agent's status ConfigMap data (what it loaded).
	AgentStatus map[string]string
	// WriteErr is the error of writing the set, if any.
	WriteErr error
}

// Verdict is a member's TrustFederated condition (without ObservedGeneration) and bundle status.
func Verdict(in VerdictInput) (metav1.Condition, *meshv1alpha1.BundleStatus) {
	reachable, own, readErr, set, missing, digest, agentStatus, writeErr := in.Reachable, in.Own, in.ReadErr, in.Set, in.Missing, in.Digest, in.AgentStatus, in.WriteErr
	var bs *meshv1alpha1.BundleStatus
	if own != nil {
		bs = bundleStatus(own)
	}
	cond := func(s metav1.ConditionStatus, reason, format string, args ...any) (metav1.Condition, *meshv1alpha1.BundleStatus) {
		return metav1.Condition{Type: meshv1alpha1.TrustFederatedCondition, Status: s, Reason: reason, Message: fmt.Sprintf(format, args...)}, bs
	}
	switch {
	case !reachable:
		return cond(metav1.ConditionUnknown, meshv1alpha1.ReasonUnreachable,
			"the member is unreachable: its last known bundle stays federated in the other members")
	case readErr != nil:
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonBundleInvalid,
			"the agent's published bundle (ConfigMap %s/%s) is refused: %v", install.Namespace, wire.BundleConfigMap, readErr)
	case own == nil:
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonBundleNotPublished,
			"the agent has not published the member's bundle yet (ConfigMap %s/%s); check that the agent runs", install.Namespace, wire.BundleConfigMap)
	case in.Unpublished:
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonBundleNotPublished,
			"the agent's published bundle (ConfigMap %s/%s) is gone: its last known bundle stays federated in the other members until the agent publishes again; check that the agent runs", install.Namespace, wire.BundleConfigMap)
	case writeErr != nil:
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonApplyFailed, "writing the federated bundles failed, retrying: %v", writeErr)
	case len(missing) > 0:
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonBundlesMissing,
			"no bundle is known yet for %s: calls from there are refused until it publishes one", strings.Join(missing, ", "))
	case agentStatus[wire.StatusKeyFederatedError] != "":
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonBundlesRefused,
			"the agent refused the federated bundles: %s", agentStatus[wire.StatusKeyFederatedError])
	case agentStatus[wire.StatusKeyFederated] != digest:
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonPropagating,
			"the agent has not loaded the current federated bundles (%d trust domains) yet", set.Len())
	}
	names := make([]string, 0, set.Len())
	for _, td := range set.TrustDomains() {
		names = append(names, td.Name())
	}
	return cond(metav1.ConditionTrue, meshv1alpha1.ReasonFederated, "the agent holds the current bundles of %d other trust domains: %s", len(names), strings.Join(names, ", "))
}

// report writes a member's bundle status and TrustFederated, with an Event on a transition.
// Other controllers write the MeshCluster's status too; this one owns only these fields (see
// status.Apply).
func (r *Reconciler) report(ctx context.Context, m *member, bs *meshv1alpha1.BundleStatus, conds ...metav1.Condition) error {
	mc := m.mc.DeepCopy()
	if bs != nil {
		mc.Status.Bundle = bs
	}
	cacheHolds := equalBundle(m.mc.Status.Bundle, mc.Status.Bundle)
	types := make([]string, 0, len(conds))
	for i := range conds {
		conds[i].ObservedGeneration = mc.Generation
		old := meta.FindStatusCondition(m.mc.Status.Conditions, conds[i].Type)
		cacheHolds = cacheHolds && old != nil && status.Equal(*old, conds[i])
		types = append(types, conds[i].Type)
	}
	status.Set(&mc.Status.Conditions, r.Recorder, mc, conds...)
	// Not woken by its own status writes: the cache alone must not decide to skip (status.Writer).
	return r.written.Write(ctx, r.Client, mc, cacheHolds, &meshv1alpha1.MeshClusterStatus{
		Conditions: status.Owned(mc.Status.Conditions, types...),
		Bundle:     mc.Status.Bundle,
	})
}

// fieldOwner is this controller's field manager for the status fields it owns.
const fieldOwner = "fleetmesh-trustfederation"

func equalBundle(a, b *meshv1alpha1.BundleStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Fingerprint == b.Fingerprint && a.Sequence == b.Sequence && a.Expiry.Equal(b.Expiry)
}

// watchMember wakes the installation when an agent publishes its bundle or reports what it
// loaded, and when someone edits the federated set in the member.
func (r *Reconciler) watchMember(ctx context.Context, installation string, mc *meshv1alpha1.MeshCluster) error {
	return controllers.WatchMemberConfigMaps(ctx, r.ClusterCache, r.controller, "trustfederation-configmaps", mc,
		reconcile.Request{NamespacedName: client.ObjectKey{Name: installation}},
		wire.BundleConfigMap, wire.StatusConfigMap, wire.FederatedConfigMap)
}
