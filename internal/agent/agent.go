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

// Package agent wires the per-member fleetmesh agent: it connects to its own cluster, serves
// health probes, and publishes what the operator needs to read (its version) as an object in
// its namespace, since the operator reaches members only through their API servers.
package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Options configure an agent.
type Options struct {
	Config    *rest.Config
	Namespace string
	Version   string
	// Cluster names the member (namespace/name of its Cluster API Cluster) on every log line.
	Cluster string
	// ProbeAddr serves /healthz and /readyz.
	ProbeAddr string
	// Resync is how often the agent re-applies its status (restoring it if it was deleted);
	// an unchanged apply is a no-op on the server and wakes no watcher.
	Resync time.Duration
	// Trust, when set, makes the agent its member's certificate authority: see TrustOptions.
	Trust *TrustOptions
	// XDS, when set (with Trust), makes the agent its member's xDS control plane.
	XDS *XDSOptions
	// Injector, when set (with Trust), makes the agent its member's sidecar injector.
	Injector *InjectorOptions
}

// Agent is one member's fleetmesh control plane.
type Agent struct {
	opts     Options
	client   kubernetes.Interface
	ready    atomic.Bool
	log      klog.Logger
	registry *prometheus.Registry
	publish  *prometheus.CounterVec
	// trust is set once the CA is loaded; kick asks for an immediate status publish.
	trust atomic.Pointer[trustState]
	kick  chan struct{}
	// csrPublished is when the pending intermediate's CSR was last published (rotate's loop only).
	csrPublished time.Time
	// invalidTimeouts are the services whose request timeout does not parse, by name, with the
	// error last logged (the xDS loop only).
	invalidTimeouts map[string]string
}

// New validates options and builds an agent.
func New(opts Options) (*Agent, error) {
	if opts.Config == nil {
		return nil, errors.New("agent: a rest config is required")
	}
	if opts.Namespace == "" {
		return nil, errors.New("agent: a namespace is required")
	}
	if opts.Resync <= 0 {
		opts.Resync = 30 * time.Second
	}
	c, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("agent: build client: %w", err)
	}
	if t := opts.Trust; t != nil {
		if err := t.validate(); err != nil {
			return nil, err
		}
	}
	if opts.XDS != nil && (opts.Trust == nil || opts.XDS.Addr == "") {
		return nil, errors.New("agent: xDS needs trust (it serves over TLS with the agent's SVID) and an address")
	}
	if opts.Injector != nil {
		if opts.Trust == nil {
			return nil, errors.New("agent: the sidecar injector needs trust (its serving certificate is from the member's CA)")
		}
		if err := opts.Injector.validate(); err != nil {
			return nil, err
		}
	}
	log := klog.Background().WithName("agent")
	if opts.Cluster != "" {
		log = log.WithValues("cluster", opts.Cluster)
	}
	a := &Agent{opts: opts, client: c, log: log, registry: prometheus.NewRegistry(), kick: make(chan struct{}, 1)}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fleetmesh_agent_info", Help: "The agent's version (value 1)."}, []string{"version"})
	info.WithLabelValues(opts.Version).Set(1)
	a.publish = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetmesh_agent_status_publishes_total", Help: "Applies of the agent's status object, by result.",
	}, []string{"result"})
	a.registry.MustRegister(info, a.publish, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return a, nil
}

// Run serves probes and publishes status until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", a.opts.ProbeAddr)
	if err != nil {
		return fmt.Errorf("agent: listen for probes on %s: %w", a.opts.ProbeAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not connected to the cluster yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(a.opts.Version)) })
	mux.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	a.log.Info("agent started", "version", a.opts.Version, "namespace", a.opts.Namespace, "probes", lis.Addr().String())

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.opts.Trust != nil {
		wg.Go(func() {
			if err := a.runTrust(ctx); err != nil {
				a.log.Error(err, "trust stopped")
				cancel()
			}
		})
	}

	ticker := time.NewTicker(a.opts.Resync)
	defer ticker.Stop()
	for {
		err := a.publishStatus(ctx)
		if err == nil && a.opts.Trust != nil && a.trust.Load() == nil {
			err = errors.New("the member's CA is not loaded yet")
		}
		if err != nil {
			a.ready.Store(false)
			a.publish.WithLabelValues("error").Inc()
			a.log.Error(err, "publish status")
		} else {
			a.ready.Store(true)
			a.publish.WithLabelValues("ok").Inc()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-a.kick:
		}
	}
}

// publishSoon asks the status loop to publish now (the federated bundles changed).
func (a *Agent) publishSoon() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// publishStatus checks the connection and writes the agent's status object by server-side apply.
func (a *Agent) publishStatus(ctx context.Context) error {
	sv, err := a.client.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("reach the API server: %w", err)
	}
	data := map[string]string{
		wire.StatusKeyVersion: a.opts.Version,
		"kubernetesVersion":   sv.GitVersion,
	}
	if t := a.trust.Load(); t != nil {
		maps.Copy(data, t.statusData())
	}
	cm := corev1ac.ConfigMap(wire.StatusConfigMap, a.opts.Namespace).
		WithLabels(map[string]string{"app.kubernetes.io/name": "fleetmesh-agent", "app.kubernetes.io/part-of": "fleetmesh"}).
		WithData(data)
	_, err = a.client.CoreV1().ConfigMaps(a.opts.Namespace).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "fleetmesh-agent", Force: true})
	if err != nil {
		return fmt.Errorf("apply %s/%s: %w", a.opts.Namespace, wire.StatusConfigMap, err)
	}
	return nil
}
