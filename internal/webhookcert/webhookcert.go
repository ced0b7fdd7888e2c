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

// Package webhookcert keeps the serving certificate of the operator's admission webhook where
// nothing else does (a kustomize install; under OLM, OLM issues and mounts it): a CA kept in one
// Secret of the operator's namespace, so that every replica and every restart serves a
// certificate that the one caBundle verifies, and that caBundle in the
// ValidatingWebhookConfiguration.
//
// The Secret is read and written by name, uncached (the operator caches no Secret), and only
// updated: it ships empty with the install, so the operator needs no right to create Secrets.
package webhookcert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// Keys of the Secret: the CA's certificate and its key (PEM). Nothing else is stored: each
// replica issues its own serving certificate from the CA.
const (
	CACertKey = "ca.crt"
	CAKeyKey  = "ca.key"
)

// FieldManager owns the caBundle of the webhook configuration's webhooks, and nothing else of it.
const FieldManager = "fleetmesh-webhook-cert"

// Lifetimes: the CA is replaced only once less than CARenewBefore of it is left (or when the
// Secret holds none that loads); a serving certificate is renewed at half-life.
const (
	CATTL         = 10 * 365 * 24 * time.Hour
	CARenewBefore = 30 * 24 * time.Hour
	ServingTTL    = 90 * 24 * time.Hour
)

// Options say where the CA is kept and which webhook configuration's caBundle to keep.
type Options struct {
	// Reader reads the Secret and the webhook configuration: uncached, by name.
	Reader client.Reader
	// Writer updates the Secret and applies the caBundle.
	Writer client.Client
	// Namespace and Secret name the Secret holding the CA.
	Namespace, Secret string
	// Configuration is the ValidatingWebhookConfiguration whose webhooks call this operator
	// through a Service: the serving certificate names those Services.
	Configuration string
	// Resync is how often the Secret and the configuration are read again (default 1 minute);
	// a failed pass is retried after Retry (default 5 s).
	Resync, Retry time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log logr.Logger
}

// Keeper serves the webhook's certificate (GetCertificate, for the webhook server's TLS config)
// and keeps it, the CA Secret and the caBundle right. It is a manager Runnable on every replica.
type Keeper struct {
	opts Options
	td   spiffeid.TrustDomain
	cert atomic.Pointer[tls.Certificate]

	// The Start loop's own: the CA that signed cert, when to renew it and the names it has.
	signedBy []byte
	renewAt  time.Time
	names    []string
}

