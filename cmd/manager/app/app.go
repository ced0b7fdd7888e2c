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

// Package app wires the fleetmesh operator: the manager, its caches, the cluster cache of
// members and the controllers. cmd/manager and the tests run exactly this.
package app

import (
	"context"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/controllers/caissuer"
	"github.com/fleetmesh/fleetmesh/controllers/meshcluster"
	"github.com/fleetmesh/fleetmesh/controllers/meshinstallation"
	"github.com/fleetmesh/fleetmesh/controllers/servicefederation"
	"github.com/fleetmesh/fleetmesh/controllers/trustfederation"
	"github.com/fleetmesh/fleetmesh/internal/version"
)

// NewScheme holds every type the operator reads or writes in the management cluster.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(clusterv1.AddToScheme(s))
	utilruntime.Must(meshv1alpha1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.Install(s))
	utilruntime.Must(cmapi.AddToScheme(s))
	return s
}

// GracefulShutdownTimeout bounds how long a stopping operator waits for its controllers before it
// releases its lease and exits; config/manager gives the pod twice as long.
const GracefulShutdownTimeout = 5 * time.Second

// Options are the operator's settings (its command-line flags).
type Options struct {
	// SkipNameValidation lets tests and benchmarks run several operators in one process.
	SkipNameValidation bool
	MetricsAddr        string
	ProbeAddr          string
	LeaderElect        bool
	LeaderElectionNS   string
	// Webhook is the admission webhook server (none when Webhook.Addr is empty).
	Webhook WebhookOptions
}

// NewManager builds the operator: the manager, the cluster cache of members and the controllers.
func NewManager(ctx context.Context, cfg *rest.Config, o Options) (ctrl.Manager, error) {
	// Longer than client-go's 15/10/2 s: an operator that loses its lease restarts and reconnects
	// to every member, so a management API server slow to answer for a while (under the load of
	// a fleet joining at once) must not cost the lease. A clean stop still hands over at once
	// (LeaderElectionReleaseOnCancel), within one retry period.
	leaseDuration, renewDeadline, retryPeriod := 60*time.Second, 40*time.Second, 5*time.Second
	scheme := NewScheme()
	webhookServer, webhookCert, err := newWebhookServer(cfg, scheme, o.Webhook)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		WebhookServer:           webhookServer,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "fleetmesh-manager.mesh.fleetmesh.io",
		LeaderElectionNamespace: o.LeaderElectionNS,
		LeaseDuration:           &leaseDuration,
		RenewDeadline:           &renewDeadline,
		RetryPeriod:             &retryPeriod,
		// A new leader starts at once when the old one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
		// The lease is released only once the runnables have stopped or this timeout has
		// passed: it must end before the kubelet's SIGKILL (the pod's
		// terminationGracePeriodSeconds), or a reconcile slow to stop costs the release and the
		// new leader waits out the whole lease duration.
		GracefulShutdownTimeout: ptr.To(GracefulShutdownTimeout),
		Controller:              config.Controller{SkipNameValidation: &o.SkipNameValidation},
		Cache:                   cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		// No Secret is ever cached: Cluster API labels its CA, etcd and service-account key
		// Secrets like the kubeconfig ones, so an informer would hold every member's keys. The
		// cluster cache GETs only <cluster>-kubeconfig, when it connects (see setupControllers).
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add healthz check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add readyz check: %w", err)
	}
	if webhookServer != nil {
		if err := setupWebhookServer(mgr, webhookCert); err != nil {
			return nil, err
		}
	}
	if err := setupControllers(ctx, mgr); err != nil {
		return nil, err
	}
	return mgr, nil
}

// memberCache: what the operator caches of each member. Of the kinds it installs, only
// fleetmesh's own objects, except Services and Namespaces which service federation reads in full;
// and never a Secret (a Secret informer would pull members' CA keys into the operator).
func memberCacheOptions() clustercache.CacheOptions {
	ours := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/part-of": "fleetmesh"})
	byObject := map[client.Object]cache.ByObject{}
	for _, kind := range meshcluster.WatchedKinds() {
		switch kind.(type) {
		case *corev1.Service, *corev1.Namespace:
			continue
		}
		byObject[kind] = cache.ByObject{Label: ours}
	}
	return clustercache.CacheOptions{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields()}
}

func setupControllers(ctx context.Context, mgr ctrl.Manager) error {
	// The cluster cache, with what rebuilds a member's connection when its kubeconfig Secret
	// changes (the cache alone would not while the old credentials work). The MeshCluster
	// reconciler decides it and reaches members through the cache itself; every other reconciler
	// through its guard, which refuses a member meanwhile when the new Secret must not be
	// written through.
	conns := controllers.NewMemberConnections()
	memberCache, err := conns.SetupClusterCache(ctx, mgr, clustercache.Options{
		// Uncached: a GET of the one kubeconfig Secret per connect (RBAC: get only).
		SecretClient: mgr.GetAPIReader(),
		Cache:        memberCacheOptions(),
		Client: clustercache.ClientOptions{
			UserAgent: "fleetmesh-manager/" + version.Version,
			// The default 20/30 per member is too low for an install or a burst of imports.
			QPS: 100, Burst: 200,
			Cache: clustercache.ClientCacheOptions{DisableFor: []client.Object{&corev1.Secret{}}},
		},
	}, controller.Options{MaxConcurrentReconciles: 10})
	if err != nil {
		return fmt.Errorf("set up the cluster cache: %w", err)
	}
	cc := conns.Guard(memberCache)
	if err := (&meshinstallation.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("meshinstallation-controller"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up MeshInstallation controller: %w", err)
	}
	if err := (&meshcluster.Reconciler{
		Client:       mgr.GetClient(),
		ClusterCache: memberCache,
		Recorder:     mgr.GetEventRecorder("meshcluster-controller"),
		SecretReader: mgr.GetAPIReader(),
		Connections:  conns,
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: 10}); err != nil {
		return fmt.Errorf("set up MeshCluster controller: %w", err)
	}
	if err := (&servicefederation.Reconciler{
		Client:       mgr.GetClient(),
		ClusterCache: cc,
		Recorder:     mgr.GetEventRecorder("servicefederation-controller"),
	}).SetupWithManager(mgr, controller.TypedOptions[servicefederation.Request]{MaxConcurrentReconciles: 10}); err != nil {
		return fmt.Errorf("set up service federation controller: %w", err)
	}
	if err := (&trustfederation.Reconciler{
		Client:       mgr.GetClient(),
		ClusterCache: cc,
		Recorder:     mgr.GetEventRecorder("trustfederation-controller"),
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: 1}); err != nil {
		return fmt.Errorf("set up trust federation controller: %w", err)
	}
	if err := (&caissuer.Reconciler{
		Client:       mgr.GetClient(),
		APIReader:    mgr.GetAPIReader(),
		ClusterCache: cc,
		Recorder:     mgr.GetEventRecorder("caissuer-controller"),
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: 4}); err != nil {
		return fmt.Errorf("set up CA issuer controller: %w", err)
	}
	return nil
}
