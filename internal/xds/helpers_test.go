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

package xds

import (
	"fmt"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Fixtures: member "a" in region r1 with trust domain a.fleet; remote members b (r1), c (r2)
// and d (r3). Member m's endpoints are 10.244.m.x.

var memberA = Member{Cluster: "a", Region: "r1", Zone: "r1-z1", TrustDomain: "a.fleet"}

var regions = map[string]string{"a": "r1", "b": "r1", "c": "r2", "d": "r3"}

// set is an EndpointSet of cluster c with n ready endpoints on port "grpc" 9000+clusterIndex.
func set(c string, n int) EndpointSet {
	idx := int(c[0] - 'a')
	s := EndpointSet{Cluster: c, Region: regions[c], Ports: []Port{{Name: "grpc", Port: int32(9000 + idx)}}}
	for i := range n {
		s.Endpoints = append(s.Endpoints, Endpoint{
			Address: fmt.Sprintf("10.244.%d.%d", idx, i+1), Zone: regions[c] + "-z1",
			Ready: true, Serving: true,
		})
	}
	return s
}

// imported is echo.<ns> as a ServiceImport with endpoints in the given clusters.
func imported(ns, name string, sets ...EndpointSet) Service {
	return Service{Namespace: ns, Name: name, Scope: ClusterSet, Ports: []Port{{Name: "grpc", Port: 8080}}, Endpoints: sets}
}

func input(svcs ...Service) Input {
	return Input{
		Member: memberA, FederatedTrustDomains: []string{"b.fleet", "c.fleet", "d.fleet"},
		Policy: Policy{Failover: Failover{Retries: 2}}, Services: svcs,
	}
}

func mustBuild(t testing.TB, in Input) *Resources {
	t.Helper()
	r, err := Build(in)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return r
}

// byName finds a resource of one type.
func byName[T proto.Message](t testing.TB, items []types.Resource, name string) T {
	t.Helper()
	for _, r := range items {
		if m, ok := r.(T); ok && resourceName(m) == name {
			return m
		}
	}
	var zero T
	t.Fatalf("no %T named %q", zero, name)
	return zero
}

func resourceName(m proto.Message) string {
	fd := m.ProtoReflect().Descriptor().Fields().ByName("name")
	if fd == nil {
		fd = m.ProtoReflect().Descriptor().Fields().ByName("cluster_name")
	}
	return m.ProtoReflect().Get(fd).String()
}

func cla(t testing.TB, r *Resources, name string) *endpointv3.ClusterLoadAssignment {
	return byName[*endpointv3.ClusterLoadAssignment](t, r.Endpoints.Items, name)
}

// validateDeep runs the envoy module's generated ValidateAll on m and on every message packed
// in an Any inside it (the generated code does not look into Anys).
func validateDeep(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%T: %w", m, err)
		}
	}
	var err error
	var walk func(protoreflect.Message)
	walk = func(pm protoreflect.Message) {
		if a, ok := pm.Interface().(*anypb.Any); ok {
			inner, uerr := a.UnmarshalNew()
			if uerr != nil {
				err = fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), uerr)
				return
			}
			if verr := validateDeep(inner); verr != nil {
				err = verr
			}
			return
		}
		pm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := range v.List().Len() {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { walk(mv.Message()); return true })
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message())
			}
			return err == nil
		})
	}
	walk(m.ProtoReflect())
	return err
}
