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
	"fmt"
	"net"
	"reflect"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/mcsdns"
	"github.com/fleetmesh/fleetmesh/internal/wire"
	"github.com/fleetmesh/fleetmesh/internal/xds"
)

// XDSOptions make the agent its member's xDS control plane.
type XDSOptions struct {
	// Addr serves ADS (state of the world) over TLS with the agent's SVID.
	Addr string
	// DNSAddr, when set, serves the clusterset.local zone (mcsdns) over UDP and TCP from the
	// same view of the member as xDS.
	DNSAddr string
	// Member is the member's cluster ID, locality and trust domain.
	Member xds.Member
	// Policy is the data plane's failover and authorization policy the agent starts with.
	Policy xds.Policy
	// PolicyConfigMap, when set, names the ConfigMap in the agent's namespace that holds its
	// configuration: the agent watches it and applies a changed policy (PolicyOf reads it) to
	// every proxy without a restart, as a mesh applies an authorization policy edit.
	PolicyConfigMap string
	PolicyOf        func(data map[string]string) (xds.Policy, error)
}

// xdsGroup serves every client of a kind the same snapshot: each asks only for the names it
// uses, and with ads=false the cache answers for exactly those. Proxyless gRPC clients get the
// gRPC resource set; sidecar proxies (node metadata xds.ProxyMetadataKey) the proxy set, and
// east-west gateways (the same key, value wire.ProxyRoleGateway) the gateway set.
type xdsGroup struct{}

const (
	grpcGroup    = "fleetmesh"
	proxyGroup   = "fleetmesh-proxy"
	gatewayGroup = "fleetmesh-gateway"
)

func (xdsGroup) ID(node *corev3.Node) string {
	switch node.GetMetadata().GetFields()[xds.ProxyMetadataKey].GetStringValue() {
	case "":
		return grpcGroup
	case wire.ProxyRoleGateway:
		return gatewayGroup
	}
	return proxyGroup
}

// xdsTrust is what the xDS resources need of the agent's trust state.
type xdsTrust interface {
	// TrustDomains are the federated trust domains, the member's own included.
	TrustDomains() []string
	// X509Authorities are their X.509 roots by trust domain name.
	X509Authorities() map[string][]*x509.Certificate
}

type xdsMetrics struct {
	builds  *prometheus.HistogramVec
	latency prometheus.Histogram
	pushes  *prometheus.CounterVec
	nacks   *prometheus.CounterVec
	streams prometheus.Gauge
}

func newXDSMetrics(reg prometheus.Registerer) *xdsMetrics {
	m := &xdsMetrics{
		builds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleetmesh_agent_xds_build_seconds",
			Help:    "Time to build the member's xDS snapshot from its Services, EndpointSlices and ServiceImports, by result.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleetmesh_agent_xds_push_seconds",
			Help:    "Time from a change of the member's Services, EndpointSlices or ServiceImports (as the agent's watch delivers it) to the new snapshot handed to every open xDS stream.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_agent_xds_pushes_total", Help: "xDS responses sent to data-plane clients, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_agent_xds_nacks_total", Help: "xDS responses data-plane clients rejected, by resource type.",
		}, []string{"type"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleetmesh_agent_xds_streams", Help: "Open xDS streams.",
		}),
	}
	reg.MustRegister(m.builds, m.latency, m.pushes, m.nacks, m.streams)
	return m
}

