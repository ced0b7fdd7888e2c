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

// Package caissuer carries each member's intermediate CA request (spec.trust.ca.certManager)
// to the management cluster as a cert-manager CertificateRequest, and the signed certificate
// back to the member. Only the CSR and the certificate travel: the key stays in the member.
package caissuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
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
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/metrics"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
	"github.com/fleetmesh/fleetmesh/internal/status"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// pendingRecheck: CertificateRequests are not watched (cert-manager's CRDs need not exist
// unless certManager mode is used), so a pending one is looked at again this often.
const pendingRecheck = 2 * time.Second

// retryAfterPerson: a denied, failed or refused request is looked at again this often, so a
// deleted one is replaced.
const retryAfterPerson = time.Minute

// Reconciler handles one MeshCluster per request.
type Reconciler struct {
	Client client.Client
	// APIReader reads CertificateRequests uncached.
	APIReader    client.Reader
	ClusterCache clustercache.ClusterCache
	Recorder     events.EventRecorder
	// Clock is the time source (the real clock when nil).
	Clock clock.PassiveClock

	controller controller.Controller
	// written writes the MeshCluster status fields this controller owns.
	written *status.Writer
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if r.Client == nil || r.APIReader == nil || r.ClusterCache == nil || r.Recorder == nil {
		return errors.New("caissuer: Client, APIReader, ClusterCache and Recorder are required")
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.written = &status.Writer{Owner: "fleetmesh-caissuer"}
	c, err := ctrl.NewControllerManagedBy(mgr).
		Named("caissuer").
		WithOptions(opts).
		WithLogConstructor(controllers.MemberLogConstructor(mgr, "caissuer")).
		For(&meshv1alpha1.MeshCluster{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				connected := func(o client.Object) bool {
					return meta.IsStatusConditionTrue(o.(*meshv1alpha1.MeshCluster).Status.Conditions, meshv1alpha1.ConnectedCondition)
				}
				return connected(e.ObjectOld) != connected(e.ObjectNew) || e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration()
			},
		})).
		Watches(&meshv1alpha1.MeshInstallation{}, handler.EnqueueRequestsFromMapFunc(r.membersOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
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
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// Reconcile moves one member's intermediate CA request on by one step.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	mc := &meshv1alpha1.MeshCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	mi := &meshv1alpha1.MeshInstallation{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: mc.Spec.Installation}, mi); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if mi.Spec.Trust.CA == nil || mi.Spec.Trust.CA.CertManager == nil ||
		!meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.ConnectedCondition) {
		return ctrl.Result{}, nil
	}
	c, err := controllers.MemberClient(ctx, r.ClusterCache, mc)
	if err != nil {
		return ctrl.Result{}, nil // not connected after all, or not this member; the MeshCluster watch brings us back
	}
	if err := r.watchMember(ctx, mc); err != nil {
		return ctrl.Result{}, err
	}
	cond, requeue, err := r.step(ctx, c, mi, mc)
	cond.Type, cond.ObservedGeneration = meshv1alpha1.CAIssuedCondition, mc.Generation
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(err, r.report(ctx, mc, cond))
}

// caState is what one step of a member's intermediate issuance is decided from.
type caState struct {
	// Request is the data of the agent's CSR ConfigMap (nil: not published).
	Request map[string]string
	// Issued is the data of the signed-intermediate ConfigMap in the member (nil: none yet).
	Issued map[string]string
	// CR is the member's CertificateRequest in the management cluster (nil: none).
	CR *cmapi.CertificateRequest
}

// caAction is what a step does after deciding.
type caAction int

const (
	caReport  caAction = iota // report the condition only
	caRequest                 // create the CertificateRequest (Decision.Request)
	caDeliver                 // write the signed intermediate into the member (Decision.Deliver)
)

// Decision is the outcome of one step: the CAIssued condition, what to do, and when to look
// again (0: on the next event).
type Decision struct {
	Condition metav1.Condition
	Action    caAction
	Request   *cmapi.CertificateRequest
	Deliver   *corev1.ConfigMap
	Requeue   time.Duration
}

