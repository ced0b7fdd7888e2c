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

// Package meshcluster reconciles a MeshCluster: it installs the fleetmesh control plane into the
// member through Cluster API's cluster cache, keeps it as rendered, and uninstalls it when the
// member leaves.
package meshcluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	"sigs.k8s.io/cluster-api/util/finalizers"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/internal/finalizer"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/membership"
	"github.com/fleetmesh/fleetmesh/internal/readiness"
	"github.com/fleetmesh/fleetmesh/internal/status"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// DefaultUninstallTimeout bounds how long a leaving member that cannot be reached holds up the
// deletion of its MeshCluster. After it, the MeshCluster goes and the member keeps what was
// installed (reported by a Warning Event): a member that is gone for good must not block forever.
const DefaultUninstallTimeout = 5 * time.Minute

// WatchedKinds are the member objects whose changes wake the reconciler: everything it installs
// (drift is restored at once) and the agent's status ConfigMap. The cluster cache holds only
// objects labelled part-of=fleetmesh (see CacheByObject).
func WatchedKinds() []client.Object {
	return []client.Object{
		&appsv1.Deployment{}, &corev1.ConfigMap{}, &corev1.Service{}, &corev1.ServiceAccount{},
		&rbacv1.Role{}, &rbacv1.RoleBinding{}, &rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{},
		&corev1.Namespace{}, &admissionregistrationv1.MutatingWebhookConfiguration{},
	}
}

// Reconciler reconciles MeshClusters.
type Reconciler struct {
	Client       client.Client
	ClusterCache clustercache.ClusterCache
	Recorder     events.EventRecorder
	// SecretReader reads a member's kubeconfig Secret, uncached, to say what is wrong with it
	// when the member cannot be connected, and to compare it with what the connection was built
	// from.
	SecretReader client.Reader
	// Connections tells what the cluster cache's connections were built from and rebuilds one
	// whose kubeconfig Secret changed (see controllers.MemberConnections).
	Connections *controllers.MemberConnections
	// UninstallTimeout: see DefaultUninstallTimeout.
	UninstallTimeout time.Duration
	// Clock is the time source (the real clock when nil).
	Clock clock.PassiveClock

	controller controller.Controller
}

// SetupWithManager registers the controller and its sources.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if r.Client == nil || r.ClusterCache == nil || r.Recorder == nil || r.SecretReader == nil || r.Connections == nil {
		return errors.New("meshcluster: Client, ClusterCache, Recorder, SecretReader and Connections are required")
	}
	if r.UninstallTimeout == 0 {
		r.UninstallTimeout = DefaultUninstallTimeout
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&meshv1alpha1.MeshCluster{}, builder.WithPredicates(controllers.IgnoreServiceCounts())).
		WithOptions(opts).
		WithLogConstructor(controllers.MemberLogConstructor(mgr, "meshcluster")).
		// Spec changes of the installation roll out to every member.
		Watches(&meshv1alpha1.MeshInstallation{}, handler.EnqueueRequestsFromMapFunc(r.membersOf)).
		// Woken on connect, disconnect and a failing health probe of a member.
		WatchesRawSource(r.ClusterCache.GetClusterSource("meshcluster", r.clusterToMeshCluster,
			clustercache.WatchForProbeFailure(15*time.Second))).
		Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	return nil
}

