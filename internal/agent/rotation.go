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
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// The CA Secret holds the rotation state (caKeyState) and, for each CA it names, the CA's
// chain, key and roots under caKeys(id).
const caKeyState = "rotation.json"

func caKeys(id string) (chain, key, roots string) { return id + ".crt", id + ".key", id + ".roots.pem" }

// rotationMargin is added to every rotation wait: a workload renews its SVID (and gets the new
// bundle map with it) at half-life, plus the time its request takes.
const rotationMargin = 10 * time.Second

// caState is what the CA Secret stores besides the CAs.
type caState struct {
	Rotation trust.Rotation `json:"rotation"`
	// LastRequest is the last rotate-ca request acted on; a different one starts a rotation.
	LastRequest string `json:"lastRequest,omitempty"`
	// Lost, after the Secret was lost while no agent ran (so none could restore it), holds the
	// roots the member published before: the new CA's bundle keeps them until Lost.Until, so
	// that SVIDs they signed keep verifying in the other members until they expire.
	Lost *lostCA `json:"lost,omitempty"`
	// RestoredAt is when a running agent found the Secret deleted and wrote it again from its
	// memory (the CA did not change).
	RestoredAt time.Time `json:"restoredAt,omitzero"`
}

// lostCA are the roots of a CA whose key was lost with the CA Secret.
type lostCA struct {
	Roots []byte    `json:"roots"` // PEM
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

// caStore is the member's CA Secret, parsed: the rotation state and every CA it publishes.
type caStore struct {
	td    spiffeid.TrustDomain
	state caState
	cas   map[string]*trust.CA
	// pending is the next intermediate's key and CSR while the operator has it signed.
	pending *pendingCA
	// lostRoots are state.Lost's roots, parsed.
	lostRoots       []*x509.Certificate
	resourceVersion string
}

// signing is the CA that signs SVIDs now.
func (s *caStore) signing() *trust.CA { return s.cas[s.state.Rotation.Signing] }

// switchDeadline is when a rotation switches signing even if some member is behind.
func (s *caStore) switchDeadline() time.Time {
	return trust.SwitchDeadline(s.signing().Certificate())
}

// rotationStatus is what the agent's status says of the rotation: its phase, and the switch
// deadline while publishing or whether the switch was forced while retiring.
func (s *caStore) rotationStatus() map[string]string {
	r := s.state.Rotation
	out := map[string]string{wire.StatusKeyCARotation: string(r.Phase)}
	switch {
	case r.Phase == trust.PhasePublishing:
		out[wire.StatusKeyCARotationDeadline] = s.switchDeadline().UTC().Format(time.RFC3339)
	case r.Phase == trust.PhaseRetiring && r.Forced:
		out[wire.StatusKeyCARotationForced] = "true"
	}
	if l := s.state.Lost; l != nil {
		out[wire.StatusKeyCALostSince] = l.Since.UTC().Format(time.RFC3339)
		out[wire.StatusKeyCALostUntil] = l.Until.UTC().Format(time.RFC3339)
	}
	if !s.state.RestoredAt.IsZero() {
		out[wire.StatusKeyCASecretRestoredAt] = s.state.RestoredAt.UTC().Format(time.RFC3339)
	}
	return out
}

// bundle is the member's bundle: every published CA's roots, at the rotation's sequence.
func (s *caStore) bundle() *spiffebundle.Bundle {
	var roots []*x509.Certificate
	for _, id := range s.state.Rotation.Published() {
		roots = append(roots, s.cas[id].Roots()...)
	}
	roots = append(roots, s.lostRoots...)
	return trust.NewBundle(s.td, roots, s.state.Rotation.Sequence, BundleRefreshHint)
}

func (s *caStore) secretData() (map[string][]byte, error) {
	st, err := json.Marshal(s.state)
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{caKeyState: st, caTrustDomain: []byte(s.td.Name())}
	if s.pending != nil {
		data[caKeyPendingKey], data[caKeyPendingCSR] = s.pending.keyPEM, s.pending.csr
	}
	for id, ca := range s.cas {
		chain, key, roots, err := ca.MarshalPEM()
		if err != nil {
			return nil, err
		}
		kc, kk, kr := caKeys(id)
		data[kc], data[kk], data[kr] = chain, key, roots
	}
	return data, nil
}

// parseCAStore reads the CA Secret. Every CA the rotation publishes must be there.
func parseCAStore(td spiffeid.TrustDomain, s *corev1.Secret, now time.Time) (*caStore, error) {
	if got := string(s.Data[caTrustDomain]); got != td.Name() {
		return nil, fmt.Errorf("holds a CA for trust domain %q, the agent is configured for %q: delete the Secret to make a new CA", got, td.Name())
	}
	store := &caStore{td: td, cas: map[string]*trust.CA{}, pending: pendingFromSecret(s.Data), resourceVersion: s.ResourceVersion}
	if err := json.Unmarshal(s.Data[caKeyState], &store.state); err != nil {
		return nil, fmt.Errorf("key %s: %w", caKeyState, err)
	}
	if l := store.state.Lost; l != nil {
		roots, err := trust.ParseCertificatesPEM(l.Roots)
		if err != nil {
			return nil, fmt.Errorf("key %s: the lost CA's roots: %w", caKeyState, err)
		}
		store.lostRoots = roots
	}
	for _, id := range store.state.Rotation.Published() {
		kc, kk, kr := caKeys(id)
		ca, err := trust.LoadCA(td, s.Data[kc], s.Data[kk], s.Data[kr], now)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", id, err)
		}
		store.cas[id] = ca
	}
	return store, nil
}