// Decide is the pure step: the member's CSR must be for its own trust domain (anything else would
// be signed by a root every member trusts); an intermediate already delivered for this CSR is
// CAIssued; else the CertificateRequest is created, waited for, or its signed certificate checked
// against the CSR and delivered.
func Decide(mi *meshv1alpha1.MeshInstallation, mc *meshv1alpha1.MeshCluster, st caState, now time.Time) Decision {
	report := func(s metav1.ConditionStatus, reason string, requeue time.Duration, format string, args ...any) Decision {
		return Decision{Condition: cond(s, reason, format, args...), Requeue: requeue}
	}
	if st.Request == nil {
		return report(metav1.ConditionFalse, meshv1alpha1.ReasonCSRPending, 0,
			"the agent has not published its CSR (ConfigMap %s/%s) yet; check that the agent runs", install.Namespace, wire.CARequestConfigMap)
	}
	csr := []byte(st.Request[wire.CARequestKeyCSR])
	digest := wire.CSRDigest(csr)
	td, err := spiffeid.TrustDomainFromString(mc.Spec.TrustDomain)
	if err != nil {
		return report(metav1.ConditionFalse, meshv1alpha1.ReasonCSRInvalid, 0, "the member's trust domain %q: %v", mc.Spec.TrustDomain, err)
	}
	request, err := trust.CheckIntermediateCSR(td, csr)
	if err == nil && st.Request[wire.BundleKeyTrustDomain] != td.Name() {
		err = fmt.Errorf("it is for trust domain %q", st.Request[wire.BundleKeyTrustDomain])
	}
	if err != nil {
		return report(metav1.ConditionFalse, meshv1alpha1.ReasonCSRInvalid, 0,
			"the member's CSR (ConfigMap %s/%s) is refused, nothing is sent to the issuer: %v", install.Namespace, wire.CARequestConfigMap, err)
	}
	if st.Issued != nil && st.Issued[wire.CAKeyRequest] == digest {
		return report(metav1.ConditionTrue, meshv1alpha1.ReasonCAIssued, 0,
			"the member's intermediate CA is signed by %s %q", issuerKind(mi), mi.Spec.Trust.CA.CertManager.IssuerRef.Name)
	}
	want := CertificateRequest(mi, mc, csr, digest)
	if st.CR == nil {
		d := report(metav1.ConditionFalse, meshv1alpha1.ReasonCAPending, pendingRecheck,
			"CertificateRequest %s created, waiting for %s %q to sign it", client.ObjectKeyFromObject(want), issuerKind(mi), want.Spec.IssuerRef.Name)
		d.Action, d.Request = caRequest, want
		return d
	}
	cr := st.CR
	switch v := Verdict(cr); v.Reason {
	case meshv1alpha1.ReasonCAIssued:
		if err := trust.CheckIntermediate(td, request, cr.Status.Certificate, cr.Status.CA, now); err != nil {
			return report(metav1.ConditionFalse, meshv1alpha1.ReasonCARefused, retryAfterPerson,
				"CertificateRequest %s was signed, but the certificate is not given to the member: %v; the issuer must sign the CSR as asked (name constraints included), then delete the request to retry", client.ObjectKeyFromObject(cr), err)
		}
		return Decision{Condition: v, Action: caDeliver, Deliver: &corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{
				Name: wire.CAIssuedConfigMap, Namespace: install.Namespace,
				// Not the managed-by label of rendered objects: the install's prune must not take it.
				Labels: map[string]string{"app.kubernetes.io/part-of": "fleetmesh", meshv1alpha1.InstallationLabel: mi.Name},
			},
			Data: map[string]string{wire.CAIssuedKeyChain: string(cr.Status.Certificate), wire.CAIssuedKeyRoots: string(cr.Status.CA), wire.CAKeyRequest: digest},
		}}
	case meshv1alpha1.ReasonCAPending:
		return Decision{Condition: v, Requeue: pendingRecheck}
	default:
		// Denied or failed: a person acts and deletes the request; requests are not watched.
		return Decision{Condition: v, Requeue: retryAfterPerson}
	}
}

// step gathers the member's request and issued ConfigMaps and the CertificateRequest, decides
// (Decide), and acts.
func (r *Reconciler) step(ctx context.Context, c client.Client, mi *meshv1alpha1.MeshInstallation, mc *meshv1alpha1.MeshCluster) (metav1.Condition, time.Duration, error) {
	var st caState
	for _, read := range []struct {
		name string
		into *map[string]string
	}{{wire.CARequestConfigMap, &st.Request}, {wire.CAIssuedConfigMap, &st.Issued}} {
		cm := &corev1.ConfigMap{}
		err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: read.name}, cm)
		switch {
		case err == nil:
			*read.into = cm.Data
			if cm.Data == nil {
				*read.into = map[string]string{}
			}
		case !apierrors.IsNotFound(err):
			return cond(metav1.ConditionUnknown, meshv1alpha1.ReasonCARequestFail, "reading ConfigMap %s/%s of the member failed, retrying: %v", install.Namespace, read.name, err), 0, err
		}
	}
	if st.Request != nil {
		want := CertificateRequest(mi, mc, []byte(st.Request[wire.CARequestKeyCSR]), wire.CSRDigest([]byte(st.Request[wire.CARequestKeyCSR])))
		cr := &cmapi.CertificateRequest{}
		switch err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), cr); {
		case err == nil:
			st.CR = cr
		case !apierrors.IsNotFound(err):
			return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCARequestFail, "reading CertificateRequest %s failed (is cert-manager installed?): %v", client.ObjectKeyFromObject(want), err), 0, err
		}
	}
	d := Decide(mi, mc, st, r.Clock.Now())
	switch d.Action {
	case caRequest:
		want := d.Request
		if want.Namespace == mc.Namespace {
			if err := controllerutil.SetControllerReference(mc, want, r.Client.Scheme()); err != nil {
				return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCARequestFail, "%v", err), 0, err
			}
		}
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCARequestFail, "creating CertificateRequest %s failed (is cert-manager installed?): %v", client.ObjectKeyFromObject(want), err), 0, err
		}
	case caDeliver:
		if err := ssa.Apply(ctx, c, d.Deliver); err != nil {
			return cond(metav1.ConditionFalse, meshv1alpha1.ReasonApplyFailed, "writing the signed intermediate into the member failed, retrying: %v", err), 0, err
		}
		metrics.IntermediateIssuance.WithLabelValues(mi.Name).Observe(r.Clock.Since(st.CR.CreationTimestamp.Time).Seconds())
	}
	return d.Condition, d.Requeue, nil
}

