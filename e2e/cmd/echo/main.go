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

// Command echo is the data-plane e2e's workload: a proxyless gRPC server configured by its
// member's agent over xDS (GRPC_XDS_BOOTSTRAP_CONFIG; start it with
// GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true). It serves the gRPC health service and answers every
// call with headers naming its member and the caller's SPIFFE ID, so a client can tell who
// answered and what the server saw. It prints "serving" once its server Listener arrived.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	grpcxds "google.golang.org/grpc/xds"
)

// Response headers.
const (
	HeaderMember = "x-fleetmesh-member"
	HeaderCaller = "x-fleetmesh-caller"
)

func main() {
	listen := flag.String("listen", "", "address to serve on (ip:port)")
	member := flag.String("member", "", "the member this instance runs in")
	flag.Parse()
	if err := run(*listen, *member); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(listen, member string) error {
	// No fallback to plaintext: without security config from xDS, no call is served.
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: refuse{}})
	if err != nil {
		return err
	}
	srv, err := grpcxds.NewGRPCServer(grpc.Creds(creds),
		grpcxds.ServingModeCallback(func(addr net.Addr, args grpcxds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				fmt.Println("serving", addr)
			} else {
				fmt.Println("not serving", addr, args.Err)
			}
		}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			caller := ""
			if p, ok := peer.FromContext(ctx); ok {
				if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && info.SPIFFEID != nil {
					caller = info.SPIFFEID.String()
				}
			}
			_ = grpc.SetHeader(ctx, metadata.Pairs(HeaderMember, member, HeaderCaller, caller))
			return h(ctx, req)
		}))
	if err != nil {
		return err
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	return srv.Serve(lis)
}

// refuse is the fallback transport credentials: they fail every handshake.
type refuse struct{}

func (refuse) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	_ = c.Close()
	return nil, nil, fmt.Errorf("refusing a plaintext connection")
}

func (refuse) Clone() credentials.TransportCredentials { return refuse{} }

func (refuse) OverrideServerName(string) error { return nil }

func (refuse) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	_ = c.Close()
	return nil, nil, fmt.Errorf("no security configuration from xDS: refusing a plaintext connection")
}

func (refuse) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "refuse"}
}
