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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

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
)

// The trust objects in the agent's namespace. The CA Secret is the agent's alone: the operator
// never reads it (its member clients do not even cache Secrets). The agent publishes its bundle
// in BundleConfigMap; the operator writes every other member's bundle into FederatedConfigMap.
const (
	CASecret      = "fleetmesh-ca"
	caKeyChain    = "ca.crt"
	caKeyPrivate  = "ca.key"
	caKeyRoots    = "roots.pem"
	caTrustDomain = "trustDomain"

	BundleConfigMap      = "fleetmesh-bundle"
	BundleKeyTrustDomain = "trustDomain"
	BundleKeyDocument    = "bundle.json"

	FederatedConfigMap    = "fleetmesh-federated-bundles"
	FederatedKeyBundleMap = "bundle-map.json"

	// StatusKeyFederated in StatusConfigMap is Digest of the federated bundle map the agent
	// loaded, so the operator knows the member really has what it wrote (TrustFederated).
	StatusKeyFederated = "federatedBundles"
	// StatusKeyFederatedError explains why the agent refused the federated bundle map.
	StatusKeyFederatedError = "federatedBundlesError"
)

// BundleRefreshHint is the refresh hint of the bundles the agent publishes: how often a
// bundle-endpoint client outside the mesh polls. Members get new bundles by watch, not by it.
const BundleRefreshHint = 5 * time.Minute

// Digest identifies a federated bundle map by content, for StatusKeyFederated.
func Digest(bundleMap []byte) string {
	sum := sha256.Sum256(bundleMap)
	return hex.EncodeToString(sum[:16])
}

// trustState is the agent's CA, issuer and the bundles it trusts.
type trustState struct {
	td     spiffeid.TrustDomain
	issuer *trust.Issuer
	own    *spiffebundle.Bundle

	mu             sync.RWMutex
	federated      *trust.BundleSet // other trust domains, as the operator wrote them
	federatedHash  string
	federatedError string
	bundleMap      []byte // own + federated, gRPC's bundle-map format
	// changed is signalled whenever the federated set changes.
	changed chan struct{}
}

// sequence orders a member's bundle versions: the newest root's start, which only grows as CAs
// rotate and is the same whichever replica computes it.
func sequence(ca *trust.CA) uint64 {
	var s int64
	for _, r := range ca.Roots() {
		s = max(s, r.NotBefore.Unix())
	}
	return uint64(max(s, 0))
}

// loadOrCreateCA returns the member's CA from its Secret, generating it first if there is none.
// Two replicas racing both try to create; the loser loads the winner's.
func loadOrCreateCA(ctx context.Context, c kubernetes.Interface, ns string, td spiffeid.TrustDomain, ttl time.Duration, now time.Time) (*trust.CA, error) {
	for range 2 {
		s, err := c.CoreV1().Secrets(ns).Get(ctx, CASecret, metav1.GetOptions{})
		if err == nil {
			if got := string(s.Data[caTrustDomain]); got != td.Name() {
				return nil, fmt.Errorf("secret %s/%s holds a CA for trust domain %q, the agent is configured for %q: delete the Secret to make a new CA", ns, CASecret, got, td.Name())
			}
			return trust.LoadCA(td, s.Data[caKeyChain], s.Data[caKeyPrivate], s.Data[caKeyRoots], now)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get secret %s/%s: %w", ns, CASecret, err)
		}
		key, err := trust.NewKey()
		if err != nil {
			return nil, err
		}
		ca, err := trust.SelfSign(td, key, now, ttl, nil)
		if err != nil {
			return nil, err
		}
		chain, keyPEM, roots, err := ca.MarshalPEM()
		if err != nil {
			return nil, err
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: CASecret, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "fleetmesh-agent"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{caKeyChain: chain, caKeyPrivate: keyPEM, caKeyRoots: roots, caTrustDomain: []byte(td.Name())},
		}
		_, err = c.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{FieldManager: "fleetmesh-agent"})
		if err == nil {
			return ca, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create secret %s/%s: %w", ns, CASecret, err)
		}
	}
	return nil, fmt.Errorf("secret %s/%s: created and deleted concurrently, retrying", ns, CASecret)
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
	t.federated, t.federatedHash, t.federatedError = set, Digest(data), ""
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
	return t.own, nil
}

