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

// Package identityv1 is the wire contract of the agent's identity API, fleetmesh.identity.v1:
// real protobuf messages and a gRPC service, without generated code. protoc is not available
// here, so the schema below is built as a descriptor in Go and the messages are dynamicpb
// messages: the standard gRPC proto codec carries them (content-type application/grpc), any
// protobuf client in any language can call the service from this schema, and decoding of what
// clients send is done by google.golang.org/protobuf, not by code of ours.
//
// The schema, as a .proto file would say it:
//
//	syntax = "proto3";
//	package fleetmesh.identity.v1;
//
//	service Identity {
//	  // IssueX509SVID signs an X.509-SVID for the ServiceAccount the token authenticates.
//	  rpc IssueX509SVID(IssueX509SVIDRequest) returns (IssueX509SVIDResponse);
//	}
//	message IssueX509SVIDRequest {
//	  bytes csr = 1;    // PKCS#10, DER (or PEM), ECDSA P-256 key
//	  string token = 2; // ServiceAccount token, audience "fleetmesh"
//	}
//	message IssueX509SVIDResponse {
//	  repeated bytes svid_chain = 1; // DER certificates, leaf first
//	  bytes bundle_map = 2;          // {"trust_domains": {...}}, gRPC's SPIFFE bundle map file
//	}
package identityv1

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Names on the wire.
const (
	ServiceName         = "fleetmesh.identity.v1.Identity"
	IssueX509SVIDMethod = "/" + ServiceName + "/IssueX509SVID"
)

// The agent serves the API as spiffe://<trust domain>/ns/AgentNamespace/sa/AgentServiceAccount;
// clients authorise the server by that ID before sending their token. (They match what
// internal/install renders.)
const (
	AgentNamespace      = "fleetmesh-system"
	AgentServiceAccount = "fleetmesh-agent"
)

// Audience is the audience workloads' ServiceAccount tokens for this API must carry.
const Audience = wire.IdentityAudience

// IssueRequest asks for an SVID.
type IssueRequest struct {
	// CSR is a PKCS#10 request; only its public key is used.
	CSR []byte
	// Token is the caller's ServiceAccount token.
	Token string
}

// IssueResponse carries an issued SVID.
type IssueResponse struct {
	// SVIDChain holds DER certificates, leaf first.
	SVIDChain [][]byte
	// BundleMap is the federated bundle map file, the member's own trust domain included.
	BundleMap []byte
}

// Server is what the service calls.
type Server interface {
	IssueX509SVID(context.Context, *IssueRequest) (*IssueResponse, error)
}

var (
	file     = mustFile()
	reqDesc  = file.Messages().ByName("IssueX509SVIDRequest")
	respDesc = file.Messages().ByName("IssueX509SVIDResponse")
)

// File is the schema's descriptor (for reflection or documentation).
func File() protoreflect.FileDescriptor { return file }

func mustFile() protoreflect.FileDescriptor {
	field := func(name string, n int32, t descriptorpb.FieldDescriptorProto_Type, repeated bool) *descriptorpb.FieldDescriptorProto {
		label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if repeated {
			label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: t.Enum(), Label: label.Enum()}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("fleetmesh/identity/v1/identity.proto"),
		Package: proto.String("fleetmesh.identity.v1"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("IssueX509SVIDRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				field("csr", 1, descriptorpb.FieldDescriptorProto_TYPE_BYTES, false),
				field("token", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING, false),
			}},
			{Name: proto.String("IssueX509SVIDResponse"), Field: []*descriptorpb.FieldDescriptorProto{
				field("svid_chain", 1, descriptorpb.FieldDescriptorProto_TYPE_BYTES, true),
				field("bundle_map", 2, descriptorpb.FieldDescriptorProto_TYPE_BYTES, false),
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Identity"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name:       proto.String("IssueX509SVID"),
				InputType:  proto.String(".fleetmesh.identity.v1.IssueX509SVIDRequest"),
				OutputType: proto.String(".fleetmesh.identity.v1.IssueX509SVIDResponse"),
			}},
		}},
	}
	// Not registered globally: nothing here depends on the global registry.
	f, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		panic(fmt.Sprintf("identityv1: invalid schema: %v", err))
	}
	return f
}