func (r *Reconciler) membersOf(ctx context.Context, o client.Object) []reconcile.Request {
	list := &meshv1alpha1.MeshClusterList{}
	if err := r.Client.List(ctx, list, client.MatchingLabels{meshv1alpha1.InstallationLabel: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list MeshClusters of an installation")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, mc := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&mc)})
	}
	return reqs
}

// A MeshCluster is named and placed like its Cluster.
func (r *Reconciler) clusterToMeshCluster(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
}

// Reconcile converges one member.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	mc := &meshv1alpha1.MeshCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	clusterKey := client.ObjectKey{Namespace: mc.Namespace, Name: mc.Spec.ClusterRef.Name}

	if !mc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, mc, clusterKey)
	}
	if !controllers.Managed(mc, "") {
		return ctrl.Result{}, r.reportNotManaged(ctx, mc)
	}
	if _, err := finalizers.EnsureFinalizer(ctx, r.Client, mc, meshv1alpha1.MeshClusterFinalizer); err != nil {
		return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
	}

	before := mc.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, r.patchStatus(ctx, before, mc))
	}()

	mi := &meshv1alpha1.MeshInstallation{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: mc.Spec.Installation}, mi); err != nil {
		// The installation's own finalizer deletes this MeshCluster; nothing to install meanwhile.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !controllers.Managed(mc, mi.UID) {
		// Controlled by an earlier installation of the same name: the garbage collector deletes it.
		return ctrl.Result{}, nil
	}
	cluster := &clusterv1.Cluster{}
	clusterErr := r.Client.Get(ctx, clusterKey, cluster)
	if clusterErr == nil {
		if want, err := membership.DesiredMember(mi, cluster); err == nil && !apiequality.Semantic.DeepEqual(want, mc.Spec) {
			// A hand edit, which the installation's reconciler reverts, or a change on its way:
			// nothing is rendered from a spec the operator did not decide.
			return ctrl.Result{RequeueAfter: specRecheck}, nil
		}
	}

	c, connected, recheck := r.connect(ctx, mc, clusterKey, cluster, clusterErr)
	if !connected {
		return ctrl.Result{RequeueAfter: recheck}, nil
	}
	if err := r.watchMember(ctx, clusterKey, req.NamespacedName); err != nil {
		return ctrl.Result{}, err
	}

	objs, err := install.Render(mi, mc)
	if err != nil {
		r.setCondition(mc, meshv1alpha1.ControlPlaneReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonApplyFailed, err.Error())
		return ctrl.Result{}, err
	}
	if err := r.applyAll(ctx, c, objs); err != nil {
		if errors.Is(err, errCRDNotServed) {
			// A CRD applied a moment ago is not served yet: not a failure, look again shortly.
			r.setCondition(mc, meshv1alpha1.ControlPlaneReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonRollingOut,
				"waiting for the CRDs just installed to be served")
			return ctrl.Result{RequeueAfter: crdServedRecheck}, nil
		}
		r.setCondition(mc, meshv1alpha1.ControlPlaneReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonApplyFailed,
			fmt.Sprintf("applying the control plane failed (retrying): %v", err))
		return ctrl.Result{}, err
	}
	if err := r.prune(ctx, c, mi.Name, objs); err != nil {
		r.setCondition(mc, meshv1alpha1.ControlPlaneReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonApplyFailed,
			fmt.Sprintf("pruning objects no longer rendered failed (retrying): %v", err))
		return ctrl.Result{}, err
	}
	dnsNote, err := pointCoreDNS(ctx, c)
	if err != nil {
		r.setCondition(mc, meshv1alpha1.ControlPlaneReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonApplyFailed,
			fmt.Sprintf("pointing the member's CoreDNS at the agent failed (retrying): %v", err))
		return ctrl.Result{}, err
	}
	ready, reason, msg, agentVersion, err := r.controlPlaneState(ctx, c, mi)
	if err != nil {
		return ctrl.Result{}, err
	}
	if ready && dnsNote != "" {
		msg += "; " + dnsNote
	}
	mc.Status.AgentVersion = agentVersion
	st := metav1.ConditionFalse
	if ready {
		st = metav1.ConditionTrue
	}
	r.setCondition(mc, meshv1alpha1.ControlPlaneReadyCondition, st, reason, msg)
	if err := r.reportGateway(ctx, c, mi, mc, clusterKey); err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(r.Clock.Now())
	mc.Status.LastSyncTime = &now
	return ctrl.Result{RequeueAfter: kubeconfigRecheck}, nil
}

// crdServedRecheck is how soon an install waiting for a CRD it just applied looks again: an API
// server serves a new CRD within a few hundred milliseconds, and every join waits for it.
const crdServedRecheck = 250 * time.Millisecond

// specRecheck is how soon a member whose MeshCluster spec is not (yet) the decided one looks
// again; the installation's reconciler writes it within moments.
const specRecheck = time.Second

// probeInterval is clustercache's fixed health-probe interval.
const probeInterval = 10 * time.Second

// kubeconfigRecheck is how often a connected member's kubeconfig Secret is compared with what the
// connection was built from (Secrets are not watched: the operator caches none), and how often a
// member that reaches another cluster looks whether its Secret was put right.
const kubeconfigRecheck = 30 * time.Second

// reconnectRecheck is how soon a member whose connection is being rebuilt from a changed
// kubeconfig Secret looks again (the rebuild takes about a second; its connect event wakes the
// reconciler too).
const reconnectRecheck = 2 * time.Second