// CertificateRequest is the request for a member's intermediate: a CA certificate for the
// member's CSR, signed by the installation's issuer, named after the member and the CSR.
func CertificateRequest(mi *meshv1alpha1.MeshInstallation, mc *meshv1alpha1.MeshCluster, csr []byte, digest string) *cmapi.CertificateRequest {
	ref := mi.Spec.Trust.CA.CertManager.IssuerRef
	ns := mc.Namespace
	if issuerKind(mi) == "Issuer" && ref.Namespace != "" {
		ns = ref.Namespace // a namespaced Issuer signs only requests in its namespace
	}
	return &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-ca-%s", mc.Name, digest[:10]), Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/part-of": "fleetmesh", meshv1alpha1.InstallationLabel: mi.Name},
		},
		Spec: cmapi.CertificateRequestSpec{
			Request: csr,
			IsCA:    true,
			// Exactly the key usages the CSR asks for: cert-manager refuses a request whose
			// usages differ from its CSR's Key Usage extension.
			Usages:    []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageCRLSign},
			Duration:  &metav1.Duration{Duration: mi.Spec.Trust.CATTLOrDefault()},
			IssuerRef: cmmeta.IssuerReference{Name: ref.Name, Kind: issuerKind(mi), Group: ref.Group},
		},
	}
}

func issuerKind(mi *meshv1alpha1.MeshInstallation) string {
	if k := mi.Spec.Trust.CA.CertManager.IssuerRef.Kind; k != "" {
		return k
	}
	return "ClusterIssuer"
}

// Verdict is the CAIssued condition a CertificateRequest's state gives (Type and
// ObservedGeneration unset): Issued once signed, Denied and Failed for what a person must fix.
func Verdict(cr *cmapi.CertificateRequest) metav1.Condition {
	has := func(t cmapi.CertificateRequestConditionType) *cmapi.CertificateRequestCondition {
		for i := range cr.Status.Conditions {
			if c := &cr.Status.Conditions[i]; c.Type == t && c.Status == cmmeta.ConditionTrue {
				return c
			}
		}
		return nil
	}
	key := client.ObjectKeyFromObject(cr)
	if c := has(cmapi.CertificateRequestConditionDenied); c != nil {
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCADenied, "CertificateRequest %s was denied (%s: %s); approve requests for this issuer, then delete the request to retry", key, c.Reason, c.Message)
	}
	if c := has(cmapi.CertificateRequestConditionInvalidRequest); c != nil {
		return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCAFailed, "CertificateRequest %s is invalid (%s: %s)", key, c.Reason, c.Message)
	}
	if has(cmapi.CertificateRequestConditionReady) != nil && len(cr.Status.Certificate) > 0 {
		return cond(metav1.ConditionTrue, meshv1alpha1.ReasonCAIssued, "the member's intermediate CA is signed (CertificateRequest %s)", key)
	}
	for _, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionReady && c.Reason == cmapi.CertificateRequestReasonFailed {
			return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCAFailed, "CertificateRequest %s failed: %s; fix the issuer, then delete the request to retry", key, c.Message)
		}
	}
	return cond(metav1.ConditionFalse, meshv1alpha1.ReasonCAPending, "CertificateRequest %s is waiting for approval and signing", key)
}

func cond(s metav1.ConditionStatus, reason, format string, args ...any) metav1.Condition {
	return metav1.Condition{Status: s, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// report sets CAIssued on the MeshCluster; this controller owns only that condition of its
// status (see status.Apply).
func (r *Reconciler) report(ctx context.Context, mc *meshv1alpha1.MeshCluster, c metav1.Condition) error {
	old := meta.FindStatusCondition(mc.Status.Conditions, c.Type)
	cacheHolds := old != nil && status.Equal(*old, c)
	mc = mc.DeepCopy()
	status.Set(&mc.Status.Conditions, r.Recorder, mc, c)
	// Not woken by its own status writes: the cache alone must not decide to skip (status.Writer).
	return r.written.Write(ctx, r.Client, mc, cacheHolds, &meshv1alpha1.MeshClusterStatus{
		Conditions: status.Owned(mc.Status.Conditions, meshv1alpha1.CAIssuedCondition),
	})
}

// watchMember wakes the member's MeshCluster when its agent publishes a CSR, and when someone
// edits the issued ConfigMap.
func (r *Reconciler) watchMember(ctx context.Context, mc *meshv1alpha1.MeshCluster) error {
	return controllers.WatchMemberConfigMaps(ctx, r.ClusterCache, r.controller, "caissuer-configmaps", mc,
		reconcile.Request{NamespacedName: client.ObjectKeyFromObject(mc)}, wire.CARequestConfigMap, wire.CAIssuedConfigMap)
}