// newCA generates a self-signed CA and its ID in the Secret.
func newCA(td spiffeid.TrustDomain, ttl time.Duration, now time.Time) (string, *trust.CA, error) {
	key, err := trust.NewKey()
	if err != nil {
		return "", nil, err
	}
	ca, err := trust.SelfSign(td, key, now, ttl, nil)
	if err != nil {
		return "", nil, err
	}
	return caID(ca), ca, nil
}

// caID names a CA in the Secret: its certificate's serial number, which is random.
func caID(ca *trust.CA) string { return fmt.Sprintf("ca-%x", ca.Certificate().SerialNumber) }

// newStore is the store of a member's first CA.
func newStore(td spiffeid.TrustDomain, id string, ca *trust.CA, now time.Time) (*caStore, error) {
	rotation, err := trust.NewRotation(id)
	if err != nil {
		return nil, err
	}
	// Sequences keep growing if the Secret is deleted and a new CA made.
	rotation.Sequence = uint64(max(now.Unix(), 1))
	return &caStore{td: td, state: caState{Rotation: rotation}, cas: map[string]*trust.CA{id: ca}}, nil
}

// loadOrCreateCA returns the member's CA store from its Secret, making the CA first if there is
// none: self-signed, or (intermediate) a key and CSR whose signed certificate the operator
// brings back (errAwaitingIntermediate until it has). Two replicas racing both try to create;
// the loser loads the winner's.
//
// A self-signed CA made while the member has published a bundle before (the Secret was lost)
// keeps that bundle's roots published for overlap (svidTTL and the margin): the SVIDs the lost
// CA signed keep verifying in the other members until they have expired.
func loadOrCreateCA(ctx context.Context, c kubernetes.Interface, ns string, td spiffeid.TrustDomain, ttl, overlap time.Duration, intermediate bool, now time.Time) (*caStore, error) {
	for range 2 {
		s, err := c.CoreV1().Secrets(ns).Get(ctx, CASecret, metav1.GetOptions{})
		if err == nil {
			if _, hasState := s.Data[caKeyState]; !hasState && string(s.Data[caTrustDomain]) == td.Name() && pendingFromSecret(s.Data) != nil {
				return awaitIntermediate(ctx, c, ns, td, s, now)
			}
			store, err := parseCAStore(td, s, now)
			if err != nil {
				return nil, fmt.Errorf("secret %s/%s: %w", ns, CASecret, err)
			}
			return store, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get secret %s/%s: %w", ns, CASecret, err)
		}
		var secret *corev1.Secret
		var store *caStore
		if intermediate {
			if secret, err = pendingSecret(td, ns); err != nil {
				return nil, err
			}
		} else {
			id, ca, err := newCA(td, ttl, now)
			if err != nil {
				return nil, err
			}
			if store, err = newStore(td, id, ca, now); err != nil {
				return nil, err
			}
			if err := store.keepLostRoots(ctx, c, ns, now, overlap); err != nil {
				return nil, err
			}
			data, err := store.secretData()
			if err != nil {
				return nil, err
			}
			secret = caSecret(ns, "", data)
		}
		created, err := c.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{FieldManager: "fleetmesh-agent"})
		if err == nil {
			if intermediate {
				return awaitIntermediate(ctx, c, ns, td, created, now)
			}
			store.resourceVersion = created.ResourceVersion
			return store, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create secret %s/%s: %w", ns, CASecret, err)
		}
	}
	return nil, fmt.Errorf("secret %s/%s: created and deleted concurrently, retrying", ns, CASecret)
}