// runXDS watches the member's services and endpoints and serves their xDS resources until ctx
// ends. tr gives the federated trust domains (own included) and their roots; rebuild is
// signalled when they change.
func (a *Agent) runXDS(ctx context.Context, svid x509svid.Source, tr xdsTrust, rebuild <-chan struct{}) error {
	o := a.opts.XDS
	log := a.log
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(mcsv1beta1.Install(scheme))
	cacheOpts := crcache.Options{Scheme: scheme, DefaultTransform: crcache.TransformStripManagedFields()}
	watched := []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}, &mcsv1beta1.ServiceImport{}}
	if o.PolicyConfigMap != "" {
		// Only the agent's own configuration, never another ConfigMap.
		cacheOpts.ByObject = map[client.Object]crcache.ByObject{&corev1.ConfigMap{}: {
			Namespaces: map[string]crcache.Config{a.opts.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", o.PolicyConfigMap),
		}}
		watched = append(watched, &corev1.ConfigMap{})
	}
	objects, err := crcache.New(a.opts.Config, cacheOpts)
	if err != nil {
		return fmt.Errorf("xds: build cache: %w", err)
	}
	policy := o.Policy
	changed := make(chan struct{}, 1)
	// changedAt is when the first change not yet in a snapshot was seen (unix nanoseconds), 0 if none.
	var changedAt atomic.Int64
	kick := func() {
		changedAt.CompareAndSwap(0, time.Now().UnixNano())
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{AddFunc: func(any) { kick() }, UpdateFunc: func(any, any) { kick() }, DeleteFunc: func(any) { kick() }}
	for _, obj := range watched {
		inf, err := objects.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("xds: watch %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	go func() { _ = objects.Start(ctx) }()
	if !objects.WaitForCacheSync(ctx) {
		return nil // ctx ended
	}

	snapshots := cachev3.NewSnapshotCache(false, xdsGroup{}, nil)
	metrics := newXDSMetrics(a.registry)
	// Both ADS variants, state of the world and delta, are served from the same snapshots.
	nack := func(node *corev3.Node, typeURL string, d interface{ GetMessage() string }) {
		metrics.nacks.WithLabelValues(typeURL).Inc()
		log.Info("xDS client rejected a response", "node", node.GetId(), "type", typeURL, "error", d.GetMessage())
	}
	server := serverv3.NewServer(ctx, snapshots, serverv3.CallbackFuncs{
		StreamOpenFunc:        func(context.Context, int64, string) error { metrics.streams.Inc(); return nil },
		StreamClosedFunc:      func(int64, *corev3.Node) { metrics.streams.Dec() },
		DeltaStreamOpenFunc:   func(context.Context, int64, string) error { metrics.streams.Inc(); return nil },
		DeltaStreamClosedFunc: func(int64, *corev3.Node) { metrics.streams.Dec() },
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			if d := req.GetErrorDetail(); d != nil {
				nack(req.GetNode(), req.GetTypeUrl(), d)
			}
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			if d := req.GetErrorDetail(); d != nil {
				nack(req.GetNode(), req.GetTypeUrl(), d)
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			metrics.pushes.WithLabelValues(resp.GetTypeUrl()).Inc()
		},
		StreamDeltaResponseFunc: func(_ int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			metrics.pushes.WithLabelValues(resp.GetTypeUrl()).Inc()
		},
	})
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsconfig.TLSServerConfig(svid))))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, server)
	lis, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("listen for xDS on %s: %w", o.Addr, err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	log.Info("serving xDS", "address", lis.Addr().String())

	var zone *dnsServer
	if o.DNSAddr != "" {
		if zone, err = serveDNS(ctx, o.DNSAddr, a.registry); err != nil {
			return err
		}
		log.Info("serving clusterset DNS", "address", o.DNSAddr, "zone", mcsdns.Origin)
	}

	kick()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-rebuild:
		}
		start := time.Now()
		since := changedAt.Swap(0) // a change seen from here on is built again next round
		st, err := readMember(ctx, objects)
		if err != nil {
			log.Error(err, "read the member's services; serving the previous xDS snapshot and DNS zone")
			continue
		}
		if zone != nil {
			zone.update(st, since)
		}
		if o.PolicyConfigMap != "" {
			policy = a.currentPolicy(ctx, objects, policy)
		}
		sets, err := a.buildXDS(st, tr, policy)
		for _, group := range []string{grpcGroup, proxyGroup, gatewayGroup} {
			if err == nil {
				err = snapshots.SetSnapshot(ctx, group, sets[group].Snapshot())
			}
		}
		if err != nil {
			metrics.builds.WithLabelValues("error").Observe(time.Since(start).Seconds())
			log.Error(err, "build the xDS snapshot; serving the previous one")
			continue
		}
		metrics.builds.WithLabelValues("ok").Observe(time.Since(start).Seconds())
		if since != 0 {
			metrics.latency.Observe(time.Since(time.Unix(0, since)).Seconds())
		}
	}
}

