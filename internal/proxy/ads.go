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

package proxy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// ADS is a state-of-the-world ADS client. It subscribes to every Listener and Cluster, to the
// ClusterLoadAssignments its Clusters name and to the validation Secret; it accepts a response
// only when it translates (else it NACKs with the reason and keeps the last good config), and
// hands every new good Config to Apply.
type ADS struct {
	Conn  grpc.ClientConnInterface
	Node  *corev3.Node
	Apply func(*Config)
	Log   logr.Logger
	// Delta selects the incremental variant of ADS (DeltaAggregatedResources) instead of the
	// state of the world.
	Delta bool
	// OnNACK, if set, is called for every rejected response.
	OnNACK func(typeURL string, err error)

	// The translated parts of the accepted state, by type (the decoded resources are not kept:
	// a new response of a type replaces all of that type's, and only the translation is used).
	cfg Config
}

type typeState struct {
	version, nonce string
	names          []string
}

// Run keeps a stream open until ctx ends, reconnecting with backoff.
func (a *ADS) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		stream := a.stream
		if a.Delta {
			stream = a.deltaStream
		}
		err := stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		a.Log.Info("xDS stream ended; reconnecting", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (a *ADS) stream(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(a.Conn).StreamAggregatedResources(sctx)
	if err != nil {
		return err
	}
	states := map[string]*typeState{}
	send := func(typeURL string, st *typeState, detail error) error {
		req := &discoveryv3.DiscoveryRequest{Node: a.Node, TypeUrl: typeURL, ResourceNames: st.names, VersionInfo: st.version, ResponseNonce: st.nonce}
		if detail != nil {
			req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail.Error()}
		}
		return s.Send(req)
	}
	// In SotW no resource names is the wildcard. No version on a new stream: the server sends
	// everything again.
	for _, sub := range a.initialSubscriptions(nil) {
		st := &typeState{names: sub.names}
		states[sub.typeURL] = st
		if err := send(sub.typeURL, st, nil); err != nil {
			return err
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		st := states[resp.GetTypeUrl()]
		if st == nil {
			// Never asked for: ignored. Answering, even with a NACK, would be a request with
			// no resource names, which in SotW subscribes to every resource of the type.
			a.Log.Info("ignored an xDS response of a type not subscribed to", "type", resp.GetTypeUrl())
			continue
		}
		st.nonce = resp.GetNonce()
		if err := a.accept(resp); err != nil {
			a.rejected(resp.GetTypeUrl(), err, "version", resp.GetVersionInfo())
			if err := send(resp.GetTypeUrl(), st, err); err != nil {
				return err
			}
			continue
		}
		st.version = resp.GetVersionInfo()
		if err := send(resp.GetTypeUrl(), st, nil); err != nil {
			return err
		}
		if resp.GetTypeUrl() == resourcev3.ClusterType {
			names := a.edsNames()
			es := states[resourcev3.EndpointType]
			if es == nil {
				es = &typeState{}
				states[resourcev3.EndpointType] = es
			}
			if !slices.Equal(es.names, names) {
				es.names = names
				if err := send(resourcev3.EndpointType, es, nil); err != nil {
					return err
				}
			}
		}
		a.publish()
	}
}

// subscription is the resources of one type a stream asks for.
type subscription struct {
	typeURL string
	names   []string
}

// initialSubscriptions are what a new stream asks for: every Listener and Cluster (wildcard is
// the variant's way to say so), the validation Secret, and the endpoints of the clusters known
// from a previous stream (later ones follow each accepted Cluster response).
func (a *ADS) initialSubscriptions(wildcard []string) []subscription {
	subs := []subscription{
		{resourcev3.ListenerType, wildcard}, {resourcev3.ClusterType, wildcard}, {resourcev3.SecretType, []string{wire.ValidationSecretName}},
	}
	if names := a.edsNames(); len(names) > 0 {
		subs = append(subs, subscription{resourcev3.EndpointType, names})
	}
	return subs
}

// rejected reports a response that did not translate; the last good config stays.
func (a *ADS) rejected(typeURL string, err error, keysAndValues ...any) {
	a.Log.Info("rejected an xDS response; keeping the last good config", append([]any{"type", typeURL, "error", err.Error()}, keysAndValues...)...)
	if a.OnNACK != nil {
		a.OnNACK(typeURL, err)
	}
}

func (a *ADS) edsNames() []string {
	var names []string
	for _, c := range a.cfg.Clusters {
		names = append(names, c.EDSName)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// accept decodes and translates one response; on success it becomes the accepted state of its
// type.
func (a *ADS) accept(resp *discoveryv3.DiscoveryResponse) error {
	return a.acceptResources(resp.GetTypeUrl(), resp.GetResources())
}

// acceptResources translates the whole set of one type's resources; on success it becomes the
// accepted state of that type.
func (a *ADS) acceptResources(typeURL string, items []*anypb.Any) error {
	switch typeURL {
	case resourcev3.ListenerType:
		m, err := decode(items, func() *listenerv3.Listener { return &listenerv3.Listener{} }, (*listenerv3.Listener).GetName)
		if err != nil {
			return err
		}
		set, err := Listeners(slices.Collect(maps.Values(m)))
		if err != nil {
			return err
		}
		a.cfg.Outbound, a.cfg.Inbound, a.cfg.Gateway = set.Outbound, set.Inbound, set.Gateway
	case resourcev3.ClusterType:
		m, err := decode(items, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, (*clusterv3.Cluster).GetName)
		if err != nil {
			return err
		}
		cs, err := Clusters(slices.Collect(maps.Values(m)))
		if err != nil {
			return err
		}
		a.cfg.Clusters = cs
	case resourcev3.EndpointType:
		m, err := decode(items, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }, (*endpointv3.ClusterLoadAssignment).GetClusterName)
		if err != nil {
			return err
		}
		eps, err := Endpoints(slices.Collect(maps.Values(m)))
		if err != nil {
			return err
		}
		a.cfg.Endpoints = eps
	case resourcev3.SecretType:
		m, err := decode(items, func() *tlsv3.Secret { return &tlsv3.Secret{} }, (*tlsv3.Secret).GetName)
		if err != nil {
			return err
		}
		b, err := Bundles(slices.Collect(maps.Values(m)))
		if err != nil {
			return err
		}
		a.cfg.Bundles = b
	default:
		return fmt.Errorf("type %s was not asked for", typeURL)
	}
	return nil
}

func (a *ADS) publish() {
	c := a.cfg // the maps are replaced, never changed, so a shallow copy is a snapshot
	if a.Apply != nil {
		a.Apply(&c)
	}
}

// decode unmarshals every resource with newT and keys it by its name.
func decode[T proto.Message](items []*anypb.Any, newT func() T, name func(T) string) (map[string]T, error) {
	out := map[string]T{}
	for _, item := range items {
		m := newT()
		if err := item.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("resource of type %s: %w", item.GetTypeUrl(), err)
		}
		n := name(m)
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("two resources are named %q", n)
		}
		out[n] = m
	}
	return out, nil
}
