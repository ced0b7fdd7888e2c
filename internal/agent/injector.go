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
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	admissionlisters "k8s.io/client-go/listers/admissionregistration/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/fleetmesh/fleetmesh/internal/identityclient"
	"github.com/fleetmesh/fleetmesh/internal/inject"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// InjectorFieldManager is the agent's field manager on the webhook configuration: it owns
// caBundle there and nothing else, beside the operator's server-side apply of the rest.
const InjectorFieldManager = "fleetmesh-agent"

// RootConfigMapLabels mark the root ConfigMaps the agent keeps in injected namespaces. They are
// not the operator's installation labels (the operator would prune them as objects it no longer
// renders); the agent owns them, and the member's garbage collector deletes them with the webhook
// configuration, their owner, when fleetmesh is uninstalled.
var RootConfigMapLabels = map[string]string{
	"app.kubernetes.io/name":       inject.DefaultRootConfigMap,
	"app.kubernetes.io/managed-by": "fleetmesh-agent",
}

// InjectorOptions make the agent its member's sidecar injector: a mutating admission webhook
// over HTTPS, with a serving certificate from the member's own CA.
type InjectorOptions struct {
	// Addr serves the webhook (HTTPS; path inject.Path).
	Addr string
	// DNSNames and IPs are the serving certificate's names: the agent Service's DNS names,
	// which the API server verifies, and the pod IP.
	DNSNames []string
	IPs      []net.IP
	// WebhookConfiguration names the MutatingWebhookConfiguration whose webhook Webhook calls
	// this agent: the agent keeps that webhook's caBundle equal to the member's roots.
	WebhookConfiguration, Webhook string
	// Sidecar is what every injected proxy gets (Sidecar.RootConfigMap defaults to
	// inject.DefaultRootConfigMap: the ConfigMap the agent keeps in every namespace labelled
	// mesh.fleetmesh.io/inject=enabled).
	Sidecar inject.Config
}

func (o *InjectorOptions) validate() error {
	switch {
	case o.Addr == "":
		return errors.New("agent: injector: a bind address is required")
	case len(o.DNSNames) == 0 && len(o.IPs) == 0:
		return errors.New("agent: injector: the serving certificate needs a DNS name or an IP address")
	case o.WebhookConfiguration == "" || o.Webhook == "":
		return errors.New("agent: injector: the webhook configuration and webhook names are required")
	}
	if err := o.Sidecar.Validate(); err != nil {
		return fmt.Errorf("agent: injector: %w", err)
	}
	return nil
}

func (o *InjectorOptions) rootConfigMap() string {
	if o.Sidecar.RootConfigMap != "" {
		return o.Sidecar.RootConfigMap
	}
	return inject.DefaultRootConfigMap
}

// webhookKey is the work queue's key for the webhook configuration's caBundle; every other key
// is a namespace whose root ConfigMap to sync.
const webhookKey = ""

// injector serves the webhook and keeps what injected pods rely on in place: the caBundle the
// API server verifies the webhook with, and the root ConfigMap injected proxies mount.
type injector struct {
	opts   *InjectorOptions
	client kubernetes.Interface
	issuer *trust.Issuer
	own    func() *spiffebundle.Bundle
	log    logr.Logger
	resync time.Duration

	cert     atomic.Pointer[tls.Certificate]
	signedBy *trust.CA // the CA that signed cert (run's loop only)
	renewAt  time.Time

	queue      workqueue.TypedRateLimitingInterface[string]
	webhooks   admissionlisters.MutatingWebhookConfigurationLister
	namespaces corelisters.NamespaceLister
	roots      corelisters.ConfigMapLister
}

// startInjector issues the serving certificate and binds the webhook's listener (a bind
// failure is the caller's error, as for the agent's other listeners), then serves and syncs
// until ctx ends or stop is called; stop returns once everything has stopped.
func (a *Agent) startInjector(ctx context.Context, issuer *trust.Issuer, ts *trustState, log logr.Logger) (stop func(), err error) {
	o := a.opts.Injector
	inj := &injector{opts: o, client: a.client, issuer: issuer, own: ts.ownBundle, log: log.WithName("injector"), resync: a.opts.Resync,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	if err := inj.renewCertificate(time.Now()); err != nil {
		return nil, err
	}
	handler, err := inject.NewHandler(inject.HandlerOptions{
		Config: func() inject.Config { return o.Sidecar }, Registerer: a.registry, Log: inj.log,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the sidecar injector on %s: %w", o.Addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(inject.Path, handler)
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return inj.cert.Load(), nil },
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(lis, "", "") }()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
		inj.run(ctx)
	}()
	inj.log.Info("serving the sidecar injector", "address", lis.Addr().String(), "dnsNames", o.DNSNames, "ips", o.IPs,
		"proxyImage", o.Sidecar.ProxyImage, "xds", o.Sidecar.XDSAddress, "identity", o.Sidecar.IdentityAddress)
	return func() { cancel(); <-done }, nil
}