// currentPolicy is the policy the agent's ConfigMap holds now; the previous one when the
// ConfigMap cannot be read or does not parse (said in the log: the proxies keep what they have).
func (a *Agent) currentPolicy(ctx context.Context, objects crcache.Cache, previous xds.Policy) xds.Policy {
	o := a.opts.XDS
	cm := &corev1.ConfigMap{}
	if err := objects.Get(ctx, client.ObjectKey{Namespace: a.opts.Namespace, Name: o.PolicyConfigMap}, cm); err != nil {
		a.log.Error(err, "read the agent's configuration; keeping the data-plane policy in force", "configMap", o.PolicyConfigMap)
		return previous
	}
	p, err := o.PolicyOf(cm.Data)
	if err != nil {
		a.log.Error(err, "the agent's configuration does not parse; keeping the data-plane policy in force", "configMap", o.PolicyConfigMap)
		return previous
	}
	if !reflect.DeepEqual(p, previous) {
		a.log.Info("data-plane policy changed: serving it to every proxy", "configMap", o.PolicyConfigMap)
	}
	return p
}

// memberState is the member's service discovery state as the agent's cache holds it.
type memberState struct {
	services []corev1.Service
	imports  []mcsv1beta1.ServiceImport
	// local and imported are the EndpointSlices of Services and of imports, by namespace/name.
	local, imported map[string][]*discoveryv1.EndpointSlice
}

// reportInvalidTimeouts logs, once per value, a service whose wire.RequestTimeoutAnnotation does
// not parse (it is served without a timeout). Called from the xDS loop only.
func (a *Agent) reportInvalidTimeouts(svcs []xds.Service) {
	seen := map[string]string{}
	for _, s := range svcs {
		if s.InvalidTimeout == nil {
			continue
		}
		key := fmt.Sprintf("%s %s/%s", s.Scope, s.Namespace, s.Name)
		seen[key] = s.InvalidTimeout.Error()
		if a.invalidTimeouts[key] != seen[key] {
			a.log.Info("service served without a request timeout: its annotation does not parse", "service", key, "error", seen[key])
		}
	}
	a.invalidTimeouts = seen
}

// readMember lists the member's Services, EndpointSlices and ServiceImports from the cache.
func readMember(ctx context.Context, objects crcache.Cache) (memberState, error) {
	services := &corev1.ServiceList{}
	slices := &discoveryv1.EndpointSliceList{}
	imports := &mcsv1beta1.ServiceImportList{}
	for _, l := range []client.ObjectList{services, slices, imports} {
		if err := objects.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return memberState{}, err
		}
	}
	st := memberState{services: services.Items, imports: imports.Items,
		local: map[string][]*discoveryv1.EndpointSlice{}, imported: map[string][]*discoveryv1.EndpointSlice{}}
	for i := range slices.Items {
		s := &slices.Items[i]
		if name := s.Labels[mcsv1beta1.LabelServiceName]; name != "" && s.Labels[discoveryv1.LabelManagedBy] == mcs.ManagedBy {
			st.imported[s.Namespace+"/"+name] = append(st.imported[s.Namespace+"/"+name], s)
		} else if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			st.local[s.Namespace+"/"+name] = append(st.local[s.Namespace+"/"+name], s)
		}
	}
	return st, nil
}

// buildXDS builds every resource set from the member's state, by group: proxyless gRPC's, the
// sidecar proxies' and the east-west gateways'.
func (a *Agent) buildXDS(st memberState, tr xdsTrust, policy xds.Policy) (map[string]*xds.Resources, error) {
	o := a.opts.XDS
	local, imported := st.local, st.imported
	in := xds.Input{Member: o.Member, FederatedTrustDomains: tr.TrustDomains(), TrustBundles: tr.X509Authorities(), Policy: policy}
	for i := range st.services {
		s := &st.services[i]
		in.Services = append(in.Services, xds.LocalService(s, local[s.Namespace+"/"+s.Name], o.Member))
	}
	for i := range st.imports {
		si := &st.imports[i]
		in.Services = append(in.Services, xds.ImportedService(si, imported[si.Namespace+"/"+si.Name], o.Member))
	}
	a.reportInvalidTimeouts(in.Services)
	sets := map[string]*xds.Resources{}
	var err error
	if sets[grpcGroup], err = xds.Build(in); err != nil {
		return nil, err
	}
	if sets[proxyGroup], err = xds.BuildProxy(in); err != nil {
		return nil, fmt.Errorf("proxy resources: %w", err)
	}
	if sets[gatewayGroup], err = xds.BuildGateway(in); err != nil {
		return nil, fmt.Errorf("gateway resources: %w", err)
	}
	return sets, nil
}
