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

package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity"
	"github.com/fleetmesh/fleetmesh/internal/identityclient"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// The trust objects in the agent's namespace. The CA Secret is the agent's alone: the operator
// never reads it (its member clients do not even cache Secrets). The agent publishes its bundle
// in wire.BundleConfigMap; the operator writes every other member's bundle into wire.FederatedConfigMap.
const (
	CASecret      = wire.CASecret
	caTrustDomain = "trustDomain"
)

// BundleRefreshHint is the refresh hint of the bundles the agent publishes: how often a
// bundle-endpoint client outside the mesh polls. Members get new bundles by watch, not by it.
const BundleRefreshHint = 5 * time.Minute

// trustState is the agent's CA, issuer and the bundles it trusts.
type trustState struct {
	td     spiffeid.TrustDomain
	issuer *trust.Issuer

	mu             sync.RWMutex
	own            *spiffebundle.Bundle // the member's bundle: every root its CA store publishes
	rotationStatus map[string]string    // the rotation's keys of the agent's status (statusData)
	rotation       rotationInput        // what the operator last said about rotations
	federated      *trust.BundleSet     // other trust domains, as the operator wrote them
	federatedHash  string
	federatedError string
	bundleMap      []byte // own + federated, gRPC's bundle-map format
	// changed is signalled whenever the federated set changes.
	changed chan struct{}
}

// setFederated records the operator's bundle map: every other member's (and external) bundle.
// A map that does not parse, or that claims the agent's own trust domain, is refused and the
// previous one kept.
func (t *trustState) setFederated(data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set, err := trust.ParseBundleMap(data)
	if err == nil {
		if _, own := set.Get(t.td); own {
			err = fmt.Errorf("the federated bundle map names the member's own trust domain %s", t.td)
		}
	}
	if err != nil {
		t.federatedError = err.Error()
		return
	}
	t.federated, t.federatedHash, t.federatedError = set, wire.Digest(data), ""
	t.rebuildLocked()
}

// TrustDomains are the member's own and every federated trust domain's names.
func (t *trustState) TrustDomains() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := []string{t.td.Name()}
	if t.federated != nil {
		for _, td := range t.federated.TrustDomains() {
			out = append(out, td.Name())
		}
	}
	return out
}

// X509Authorities are the X.509 roots of the member's own and every federated trust domain,
// by trust domain name: the proxy resource set's SPIFFE validator.
func (t *trustState) X509Authorities() map[string][]*x509.Certificate {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := map[string][]*x509.Certificate{}
	if t.own != nil {
		out[t.td.Name()] = t.own.X509Authorities()
	}
	if t.federated != nil {
		for _, b := range t.federated.Bundles() {
			out[b.TrustDomain().Name()] = b.X509Authorities()
		}
	}
	return out
}

func (t *trustState) rebuildLocked() {
	defer func() {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}()
	all := trust.NewBundleSet(t.own)
	if t.federated != nil {
		for _, b := range t.federated.Bundles() {
			all.Put(b)
		}
	}
	m, err := all.MarshalBundleMap()
	if err != nil {
		t.federatedError = err.Error()
		return
	}
	t.bundleMap = m
}

// BundleMap is the member's own bundle plus every federated one, for the identity API.
func (t *trustState) BundleMap() []byte {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.bundleMap
}

// GetBundleForTrustDomain implements spiffebundle.Source for the bundle endpoint: only the
// member's own bundle is served there.
func (t *trustState) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != t.td {
		return nil, fmt.Errorf("this endpoint serves only %s", t.td)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.own, nil
}

// setOwn replaces the member's bundle (a CA rotation changed what it publishes).
func (t *trustState) setOwn(store *caStore) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.own, t.rotationStatus = store.bundle(), store.rotationStatus()
	t.rebuildLocked()
}

// ownBundle is the member's bundle.
func (t *trustState) ownBundle() *spiffebundle.Bundle {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.own
}

// setRotationInput records what the operator wrote about rotations.
func (t *trustState) setRotationInput(data map[string]string) {
	in := rotationInput{request: data[wire.FederatedKeyRotateRequest]}
	in.held, _ = strconv.ParseUint(data[wire.FederatedKeyHeldSequence], 10, 64)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rotation = in
}

func (t *trustState) rotationInput() rotationInput {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rotation
}

func (t *trustState) statusData() map[string]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := map[string]string{wire.StatusKeyFederated: t.federatedHash}
	maps.Copy(out, t.rotationStatus)
	if t.federatedError != "" {
		out[wire.StatusKeyFederatedError] = t.federatedError
	}
	return out
}