// connect returns the member's client, or reports why there is none in the Connected condition
// and when to look again (0: on the cluster source's next event). cluster is the member's Cluster
// as read (clusterErr the read's error).
func (r *Reconciler) connect(ctx context.Context, mc *meshv1alpha1.MeshCluster, key client.ObjectKey, cluster *clusterv1.Cluster, clusterErr error) (_ memberClient, connected bool, recheck time.Duration) {
	if err := clusterErr; err != nil {
		reason, msg := meshv1alpha1.ReasonClusterNotFound, fmt.Sprintf("Cluster %s not found: %v", key, err)
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, reason, msg)
		return memberClient{}, false, 0
	}
	if cluster.Status.Initialization.InfrastructureProvisioned == nil || !*cluster.Status.Initialization.InfrastructureProvisioned {
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonNotProvisioned,
			fmt.Sprintf("Cluster %s is not provisioned yet (status.initialization.infrastructureProvisioned)", key))
		return memberClient{}, false, 0
	}
	health := r.ClusterCache.GetHealthCheckingState(ctx, key)
	c, err := r.ClusterCache.GetClient(ctx, key)
	if err != nil {
		// Disconnected: the cluster source wakes this reconciler on connect (clustercache's
		// advice: no requeue), unless the disconnect is a reconnect on its way.
		if r.Connections.Nudge(key) {
			recheck = reconnectRecheck
		}
		if d, ok := r.Connections.Refusing(key); ok {
			// Disconnected for a reconnect with a Secret that must not be written through:
			// still what was decided when its change was noticed, not "does not answer".
			r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, d.Reason, d.Message)
			return memberClient{}, false, recheck
		}
		if problem := kubeconfigProblem(ctx, r.SecretReader, key); problem != "" {
			r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonKubeconfigBad, membership.KubeconfigInvalidMessage(problem))
			return memberClient{}, false, recheck
		}
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonUnreachable, unreachableMessage(key, health, err))
		return memberClient{}, false, recheck
	}
	if health.ConsecutiveFailures > 0 {
		// Still connected but failing probes: if the API server comes back before the cache
		// disconnects, no connect event will follow, so look again after the next probe.
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonUnreachable, unreachableMessage(key, health, nil))
		return memberClient{}, false, probeInterval
	}
	if d, changed := r.checkKubeconfig(ctx, mc, key); changed && d.Refuse {
		// The connection still reaches the member, but its Secret now names another cluster, or
		// nothing usable: left alone until the connection is rebuilt from the Secret.
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, d.Reason, d.Message)
		return memberClient{}, false, reconnectRecheck
	}
	uid, err := controllers.CheckIdentity(ctx, c, mc)
	switch {
	case errors.Is(err, controllers.ErrIdentityChanged):
		// Said as when the Secret's change was noticed (checkKubeconfig), before the reconnect.
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonIdentityChanged, membership.IdentityMismatch(mc, uid))
		return memberClient{}, false, kubeconfigRecheck
	case err != nil:
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonUnreachable, unreachableMessage(key, health, err))
		return memberClient{}, false, 0
	}
	mc.Status.KubeSystemUID = uid // recorded at join; unchanged afterwards
	r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionTrue, meshv1alpha1.ReasonConnected,
		fmt.Sprintf("connected to the API server of %s through its kubeconfig Secret", key))
	mcl, err := r.memberClient(ctx, key, c)
	if err != nil {
		r.setCondition(mc, meshv1alpha1.ConnectedCondition, metav1.ConditionFalse, meshv1alpha1.ReasonUnreachable, unreachableMessage(key, health, err))
		return memberClient{}, false, 0
	}
	return mcl, true, 0
}

func unreachableMessage(key client.ObjectKey, h clustercache.HealthCheckingState, err error) string {
	msg := fmt.Sprintf("the API server of %s does not answer", key)
	if h.ConsecutiveFailures > 0 {
		msg += fmt.Sprintf(" (%d consecutive failed health probes)", h.ConsecutiveFailures)
	}
	if !h.LastProbeSuccessTime.IsZero() {
		msg += "; last healthy at " + h.LastProbeSuccessTime.UTC().Format(time.RFC3339)
	}
	if err != nil {
		msg += ": " + err.Error()
	}
	return msg + "; other members are unaffected, and this one converges when it is back"
}

