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

// Package xdstest runs a go-control-plane ADS server on 127.0.0.1 for tests that need real xDS
// clients. Its own tests are the end-to-end proof of package xds: proxyless gRPC clients and
// servers configured only by xds.Build and xds.Bootstrap, over SPIFFE mTLS.
package xdstest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Server is an ADS (state of the world) server over a snapshot cache keyed by node ID.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// Cache takes each node's snapshot. It is made with ads=false: with ads=true it never
	// answers a gRPC client, which asks for fewer resources than a snapshot holds.
	Cache cache.SnapshotCache

	mu    sync.Mutex
	nacks []string
}

// Start serves until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{Cache: cache.NewSnapshotCache(false, cache.IDHash{}, nil)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	xds := serverv3.NewServer(ctx, s.Cache, serverv3.CallbackFuncs{StreamRequestFunc: s.onRequest})
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xds)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() { cancel(); gs.Stop(); <-done })
	return s
}

// SetSnapshot gives nodes the snapshot.
func (s *Server) SetSnapshot(t testing.TB, snap cache.ResourceSnapshot, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		if err := s.Cache.SetSnapshot(context.Background(), n, snap); err != nil {
			t.Fatal(err)
		}
	}
}

// NACKs are the rejections clients sent: node, type and gRPC's error message.
func (s *Server) NACKs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nacks...)
}

func (s *Server) onRequest(_ int64, req *discoveryv3.DiscoveryRequest) error {
	if d := req.GetErrorDetail(); d != nil {
		s.mu.Lock()
		s.nacks = append(s.nacks, fmt.Sprintf("%s NACKed %s: %s", req.GetNode().GetId(), req.GetTypeUrl(), d.GetMessage()))
		s.mu.Unlock()
	}
	return nil
}