// publishBundle writes the member's bundle for the operator to federate.
func publishBundle(ctx context.Context, c kubernetes.Interface, ns string, b *spiffebundle.Bundle) error {
	doc, err := trust.MarshalBundle(b)
	if err != nil {
		return err
	}
	cm := corev1ac.ConfigMap(wire.BundleConfigMap, ns).
		WithLabels(map[string]string{"app.kubernetes.io/name": "fleetmesh-agent", "app.kubernetes.io/part-of": "fleetmesh"}).
		WithData(map[string]string{wire.BundleKeyTrustDomain: b.TrustDomain().Name(), wire.BundleKeyDocument: string(doc)})
	if _, err := c.CoreV1().ConfigMaps(ns).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "fleetmesh-agent", Force: true}); err != nil {
		return fmt.Errorf("apply %s/%s: %w", ns, wire.BundleConfigMap, err)
	}
	return nil
}

// TrustOptions make the agent its member's certificate authority: it keeps the CA in
// CASecret, publishes the member's bundle, serves the identity API and the SPIFFE bundle
// endpoint, and loads the federated bundles the operator writes.
type TrustOptions struct {
	TrustDomain spiffeid.TrustDomain
	// CATTL is the lifetime of a CA the agent generates; SVIDTTL of the SVIDs it signs.
	CATTL, SVIDTTL time.Duration
	// IdentityAddr serves the identity API (gRPC over TLS); BundleAddr the bundle endpoint.
	IdentityAddr, BundleAddr string
	// Intermediate: the member's CA is signed by a cert-manager issuer, through the operator
	// (certManager mode), rather than self-signed.
	Intermediate bool
}

func (o *TrustOptions) validate() error {
	switch {
	case o.TrustDomain.IsZero():
		return errors.New("agent: trust: a trust domain is required")
	case o.SVIDTTL <= 0 || o.CATTL < 2*o.SVIDTTL:
		return fmt.Errorf("agent: trust: need 0 < svidTTL (%s) and caTTL (%s) >= 2*svidTTL", o.SVIDTTL, o.CATTL)
	case o.IdentityAddr == "" || o.BundleAddr == "":
		return errors.New("agent: trust: identity and bundle endpoint addresses are required")
	}
	return nil
}

// runTrust loads (or makes) the CA, then serves identities and bundles until ctx ends. It
// returns an error only for what a restart would not fix (a listener that cannot bind).
func (a *Agent) runTrust(ctx context.Context) error {
	o := a.opts.Trust
	log := a.log.WithValues("trustDomain", o.TrustDomain.Name())
	var store *caStore
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := loadOrCreateCA(ctx, a.client, a.opts.Namespace, o.TrustDomain, o.CATTL, o.SVIDTTL+rotationMargin, o.Intermediate, time.Now())
		if errors.Is(err, errAwaitingIntermediate) {
			log.V(1).Info("the intermediate CSR is published", "configMap", wire.CARequestConfigMap, "waitingFor", wire.CAIssuedConfigMap)
			return false, nil
		}
		if err != nil {
			log.Error(err, "load the member's CA")
			return false, nil
		}
		store = s
		return true, nil
	})
	if err != nil {
		return nil // ctx ended
	}
	issuer, err := trust.NewIssuer(store.signing(), trust.IssuerOptions{SVIDTTL: o.SVIDTTL, RefuseForeignIDs: true})
	if err != nil {
		return err
	}
	ts := &trustState{td: o.TrustDomain, issuer: issuer, changed: make(chan struct{}, 1)}
	ts.setOwn(store)
	holder := &identity.SVIDHolder{}
	renewAt, err := a.renewServingSVID(issuer, holder)
	if err != nil {
		return err
	}

	srv, err := identity.NewServer(identity.Options{
		Signer:     issuer,
		Reviewer:   &identity.CachingReviewer{Next: identity.KubeTokenReviewer{Client: a.client}, TTL: 10 * time.Second},
		BundleMap:  ts.BundleMap,
		Registerer: a.registry,
		Log:        log.WithName("identity"),
	})
	if err != nil {
		return err
	}
	grpcServer := identity.NewGRPCServer(srv, holder)
	idLis, err := net.Listen("tcp", o.IdentityAddr)
	if err != nil {
		return fmt.Errorf("listen for the identity API on %s: %w", o.IdentityAddr, err)
	}
	go func() { _ = grpcServer.Serve(idLis) }()
	defer grpcServer.Stop()

	bundleHandler, err := federation.NewHandler(o.TrustDomain, ts)
	if err != nil {
		return err
	}
	bLis, err := net.Listen("tcp", o.BundleAddr)
	if err != nil {
		return fmt.Errorf("listen for the bundle endpoint on %s: %w", o.BundleAddr, err)
	}
	bundleServer := &http.Server{Handler: bundleHandler, TLSConfig: tlsconfig.TLSServerConfig(holder), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = bundleServer.ServeTLS(bLis, "", "") }()
	defer func() { _ = bundleServer.Close() }()

	a.watchFederated(ctx, ts)
	if a.opts.Injector != nil {
		stopInjector, err := a.startInjector(ctx, issuer, ts, log)
		if err != nil {
			return err
		}
		defer stopInjector()
	}
	if a.opts.XDS != nil {
		xdsDone := make(chan error, 1)
		go func() { xdsDone <- a.runXDS(ctx, holder, ts, ts.changed) }()
		defer func() {
			if err := <-xdsDone; err != nil {
				log.Error(err, "xDS stopped")
			}
		}()
	}
	a.trust.Store(ts)
	a.publishSoon()
	log.Info("serving identities", "identityAPI", idLis.Addr().String(), "bundleEndpoint", bLis.Addr().String(),
		"bundle", trust.Fingerprint(ts.ownBundle()), "caRotation", store.state.Rotation.Phase)

	publish := func() {
		if err := publishBundle(ctx, a.client, a.opts.Namespace, ts.ownBundle()); err != nil {
			log.Error(err, "publish the member's bundle")
		}
	}
	publish()
	ticker := time.NewTicker(a.opts.Resync)
	defer ticker.Stop()
	rotationCheck := time.NewTicker(time.Second)
	defer rotationCheck.Stop()
	renew := time.NewTimer(time.Until(renewAt))
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			publish()
			if next := a.checkCASecret(ctx, log, store, time.Now()); next != nil {
				if err := ts.issuer.SetCA(next.signing()); err != nil {
					log.Error(err, "sign with the CA Secret's CA")
					continue
				}
				store = next
				ts.setOwn(store)
				publish()
				a.publishSoon()
			}
		case <-rotationCheck.C:
			if next := a.rotate(ctx, log, store, ts); next != nil {
				store = next
				publish()
				a.publishSoon()
			}
		case <-renew.C:
			next, err := a.renewServingSVID(issuer, holder)
			if err != nil {
				log.Error(err, "renew the agent's serving SVID")
				next = time.Now().Add(10 * time.Second)
			}
			renew.Reset(time.Until(next))
		}
	}
}