// watchMember registers, once per connection, watches on the member's fleetmesh objects.
func (r *Reconciler) watchMember(ctx context.Context, clusterKey client.ObjectKey, mcKey client.ObjectKey) error {
	enqueue := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: mcKey}}
	})
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()["app.kubernetes.io/part-of"] == "fleetmesh" })
	for _, kind := range WatchedKinds() {
		err := r.ClusterCache.Watch(ctx, clusterKey, clustercache.NewWatcher(clustercache.WatcherOptions{
			Name:         fmt.Sprintf("meshcluster-%T", kind),
			Watcher:      r.controller,
			Kind:         kind,
			EventHandler: enqueue,
			// Services and Namespaces are cached in full for service federation: only
			// fleetmesh's own are installed objects.
			Predicates: []predicate.Predicate{predicate.ResourceVersionChangedPredicate{}, ours},
		}))
		if err != nil {
			return fmt.Errorf("watch %T in member %s: %w", kind, clusterKey, err)
		}
	}
	return nil
}

// applyAll applies every rendered object, wave by wave (install.Waves), each wave in parallel;
// it goes on past a failure so one bad object does not hold back the rest, and reports all
// failures. A half-done install is retried as a whole.
func (r *Reconciler) applyAll(ctx context.Context, c memberClient, objs []client.Object) error {
	var (
		mu        sync.Mutex
		errs      []error
		notServed bool
	)
	for _, wave := range install.Waves(objs) {
		var wg sync.WaitGroup
		for _, o := range wave {
			wg.Go(func() {
				err := c.apply(ctx, o)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, errCRDNotServed):
					notServed = true
				case err != nil:
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
	}
	// A real failure wins over a CRD that is only not served yet.
	if len(errs) == 0 && notServed {
		return errCRDNotServed
	}
	return errors.Join(errs...)
}

// installed lists every object of the given installation in the member, for the given kinds.
func installed(ctx context.Context, c memberClient, installationName string, kinds []metav1.TypeMeta) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, tm := range kinds {
		items, err := c.list(ctx, tm, map[string]string{
			meshv1alpha1.ManagedByLabel: meshv1alpha1.ManagedByValue, meshv1alpha1.InstallationLabel: installationName,
		})
		if err != nil {
			if meta.IsNoMatchError(err) {
				continue // its CRD is not installed: nothing of that kind to find
			}
			return nil, fmt.Errorf("list %s: %w", tm.Kind, err)
		}
		for i := range items {
			u := &items[i]
			u.SetAPIVersion(tm.APIVersion)
			u.SetKind(tm.Kind)
			out = append(out, u)
		}
	}
	return out, nil
}

// prune deletes objects of this installation that are no longer rendered.
func (r *Reconciler) prune(ctx context.Context, c memberClient, installationName string, rendered []client.Object) error {
	have, err := installed(ctx, c, installationName, install.PrunableKinds())
	if err != nil {
		return err
	}
	byKey := map[install.Key]*unstructured.Unstructured{}
	keys := make([]install.Key, 0, len(have))
	for _, u := range have {
		k := install.KeyOf(u)
		byKey[k] = u
		keys = append(keys, k)
	}
	var errs []error
	for _, k := range install.Stale(keys, rendered) {
		if err := c.delete(ctx, byKey[k]); err != nil {
			errs = append(errs, fmt.Errorf("prune %s %s/%s: %w", k.Kind, k.Namespace, k.Name, err))
		}
	}
	return errors.Join(errs...)
}

// controlPlaneState reads the agent Deployment and the version the agent reports.
func (r *Reconciler) controlPlaneState(ctx context.Context, c client.Client, mi *meshv1alpha1.MeshInstallation) (ready bool, reason, msg, agentVersion string, err error) {
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, dep); err != nil {
		if apierrors.IsNotFound(err) {
			return false, meshv1alpha1.ReasonRollingOut, "agent Deployment not observed yet", "", nil
		}
		return false, "", "", "", fmt.Errorf("get agent Deployment: %w", err)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.StatusConfigMap}, cm); client.IgnoreNotFound(err) != nil {
		return false, "", "", "", fmt.Errorf("get agent status: %w", err)
	}
	agentVersion = cm.Data[wire.StatusKeyVersion]
	ready, reason, msg = membership.ControlPlaneReady(dep, agentVersion, mi.Spec.ControlPlane.Version)
	return ready, reason, msg, agentVersion, nil
}