// New checks the options and returns a Keeper that has no certificate yet (Sync gets one).
func New(o Options) (*Keeper, error) {
	if o.Reader == nil || o.Writer == nil || o.Namespace == "" || o.Secret == "" || o.Configuration == "" {
		return nil, errors.New("webhook certificate: a reader, a writer, the Secret's namespace and name and the webhook configuration are required")
	}
	// The CA is a fleetmesh CA (internal/trust) named after the configuration; it signs no SVID.
	td, err := spiffeid.TrustDomainFromString(o.Configuration)
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: the configuration name %q cannot name the CA: %w", o.Configuration, err)
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.Retry <= 0 {
		o.Retry = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Keeper{opts: o, td: td}, nil
}

// GetCertificate is the webhook server's tls.Config.GetCertificate: the current serving
// certificate, or an error (a failed handshake) until there is one.
func (k *Keeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no serving certificate yet (Secret %s/%s, webhook configuration %s)", k.opts.Namespace, k.opts.Secret, k.opts.Configuration)
}

// NeedLeaderElection: every replica serves the webhook, so every replica keeps a certificate.
func (k *Keeper) NeedLeaderElection() bool { return false }

// Start syncs at once, then every Resync (Retry after a failure), until ctx ends.
func (k *Keeper) Start(ctx context.Context) error {
	for {
		wait := k.opts.Resync
		if err := k.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			k.opts.Log.Error(err, "keep the webhook's serving certificate; retrying", "retry", k.opts.Retry)
			wait = k.opts.Retry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Sync reads the CA from the Secret (making and storing a new one when it holds none that is
// valid for CARenewBefore more), issues a serving certificate for the configuration's Services
// when the current one is due, and applies the CA as every webhook's caBundle where it differs.
func (k *Keeper) Sync(ctx context.Context) error {
	now := k.opts.Now()
	ca, err := k.loadCA(ctx, now)
	if err != nil {
		return err
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k.opts.Reader.Get(ctx, client.ObjectKey{Name: k.opts.Configuration}, vwc); err != nil {
		return fmt.Errorf("read the webhook configuration %s: %w", k.opts.Configuration, err)
	}
	names, err := serviceNames(vwc)
	if err != nil {
		return err
	}
	caPEM := trust.EncodeCertificatesPEM(ca.Roots())
	if k.cert.Load() == nil || !bytes.Equal(k.signedBy, caPEM) || !slices.Equal(k.names, names) || !now.Before(k.renewAt) {
		issuer, err := trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: ServingTTL, Now: k.opts.Now})
		if err != nil {
			return err
		}
		cert, err := issuer.NewServingCertificate(names, nil)
		if err != nil {
			return fmt.Errorf("issue the webhook's serving certificate: %w", err)
		}
		k.cert.Store(cert)
		// At half-life (as the agent renews its injector's), so a failing renewal has time.
		leaf := cert.Leaf
		k.signedBy, k.names, k.renewAt = caPEM, names, leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2)
		k.opts.Log.Info("serving a new webhook certificate", "dnsNames", names, "notAfter", cert.Leaf.NotAfter)
	}
	return k.applyCABundle(ctx, vwc, caPEM)
}

// loadCA returns the CA the Secret holds, or makes one and stores it there when it holds none
// that loads and stays valid for CARenewBefore more. Another replica storing one at the same time
// makes the update fail on its resourceVersion; the next pass loads that replica's CA.
func (k *Keeper) loadCA(ctx context.Context, now time.Time) (*trust.CA, error) {
	sec := &corev1.Secret{}
	if err := k.opts.Reader.Get(ctx, client.ObjectKey{Namespace: k.opts.Namespace, Name: k.opts.Secret}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("the Secret %s/%s does not exist: the install ships it empty (config/default) and the operator may only read and update it; apply it again", k.opts.Namespace, k.opts.Secret)
		}
		return nil, fmt.Errorf("read Secret %s/%s: %w", k.opts.Namespace, k.opts.Secret, err)
	}
	why := "the Secret holds no CA"
	if len(sec.Data[CACertKey]) > 0 {
		switch ca, err := trust.LoadCA(k.td, sec.Data[CACertKey], sec.Data[CAKeyKey], sec.Data[CACertKey], now); {
		case err != nil:
			why = "the Secret's CA does not load: " + err.Error()
		case !now.Add(CARenewBefore).Before(ca.Certificate().NotAfter):
			why = "the CA expires at " + ca.Certificate().NotAfter.UTC().Format(time.RFC3339)
		default:
			return ca, nil
		}
	}
	key, err := trust.NewKey()
	if err != nil {
		return nil, err
	}
	ca, err := trust.SelfSign(k.td, key, now, CATTL, nil)
	if err != nil {
		return nil, fmt.Errorf("make the webhook CA: %w", err)
	}
	certPEM, keyPEM, _, err := ca.MarshalPEM()
	if err != nil {
		return nil, err
	}
	sec.Data = map[string][]byte{CACertKey: certPEM, CAKeyKey: keyPEM}
	if err := k.opts.Writer.Update(ctx, sec); err != nil {
		return nil, fmt.Errorf("store a new webhook CA in Secret %s/%s (%s): %w", k.opts.Namespace, k.opts.Secret, why, err)
	}
	k.opts.Log.Info("stored a new webhook CA", "secret", k.opts.Namespace+"/"+k.opts.Secret, "reason", why, "notAfter", ca.Certificate().NotAfter)
	return ca, nil
}

// serviceNames are the DNS names the API server verifies when it calls the configuration's
// webhooks: <service>.<namespace>.svc of each.
func serviceNames(vwc *admissionregistrationv1.ValidatingWebhookConfiguration) ([]string, error) {
	var names []string
	for _, wh := range vwc.Webhooks {
		if s := wh.ClientConfig.Service; s != nil {
			names = append(names, s.Name+"."+s.Namespace+".svc")
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("the webhook configuration %s calls no Service: nothing to issue a serving certificate for", vwc.Name)
	}
	return names, nil
}

// applyCABundle sets every webhook's caBundle in vwc (as read) to caBundle, unless each holds it
// already, by server-side apply of those fields alone under FieldManager (as the agent keeps its
// injector's): the rest stays the installer's. Only webhooks vwc has are named; an apply of one
// it lost meanwhile fails validation rather than adding a webhook of a name and a caBundle.
func (k *Keeper) applyCABundle(ctx context.Context, vwc *admissionregistrationv1.ValidatingWebhookConfiguration, caBundle []byte) error {
	ac := admissionregistrationv1ac.ValidatingWebhookConfiguration(vwc.Name)
	held := true
	for _, wh := range vwc.Webhooks {
		held = held && bytes.Equal(wh.ClientConfig.CABundle, caBundle)
		ac.WithWebhooks(admissionregistrationv1ac.ValidatingWebhook().WithName(wh.Name).
			WithClientConfig(admissionregistrationv1ac.WebhookClientConfig().WithCABundle(caBundle...)))
	}
	if held {
		return nil
	}
	if err := k.opts.Writer.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply the caBundle of %s: %w", vwc.Name, err)
	}
	k.opts.Log.Info("set the webhook configuration's caBundle", "configuration", vwc.Name)
	return nil
}