// rotate moves the CA rotation on if it is time, saving the new state before acting on it:
// the Secret is the truth a restarted agent resumes from. It returns the new store, or nil.
func (a *Agent) rotate(ctx context.Context, log logr.Logger, store *caStore, ts *trustState) *caStore {
	o := a.opts.Trust
	in := ts.rotationInput()
	if store.pending != nil {
		issued, err := issuedAnswer(ctx, a.client, a.opts.Namespace)
		if err != nil {
			log.Error(err, "CA rotation: read the signed intermediate")
			return nil
		}
		in.issued = issued
		if issued[wire.CAKeyRequest] != wire.CSRDigest(store.pending.csr) && time.Since(a.csrPublished) > 10*time.Second {
			a.publishPendingCSR(ctx, log, store.pending) // again: someone may have deleted it
		}
	}
	next, err := nextRotation(store, in, o.SVIDTTL, o.CATTL, o.Intermediate, time.Now())
	if err == nil && next != nil {
		err = next.save(ctx, a.client, a.opts.Namespace)
	}
	if err != nil {
		log.Error(err, "CA rotation: retrying")
		if !apierrors.IsConflict(err) {
			return nil
		}
		// Someone else wrote the Secret: continue from what it holds now.
		if next, err = loadOrCreateCA(ctx, a.client, a.opts.Namespace, o.TrustDomain, o.CATTL, o.SVIDTTL+rotationMargin, o.Intermediate, time.Now()); err != nil {
			log.Error(err, "CA rotation: reload the CA Secret")
			return nil
		}
	}
	if next == nil {
		return nil
	}
	if next.pending != nil && next.pending != store.pending {
		a.publishPendingCSR(ctx, log, next.pending) // the operator has it signed (caissuer)
	}
	if err := ts.issuer.SetCA(next.signing()); err != nil {
		log.Error(err, "CA rotation: switch signing")
		return nil
	}
	ts.setOwn(next)
	r := next.state.Rotation
	if r.Forced && !store.state.Rotation.Forced {
		log.Info("CA rotation: switched at its deadline although some member does not hold the new bundle yet; it refuses this member's new SVIDs until it catches up",
			"held", in.held, "sequence", r.Sequence)
	}
	log.Info("CA rotation", "phase", r.Phase, "signing", r.Signing, "published", r.Published(), "sequence", r.Sequence)
	return next
}