// reportGateway sets GatewayReady from the member's gateway (networking: Gateway), or drops it.
func (r *Reconciler) reportGateway(ctx context.Context, c client.Client, mi *meshv1alpha1.MeshInstallation, mc *meshv1alpha1.MeshCluster, clusterKey client.ObjectKey) error {
	if !install.GatewayEnabled(mi) {
		meta.RemoveStatusCondition(&mc.Status.Conditions, meshv1alpha1.GatewayReadyCondition)
		return nil
	}
	key := client.ObjectKey{Namespace: install.Namespace, Name: install.GatewayName}
	dep := &appsv1.Deployment{}
	switch err := c.Get(ctx, key, dep); {
	case apierrors.IsNotFound(err):
		dep = nil
	case err != nil:
		return fmt.Errorf("get gateway Deployment: %w", err)
	}
	lb := ""
	if svc := (&corev1.Service{}); c.Get(ctx, key, svc) == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
		in := svc.Status.LoadBalancer.Ingress[0]
		lb = in.IP + in.Hostname
	}
	ready, reason, msg := membership.GatewayReady(dep, mc.Spec.GatewayAddress, lb, clusterKey.String())
	st := metav1.ConditionFalse
	if ready {
		st = metav1.ConditionTrue
	}
	r.setCondition(mc, meshv1alpha1.GatewayReadyCondition, st, reason, msg)
	return nil
}

// reconcileDelete uninstalls the control plane from the member, within the bounded policy.
func (r *Reconciler) reconcileDelete(ctx context.Context, mc *meshv1alpha1.MeshCluster, clusterKey client.ObjectKey) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(mc, meshv1alpha1.MeshClusterFinalizer) {
		return ctrl.Result{}, nil
	}
	done := func() (ctrl.Result, error) {
		return ctrl.Result{}, client.IgnoreNotFound(finalizer.Remove(ctx, r.Client, mc, meshv1alpha1.MeshClusterFinalizer))
	}
	if !controllers.Managed(mc, "") {
		// A finalizer copied onto a hand-made MeshCluster: it may name a real member, whose control
		// plane belongs to the MeshCluster the operator made.
		r.Recorder.Eventf(mc, nil, "Normal", meshv1alpha1.ReasonNotManaged, "Delete", "not made by the operator: nothing uninstalled from %s", clusterKey)
		return done()
	}
	cluster := &clusterv1.Cluster{}
	if err := r.Client.Get(ctx, clusterKey, cluster); apierrors.IsNotFound(err) {
		r.Recorder.Eventf(mc, nil, "Normal", "Uninstalled", "Uninstall", "Cluster %s is gone: nothing to uninstall", clusterKey)
		return done()
	}
	c, err := r.ClusterCache.GetClient(ctx, clusterKey)
	if err == nil {
		// A changed Secret being connected with: wait for the connection it makes, and its identity.
		err = r.Connections.Refusal(clusterKey)
	}
	var mcl memberClient
	if err == nil {
		mcl, err = r.memberClient(ctx, clusterKey, c)
	}
	if err == nil {
		if _, idErr := controllers.CheckIdentity(ctx, c, mc); errors.Is(idErr, controllers.ErrIdentityChanged) {
			r.Recorder.Eventf(mc, nil, "Warning", meshv1alpha1.ReasonIdentityChanged, "Uninstall", "nothing uninstalled: %v", idErr)
			return done()
		}
	}
	if err == nil && r.ClusterCache.GetHealthCheckingState(ctx, clusterKey).ConsecutiveFailures == 0 {
		mcl.listLive = true
		remaining, err := r.uninstall(ctx, mcl, mc.Spec.Installation)
		if err != nil {
			return ctrl.Result{}, err
		}
		if remaining > 0 {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		r.Recorder.Eventf(mc, nil, "Normal", "Uninstalled", "Uninstall", "removed the fleetmesh control plane from %s (CRDs are kept)", clusterKey)
		return done()
	}
	deadline := mc.DeletionTimestamp.Add(r.UninstallTimeout)
	if now := r.Clock.Now(); now.After(deadline) {
		r.Recorder.Eventf(mc, nil, "Warning", meshv1alpha1.ReasonUninstallSkipped, "Uninstall",
			"member %s unreachable for the whole uninstall timeout (%s): its fleetmesh objects (namespace %s, ClusterRole %s) are left in place",
			clusterKey, r.UninstallTimeout, install.Namespace, install.ClusterRoleName(mc.Spec.Installation))
		return done()
	}
	before := mc.DeepCopy()
	r.setCondition(mc, meshv1alpha1.ReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonDeleting,
		fmt.Sprintf("waiting for member %s to become reachable to uninstall; gives up at %s and leaves its objects in place",
			clusterKey, deadline.UTC().Format(time.RFC3339)))
	if !apiequality.Semantic.DeepEqual(before.Status, mc.Status) {
		if err := r.writeStatus(ctx, mc); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: min(30*time.Second, time.Until(deadline)+time.Second)}, nil
}

