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
	"maps"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// deltaStream is one incremental ADS stream: the server sends only what changed, the client
// keeps every type's resources by name, and a response is accepted only when the whole set it
// leads to translates (else it is NACKed and the set stays as it was).
func (a *ADS) deltaStream(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(a.Conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return err
	}
	// A new stream starts from nothing: the server sends every subscribed resource again.
	have := map[string]map[string]*anypb.Any{}
	subscribed := map[string][]string{}
	subscribe := func(typeURL string, names []string) error {
		old := subscribed[typeURL]
		subscribed[typeURL] = names
		req := &discoveryv3.DeltaDiscoveryRequest{Node: a.Node, TypeUrl: typeURL}
		for _, n := range names {
			if !slices.Contains(old, n) {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		for _, n := range old {
			if !slices.Contains(names, n) {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
			}
		}
		return s.Send(req)
	}
	// In delta the wildcard is the name "*".
	for _, sub := range a.initialSubscriptions([]string{"*"}) {
		if err := subscribe(sub.typeURL, sub.names); err != nil {
			return err
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		typeURL := resp.GetTypeUrl()
		if _, ok := subscribed[typeURL]; !ok {
			a.Log.Info("ignored an xDS response of a type not subscribed to", "type", typeURL)
			continue
		}
		next := maps.Clone(have[typeURL])
		if next == nil {
			next = map[string]*anypb.Any{}
		}
		for _, r := range resp.GetResources() {
			next[r.GetName()] = r.GetResource()
		}
		for _, name := range resp.GetRemovedResources() {
			delete(next, name)
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{Node: a.Node, TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}
		if err := a.acceptResources(typeURL, slices.Collect(maps.Values(next))); err != nil {
			a.rejected(typeURL, err, "nonce", resp.GetNonce())
			ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
			if err := s.Send(ack); err != nil {
				return err
			}
			continue
		}
		have[typeURL] = next
		if err := s.Send(ack); err != nil {
			return err
		}
		if typeURL == resourcev3.ClusterType {
			if names := a.edsNames(); !slices.Equal(subscribed[resourcev3.EndpointType], names) {
				if err := subscribe(resourcev3.EndpointType, names); err != nil {
					return err
				}
			}
		}
		a.publish()
	}
}