// checkCASecret keeps the agent on its CA Secret, the one truth every replica (and a restarted
// agent) shares, once per resync: a deleted Secret is written again from memory
// (restoreCASecret); one written by someone else since the agent read it (another replica that
// made a new CA after the Secret was lost, or took a rotation step) is adopted, so that two
// replicas never sign with two CAs or publish two bundles for longer than a resync. It returns
// the store to sign with from now on, or nil when nothing changes.
func (a *Agent) checkCASecret(ctx context.Context, log logr.Logger, store *caStore, now time.Time) *caStore {
	s, err := a.client.CoreV1().Secrets(a.opts.Namespace).Get(ctx, CASecret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return a.restoreCASecret(ctx, log, store)
	case err != nil:
		log.Error(err, "read the CA Secret")
		return nil
	case s.ResourceVersion == store.resourceVersion:
		return nil
	}
	next, err := parseCAStore(store.td, s, now)
	if err != nil {
		log.Error(err, "the CA Secret was changed by someone else and does not parse: signing with the CA in memory", "secret", a.opts.Namespace+"/"+CASecret)
		return nil
	}
	if !next.signing().Certificate().Equal(store.signing().Certificate()) {
		log.Info("the CA Secret holds another CA (written by another replica): signing with it", "secret", a.opts.Namespace+"/"+CASecret,
			"bundle", trust.Fingerprint(next.bundle()))
	}
	return next
}

// restoreCASecret writes the CA Secret again from memory when someone deleted it: the CA stays
// the same, so nothing that trusts it breaks, and a restarted agent finds it. The restore is
// recorded in the Secret's state (the MeshCluster's CARotation condition shows it). It returns
// the store as written, or nil when the Secret is there (or could not be read or written).
func (a *Agent) restoreCASecret(ctx context.Context, log logr.Logger, store *caStore) *caStore {
	ns := a.opts.Namespace
	_, err := a.client.CoreV1().Secrets(ns).Get(ctx, CASecret, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return nil
	}
	restored := *store
	restored.state.RestoredAt = time.Now()
	data, err := restored.secretData()
	if err != nil {
		log.Error(err, "restore the deleted CA Secret")
		return nil
	}
	created, err := a.client.CoreV1().Secrets(ns).Create(ctx, caSecret(ns, "", data), metav1.CreateOptions{FieldManager: "fleetmesh-agent"})
	if err != nil {
		// Another replica restored it first (AlreadyExists) or the API failed: the next check sees.
		log.Error(err, "restore the deleted CA Secret")
		return nil
	}
	restored.resourceVersion = created.ResourceVersion
	log.Error(nil, "the CA Secret was deleted: restored it from the agent's memory (same CA); find who deleted it in the member's audit log",
		"secret", ns+"/"+CASecret)
	return &restored
}

// publishPendingCSR publishes the next intermediate's CSR; a failure is retried 10 s later.
func (a *Agent) publishPendingCSR(ctx context.Context, log logr.Logger, p *pendingCA) {
	a.csrPublished = time.Now()
	if err := publishCSR(ctx, a.client, a.opts.Namespace, a.opts.Trust.TrustDomain, p); err != nil {
		log.Error(err, "CA rotation: publish the next intermediate's CSR; retrying")
	}
}

// renewServingSVID issues the agent's own SVID and returns when to renew it (half-life).
func (a *Agent) renewServingSVID(issuer *trust.Issuer, holder *identity.SVIDHolder) (time.Time, error) {
	svid, err := issuer.NewSVID(identity.AgentWorkload)
	if err != nil {
		return time.Time{}, fmt.Errorf("issue the agent's serving SVID: %w", err)
	}
	holder.Set(svid)
	return identityclient.RenewAt(svid.Certificates[0]), nil
}

// watchFederated loads wire.FederatedConfigMap whenever the operator writes it.
func (a *Agent) watchFederated(ctx context.Context, ts *trustState) {
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithNamespace(a.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", wire.FederatedConfigMap).String()
		}))
	load := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		ts.setFederated([]byte(cm.Data[wire.FederatedKeyBundleMap]))
		ts.setRotationInput(cm.Data)
		a.publishSoon()
	}
	_, _ = factory.Core().V1().ConfigMaps().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    load,
		UpdateFunc: func(_, obj any) { load(obj) },
		DeleteFunc: func(any) {
			ts.clearFederated()
			a.publishSoon()
		},
	})
	factory.Start(ctx.Done())
}

// clearFederated forgets every other trust domain: the operator removed the federated set.
func (t *trustState) clearFederated() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.federated, t.federatedHash, t.federatedError = nil, "", ""
	t.rebuildLocked()
}