// renewCertificate issues a new serving certificate with the CA signing now.
func (inj *injector) renewCertificate(now time.Time) error {
	cert, err := inj.issuer.NewServingCertificate(inj.opts.DNSNames, inj.opts.IPs)
	if err != nil {
		return fmt.Errorf("issue the sidecar injector's serving certificate: %w", err)
	}
	inj.cert.Store(cert)
	inj.signedBy = inj.issuer.CA()
	inj.renewAt = identityclient.RenewAt(cert.Leaf)
	if inj.renewAt.Before(now) {
		inj.renewAt = now.Add(time.Second)
	}
	return nil
}

// certDue: the serving certificate is past half-life, or a CA rotation switched signing.
func (inj *injector) certDue(now time.Time) bool {
	return inj.issuer.CA() != inj.signedBy || !now.Before(inj.renewAt)
}

// run watches the webhook configuration, the labelled namespaces and their root ConfigMaps,
// and syncs them, until ctx ends.
func (inj *injector) run(ctx context.Context) {
	defer inj.queue.ShutDown()
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}
	labelled := informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = labels.SelectorFromSet(labels.Set{inject.InjectLabel: inject.InjectEnabled}).String()
	})
	whFactory := informers.NewSharedInformerFactoryWithOptions(inj.client, 0, byName(inj.opts.WebhookConfiguration))
	nsFactory := informers.NewSharedInformerFactoryWithOptions(inj.client, 0, labelled)
	cmFactory := informers.NewSharedInformerFactoryWithOptions(inj.client, 0, byName(inj.opts.rootConfigMap()))
	whInf := whFactory.Admissionregistration().V1().MutatingWebhookConfigurations()
	nsInf := nsFactory.Core().V1().Namespaces()
	cmInf := cmFactory.Core().V1().ConfigMaps()
	inj.webhooks, inj.namespaces, inj.roots = whInf.Lister(), nsInf.Lister(), cmInf.Lister()

	on := func(f func(obj any)) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    f,
			UpdateFunc: func(_, obj any) { f(obj) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				f(obj)
			},
		}
	}
	// The configuration's UID is the root ConfigMaps' owner: all of them follow it.
	_, _ = whInf.Informer().AddEventHandler(on(func(any) { inj.enqueueAll() }))
	_, _ = nsInf.Informer().AddEventHandler(on(func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			inj.queue.Add(ns.Name)
		}
	}))
	_, _ = cmInf.Informer().AddEventHandler(on(func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			inj.queue.Add(cm.Namespace)
		}
	}))
	for _, f := range []informers.SharedInformerFactory{whFactory, nsFactory, cmFactory} {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range []informers.SharedInformerFactory{whFactory, nsFactory, cmFactory} {
			f.Shutdown()
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), whInf.Informer().HasSynced, nsInf.Informer().HasSynced, cmInf.Informer().HasSynced) {
		return // ctx ended
	}
	go func() {
		for inj.processNext(ctx) {
		}
	}()
	inj.enqueueAll()

	bundle := inj.own()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	resync := time.NewTicker(inj.resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-resync.C:
			inj.enqueueAll()
		case now := <-check.C:
			// A rotation changes the roots to publish, and then the CA that signs.
			if b := inj.own(); b != bundle {
				bundle = b
				inj.enqueueAll()
			}
			if inj.certDue(now) {
				if err := inj.renewCertificate(now); err != nil {
					inj.log.Error(err, "renew the serving certificate; retrying")
					inj.renewAt = now.Add(10 * time.Second)
				}
			}
		}
	}
}

func (inj *injector) enqueueAll() {
	inj.queue.Add(webhookKey)
	nss, err := inj.namespaces.List(labels.Everything())
	if err != nil {
		return
	}
	for _, ns := range nss {
		inj.queue.Add(ns.Name)
	}
}

func (inj *injector) processNext(ctx context.Context) bool {
	key, quit := inj.queue.Get()
	if quit {
		return false
	}
	defer inj.queue.Done(key)
	var err error
	if key == webhookKey {
		err = inj.syncCABundle(ctx)
	} else {
		err = inj.syncRoot(ctx, key)
	}
	if err != nil && ctx.Err() == nil {
		inj.log.Error(err, "sync; retrying", "namespace", key)
		inj.queue.AddRateLimited(key)
		return true
	}
	inj.queue.Forget(key)
	return true
}