func (t *trustState) statusData() map[string]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := map[string]string{StatusKeyFederated: t.federatedHash}
	if t.federatedError != "" {
		out[StatusKeyFederatedError] = t.federatedError
	}
	return out
}

// publishBundle writes the member's bundle for the operator to federate.
func publishBundle(ctx context.Context, c kubernetes.Interface, ns string, b *spiffebundle.Bundle) error {
	doc, err := trust.MarshalBundle(b)
	if err != nil {
		return err
	}
	cm := corev1ac.ConfigMap(BundleConfigMap, ns).
		WithLabels(map[string]string{"app.kubernetes.io/name": "fleetmesh-agent", "app.kubernetes.io/part-of": "fleetmesh"}).
		WithData(map[string]string{BundleKeyTrustDomain: b.TrustDomain().Name(), BundleKeyDocument: string(doc)})
	if _, err := c.CoreV1().ConfigMaps(ns).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "fleetmesh-agent", Force: true}); err != nil {
		return fmt.Errorf("apply %s/%s: %w", ns, BundleConfigMap, err)
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
	var ca *trust.CA
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		c, err := loadOrCreateCA(ctx, a.client, a.opts.Namespace, o.TrustDomain, o.CATTL, time.Now())
		if err != nil {
			log.Error(err, "load the member's CA")
			return false, nil
		}
		ca = c
		return true, nil
	})
	if err != nil {
		return nil // ctx ended
	}
	issuer, err := trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: o.SVIDTTL, RefuseForeignIDs: true})
	if err != nil {
		return err
	}
	ts := &trustState{td: o.TrustDomain, issuer: issuer, own: trust.NewBundle(o.TrustDomain, ca.Roots(), sequence(ca), BundleRefreshHint), changed: make(chan struct{}, 1)}
	ts.rebuildLocked()
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
	if a.opts.XDS != nil {
		xdsDone := make(chan error, 1)
		go func() { xdsDone <- a.runXDS(ctx, holder, ts.TrustDomains, ts.changed) }()
		defer func() {
			if err := <-xdsDone; err != nil {
				log.Error(err, "xDS stopped")
			}
		}()
	}
	a.trust.Store(ts)
	a.publishSoon()
	log.Info("serving identities", "identityAPI", idLis.Addr().String(), "bundleEndpoint", bLis.Addr().String(), "bundle", trust.Fingerprint(ts.own))

	ticker := time.NewTicker(a.opts.Resync)
	defer ticker.Stop()
	renew := time.NewTimer(time.Until(renewAt))
	defer renew.Stop()
	for {
		if err := publishBundle(ctx, a.client, a.opts.Namespace, ts.own); err != nil {
			log.Error(err, "publish the member's bundle")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
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

// renewServingSVID issues the agent's own SVID and returns when to renew it (half-life).
func (a *Agent) renewServingSVID(issuer *trust.Issuer, holder *identity.SVIDHolder) (time.Time, error) {
	svid, err := issuer.NewSVID(identity.AgentWorkload)
	if err != nil {
		return time.Time{}, fmt.Errorf("issue the agent's serving SVID: %w", err)
	}
	holder.Set(svid)
	return identityclient.RenewAt(svid.Certificates[0]), nil
}

// watchFederated loads FederatedConfigMap whenever the operator writes it.
func (a *Agent) watchFederated(ctx context.Context, ts *trustState) {
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithNamespace(a.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", FederatedConfigMap).String()
		}))
	load := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		ts.setFederated([]byte(cm.Data[FederatedKeyBundleMap]))
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