func fieldOf(m *dynamicpb.Message, name protoreflect.Name) protoreflect.FieldDescriptor {
	return m.Descriptor().Fields().ByName(name)
}

// ToProto returns r as a protobuf message.
func (r *IssueRequest) ToProto() proto.Message {
	m := dynamicpb.NewMessage(reqDesc)
	m.Set(fieldOf(m, "csr"), protoreflect.ValueOfBytes(r.CSR))
	m.Set(fieldOf(m, "token"), protoreflect.ValueOfString(r.Token))
	return m
}

// RequestFromProto reads an IssueX509SVIDRequest message.
func RequestFromProto(m *dynamicpb.Message) *IssueRequest {
	return &IssueRequest{
		CSR:   m.Get(fieldOf(m, "csr")).Bytes(),
		Token: m.Get(fieldOf(m, "token")).String(),
	}
}

// ToProto returns r as a protobuf message.
func (r *IssueResponse) ToProto() proto.Message {
	m := dynamicpb.NewMessage(respDesc)
	chain := m.Mutable(fieldOf(m, "svid_chain")).List()
	for _, c := range r.SVIDChain {
		chain.Append(protoreflect.ValueOfBytes(c))
	}
	m.Set(fieldOf(m, "bundle_map"), protoreflect.ValueOfBytes(r.BundleMap))
	return m
}

// ResponseFromProto reads an IssueX509SVIDResponse message.
func ResponseFromProto(m *dynamicpb.Message) *IssueResponse {
	out := &IssueResponse{BundleMap: m.Get(fieldOf(m, "bundle_map")).Bytes()}
	chain := m.Get(fieldOf(m, "svid_chain")).List()
	for i := 0; i < chain.Len(); i++ {
		out.SVIDChain = append(out.SVIDChain, chain.Get(i).Bytes())
	}
	return out
}

// NewRequestMessage and NewResponseMessage return empty messages to decode into.
func NewRequestMessage() *dynamicpb.Message  { return dynamicpb.NewMessage(reqDesc) }
func NewResponseMessage() *dynamicpb.Message { return dynamicpb.NewMessage(respDesc) }

// ServiceDesc is the service as gRPC registers it; RegisterServer is the usual way in.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "IssueX509SVID",
		Handler:    issueHandler,
	}},
	Metadata: "fleetmesh/identity/v1/identity.proto",
}

// RegisterServer registers srv on s.
func RegisterServer(s grpc.ServiceRegistrar, srv Server) { s.RegisterService(&ServiceDesc, srv) }

// issueHandler is what protoc-gen-go-grpc would generate; interceptors see protobuf messages,
// as with generated code. (An interceptor that logs requests would log the token: don't.)
func issueHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := NewRequestMessage()
	if err := dec(in); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, req any) (any, error) {
		resp, err := srv.(Server).IssueX509SVID(ctx, RequestFromProto(req.(*dynamicpb.Message)))
		if err != nil {
			return nil, err
		}
		return resp.ToProto(), nil
	}
	if interceptor == nil {
		return call(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: IssueX509SVIDMethod}, call)
}

// Client calls the identity API.
type Client struct {
	cc grpc.ClientConnInterface
}

// NewClient returns a client over cc.
func NewClient(cc grpc.ClientConnInterface) *Client { return &Client{cc: cc} }

// IssueX509SVID asks for an SVID.
func (c *Client) IssueX509SVID(ctx context.Context, req *IssueRequest, opts ...grpc.CallOption) (*IssueResponse, error) {
	out := NewResponseMessage()
	if err := c.cc.Invoke(ctx, IssueX509SVIDMethod, req.ToProto(), out, opts...); err != nil {
		return nil, err
	}
	return ResponseFromProto(out), nil
}