// keepLostRoots adds the roots of the bundle the member published before (ConfigMap
// wire.BundleConfigMap, which outlives the CA Secret) to a new store, until now+overlap.
func (s *caStore) keepLostRoots(ctx context.Context, c kubernetes.Interface, ns string, now time.Time, overlap time.Duration) error {
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, wire.BundleConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // the member's first CA
	}
	if err != nil {
		return fmt.Errorf("get configmap %s/%s (the bundle published before): %w", ns, wire.BundleConfigMap, err)
	}
	if cm.Data[wire.BundleKeyTrustDomain] != s.td.Name() {
		return nil
	}
	prev, err := trust.ParseBundle(s.td, []byte(cm.Data[wire.BundleKeyDocument]))
	if err != nil {
		return nil //nolint:nilerr // nothing usable was published: nothing to keep
	}
	var roots []*x509.Certificate
	var pemRoots []byte
	for _, r := range prev.X509Authorities() {
		if !r.Equal(s.signing().Certificate()) && now.Before(r.NotAfter) {
			roots = append(roots, r)
			pemRoots = append(pemRoots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})...)
		}
	}
	if len(roots) == 0 {
		return nil
	}
	s.state.Lost, s.lostRoots = &lostCA{Roots: pemRoots, Since: now, Until: now.Add(overlap)}, roots
	return nil
}

// caSecret is the CA Secret holding data; resourceVersion (empty to create) makes an update
// fail on a conflict.
func caSecret(ns, resourceVersion string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CASecret, Namespace: ns, ResourceVersion: resourceVersion,
			Labels: map[string]string{"app.kubernetes.io/name": "fleetmesh-agent"}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}

// save writes the store back, failing on a conflict (someone else changed the Secret).
func (s *caStore) save(ctx context.Context, c kubernetes.Interface, ns string) error {
	data, err := s.secretData()
	if err != nil {
		return err
	}
	updated, err := c.CoreV1().Secrets(ns).Update(ctx, caSecret(ns, s.resourceVersion, data), metav1.UpdateOptions{FieldManager: "fleetmesh-agent"})
	if err != nil {
		return fmt.Errorf("update secret %s/%s: %w", ns, CASecret, err)
	}
	s.resourceVersion = updated.ResourceVersion
	return nil
}

// rotationInput is what the operator tells the agent about a rotation (wire.FederatedConfigMap).
type rotationInput struct {
	// held is the lowest sequence of this member's bundle every other member has loaded.
	held    uint64
	request string
	// issued is the operator's answer to a pending CSR (certManager), nil if none.
	issued issuedInput
}

// nextRotation is the store's next state, or nil if nothing changes: a rotation starts when
// asked for (a new request) or when the signing CA is two thirds through its life; it switches
// signing once every member has held the new bundle for svidTTL/2 (every workload renewed,
// getting it) and drops the old root svidTTL after the switch (every SVID it signed expired).
// An intermediate (certManager) first needs its next CA signed: a pending key and CSR wait in
// the store for the operator's answer, and the rotation begins when it arrives. With the same
// issuer the roots do not change; the phases are the same, so an issuer's new root is safe too.
func nextRotation(s *caStore, in rotationInput, svidTTL, caTTL time.Duration, intermediate bool, now time.Time) (*caStore, error) {
	next := &caStore{td: s.td, state: s.state, cas: maps.Clone(s.cas), pending: s.pending, lostRoots: s.lostRoots, resourceVersion: s.resourceVersion}
	if l := s.state.Lost; l != nil && now.After(l.Until) {
		// The lost CA's SVIDs have expired: its roots go (one step; the next check goes on).
		next.state.Lost, next.lostRoots = nil, nil
		next.state.Rotation.Sequence++
		return next, nil
	}
	r := s.state.Rotation
	var err error
	switch r.Phase {
	case trust.PhaseStable:
		requested := in.request != "" && in.request != s.state.LastRequest
		if requested {
			next.state.LastRequest = in.request
		}
		var id string
		var ca *trust.CA
		switch {
		case intermediate && s.pending != nil:
			if ca, err = s.pending.signed(s.td, in.issued, now); err != nil || ca == nil {
				return nil, err // waiting for the operator's answer
			}
			id, next.pending = caID(ca), nil
		case !requested && !trust.RotationDue(s.signing().Certificate(), now):
			return nil, nil
		case intermediate:
			if next.pending, err = newPendingCA(s.td); err != nil {
				return nil, err
			}
			return next, nil
		default:
			if id, ca, err = newCA(s.td, caTTL, now); err != nil {
				return nil, err
			}
		}
		if r, err = r.Begin(id); err != nil {
			return nil, err
		}
		next.cas[id] = ca
	case trust.PhasePublishing:
		if r, err = r.Confirm(in.held, now, svidTTL/2+rotationMargin, s.switchDeadline()); err != nil {
			return nil, err
		}
	case trust.PhaseRetiring:
		r = r.Expire(now, svidTTL+rotationMargin)
	}
	if r.Equal(s.state.Rotation) && next.state.LastRequest == s.state.LastRequest && next.pending == s.pending {
		return nil, nil
	}
	next.state.Rotation = r
	for id := range next.cas {
		if !slices.Contains(r.Published(), id) {
			delete(next.cas, id)
		}
	}
	return next, nil
}