// uninstall deletes everything of the installation in the member except CRDs, and returns how
// many objects still exist (namespaces that are terminating count as gone: the member's
// namespace controller finishes them).
func (r *Reconciler) uninstall(ctx context.Context, c memberClient, installationName string) (int, error) {
	if err := unpointCoreDNS(ctx, c); err != nil {
		return 0, err
	}
	have, err := installed(ctx, c, installationName, install.UninstallKinds())
	if err != nil {
		return 0, err
	}
	remaining := 0
	var errs []error
	for _, u := range have {
		if u.GetDeletionTimestamp() != nil {
			if u.GetKind() != "Namespace" {
				remaining++
			}
			continue
		}
		if err := c.delete(ctx, u); err != nil {
			errs = append(errs, fmt.Errorf("delete %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err))
			continue
		}
		if u.GetKind() != "Namespace" {
			remaining++
		}
	}
	return remaining, errors.Join(errs...)
}

func (r *Reconciler) setCondition(mc *meshv1alpha1.MeshCluster, t string, s metav1.ConditionStatus, reason, msg string) {
	status.Set(&mc.Status.Conditions, r.Recorder, mc, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: mc.Generation})
}

func (r *Reconciler) patchStatus(ctx context.Context, before, mc *meshv1alpha1.MeshCluster) error {
	status.Set(&mc.Status.Conditions, r.Recorder, mc, readiness.MemberReady(mc))
	mc.Status.ObservedGeneration = mc.Generation
	// LastSyncTime alone is not worth a write on every wake-up.
	if before.Status.LastSyncTime != nil && mc.Status.LastSyncTime != nil && mc.Status.LastSyncTime.Sub(before.Status.LastSyncTime.Time) < time.Minute {
		mc.Status.LastSyncTime = before.Status.LastSyncTime
	}
	if apiequality.Semantic.DeepEqual(before.Status, mc.Status) {
		return nil
	}
	return r.writeStatus(ctx, mc)
}

// fieldOwner is this controller's field manager for the MeshCluster status it owns.
const fieldOwner = "fleetmesh-meshcluster"

// writeStatus writes what this controller owns of the status: the summary and the member's
// connection and control plane (other controllers own the rest; see status.Apply).
func (r *Reconciler) writeStatus(ctx context.Context, mc *meshv1alpha1.MeshCluster) error {
	return status.Apply(ctx, r.Client, mc, fieldOwner, &meshv1alpha1.MeshClusterStatus{
		ObservedGeneration: mc.Status.ObservedGeneration,
		Conditions: status.Owned(mc.Status.Conditions,
			meshv1alpha1.ReadyCondition, meshv1alpha1.ConnectedCondition, meshv1alpha1.ControlPlaneReadyCondition, meshv1alpha1.GatewayReadyCondition),
		KubeSystemUID: mc.Status.KubeSystemUID,
		AgentVersion:  mc.Status.AgentVersion,
		LastSyncTime:  mc.Status.LastSyncTime,
	})
}

// reportNotManaged marks a MeshCluster the operator did not make (controllers.Managed).
func (r *Reconciler) reportNotManaged(ctx context.Context, mc *meshv1alpha1.MeshCluster) error {
	before := mc.DeepCopy()
	r.setCondition(mc, meshv1alpha1.ReadyCondition, metav1.ConditionFalse, meshv1alpha1.ReasonNotManaged,
		"not made by the operator (it makes one MeshCluster per selected Cluster, named like the Cluster and controlled by its "+
			"MeshInstallation): ignored, nothing is installed through it and nothing uninstalled when it goes; delete it")
	mc.Status.ObservedGeneration = mc.Generation
	if apiequality.Semantic.DeepEqual(before.Status, mc.Status) {
		return nil
	}
	return r.writeStatus(ctx, mc)
}