// rootsPEM is the member's roots as a caBundle: every root it publishes, so the API server
// accepts the serving certificate from either CA across a rotation.
func (inj *injector) rootsPEM() ([]byte, error) {
	b := inj.own()
	if b == nil || len(b.X509Authorities()) == 0 {
		return nil, errors.New("the member's bundle has no roots yet")
	}
	return trust.EncodeCertificatesPEM(b.X509Authorities()), nil
}

// syncCABundle keeps the webhook's caBundle equal to the member's roots, by server-side apply
// of that one field under InjectorFieldManager. A missing configuration is the operator's to
// create (the agent cannot): its creation wakes this sync again.
func (inj *injector) syncCABundle(ctx context.Context) error {
	mwc, err := inj.webhooks.Get(inj.opts.WebhookConfiguration)
	if apierrors.IsNotFound(err) {
		inj.log.V(1).Info("the webhook configuration does not exist (yet)", "name", inj.opts.WebhookConfiguration)
		return nil
	}
	if err != nil {
		return err
	}
	want, err := inj.rootsPEM()
	if err != nil {
		return err
	}
	return ApplyCABundle(ctx, inj.client, mwc, inj.opts.Webhook, want)
}

// ApplyCABundle sets the caBundle of webhook in mwc (as read) to caBundle, unless it holds that
// already, by server-side apply of that field alone under InjectorFieldManager: the rest of the
// object stays the operator's. A webhook mwc does not have is an error, never an apply (it would
// add a webhook made of a name and a caBundle).
func ApplyCABundle(ctx context.Context, c kubernetes.Interface, mwc *admissionregistrationv1.MutatingWebhookConfiguration, webhook string, caBundle []byte) error {
	found := false
	for _, wh := range mwc.Webhooks {
		if wh.Name == webhook {
			found = true
			if bytes.Equal(wh.ClientConfig.CABundle, caBundle) {
				return nil
			}
		}
	}
	if !found {
		return fmt.Errorf("the webhook configuration %s has no webhook %s", mwc.Name, webhook)
	}
	ac := admissionregistrationv1ac.MutatingWebhookConfiguration(mwc.Name).WithWebhooks(
		admissionregistrationv1ac.MutatingWebhook().WithName(webhook).
			WithClientConfig(admissionregistrationv1ac.WebhookClientConfig().WithCABundle(caBundle...)))
	_, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: InjectorFieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply the caBundle of %s: %w", mwc.Name, err)
	}
	return nil
}

// syncRoot keeps the root ConfigMap of a labelled namespace equal to the member's bundle
// document, owned by the webhook configuration. A namespace that lost its label (or is going)
// keeps what it has: running proxies still read it.
func (inj *injector) syncRoot(ctx context.Context, namespace string) error {
	ns, err := inj.namespaces.Get(namespace)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp != nil {
		return nil
	}
	mwc, err := inj.webhooks.Get(inj.opts.WebhookConfiguration)
	if apierrors.IsNotFound(err) {
		return nil // nothing injects without it; its creation enqueues every namespace
	}
	if err != nil {
		return err
	}
	b := inj.own()
	if b == nil {
		return errors.New("the member's bundle is not loaded yet")
	}
	doc, err := trust.MarshalBundle(b)
	if err != nil {
		return err
	}
	name := inj.opts.rootConfigMap()
	if cm, err := inj.roots.ConfigMaps(namespace).Get(name); err == nil && rootHeld(cm, mwc, string(doc)) {
		return nil
	}
	ac := corev1ac.ConfigMap(name, namespace).
		WithLabels(RootConfigMapLabels).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion("admissionregistration.k8s.io/v1").WithKind("MutatingWebhookConfiguration").
			WithName(mwc.Name).WithUID(mwc.UID)).
		WithData(map[string]string{inject.RootKey: string(doc)})
	if _, err := inj.client.CoreV1().ConfigMaps(namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: InjectorFieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply %s/%s: %w", namespace, name, err)
	}
	inj.log.V(1).Info("wrote the member's roots", "namespace", namespace, "configMap", name, "bundle", trust.Fingerprint(b))
	return nil
}

// rootHeld reports whether cm already is what syncRoot would write.
func rootHeld(cm *corev1.ConfigMap, owner *admissionregistrationv1.MutatingWebhookConfiguration, doc string) bool {
	if cm.Data[inject.RootKey] != doc || len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != owner.UID {
		return false
	}
	for k, v := range RootConfigMapLabels {
		if cm.Labels[k] != v {
			return false
		}
	}
	return true
}
