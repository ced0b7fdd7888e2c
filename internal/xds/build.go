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
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// ServerListenerNameTemplate is the bootstrap's server_listener_resource_name_template: an xDS
// gRPC server listening on IP:PORT asks for the Listener named by it.
const ServerListenerNameTemplate = "grpc/server?xds.resource.listening_address=%s"

// Hostname is the DNS name clients use for a service: <name>.<namespace>.svc.<scope>.
func Hostname(namespace, name string, scope Scope) string {
	return name + "." + namespace + ".svc." + string(scope)
}

// ListenerName is the client Listener (and its RouteConfiguration, Cluster and
// ClusterLoadAssignment) for host:port: the target without "xds:///", as gRPC asks for it.
func ListenerName(host string, port int32) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// ServerListenerName is the Listener an xDS gRPC server listening on ip:port asks for.
func ServerListenerName(ip string, port int32) string {
	return fmt.Sprintf(ServerListenerNameTemplate, net.JoinHostPort(ip, strconv.Itoa(int(port))))
}

// Resources are one member's xDS resources.
type Resources struct {
	// Version hashes every resource: equal inputs give equal versions, whatever their order.
	Version string
	// Each type's resources, sorted by name.
	Listeners, Routes, Clusters, Endpoints Typed
	// Secrets are SDS secrets (the proxy resource set only).
	Secrets Typed
}

// Typed holds the resources of one type and a hash of them alone.
type Typed struct {
	Version string
	Items   []types.Resource
}

// ByType maps type URLs to resources, as cache.NewSnapshot takes them.
func (r *Resources) ByType() map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ListenerType: r.Listeners.Items,
		resource.RouteType:    r.Routes.Items,
		resource.ClusterType:  r.Clusters.Items,
		resource.EndpointType: r.Endpoints.Items,
		resource.SecretType:   r.Secrets.Items,
	}
}

// Snapshot is a go-control-plane snapshot in which each type has its own version, so a
// changed endpoint re-sends only ClusterLoadAssignments. Serve it from a cache made with
// ads=false: with ads=true the cache never answers a gRPC client, which asks for fewer
// resources than the snapshot holds.
func (r *Resources) Snapshot() *cache.Snapshot {
	s := &cache.Snapshot{}
	for typ, t := range map[resource.Type]Typed{
		resource.ListenerType: r.Listeners, resource.RouteType: r.Routes,
		resource.ClusterType: r.Clusters, resource.EndpointType: r.Endpoints, resource.SecretType: r.Secrets,
	} {
		s.Resources[cache.GetResponseType(typ)] = cache.NewResources(t.Version, t.Items)
	}
	return s
}

// Build returns the member's resources: for every TCP port of every service a client Listener
// per name and virtual IP, a RouteConfiguration, an EDS Cluster and its ClusterLoadAssignment;
// and a server Listener for every address:port of the member's own endpoints. It fails on an
// invalid input rather than emit something a client would NACK.
func Build(in Input) (*Resources, error) {
	b, err := newBuilder(in)
	if err != nil {
		return nil, err
	}
	svcs := slices.Clone(in.Services)
	slices.SortFunc(svcs, func(x, y Service) int {
		return cmp.Or(cmp.Compare(x.Scope, y.Scope), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	for i := range svcs {
		if err := b.service(&svcs[i]); err != nil {
			return nil, err
		}
	}
	for _, addr := range slices.SortedFunc(maps.Keys(b.servers), netip.AddrPort.Compare) {
		b.add(&b.listeners, b.serverListener(addr))
	}
	if b.err != nil {
		return nil, b.err
	}
	r := &Resources{
		Listeners: typed(b.listeners), Routes: typed(b.routes),
		Clusters: typed(b.clusters), Endpoints: typed(b.endpoints),
	}
	sum := sha256.New()
	for _, t := range []Typed{r.Listeners, r.Routes, r.Clusters, r.Endpoints} {
		sum.Write([]byte(t.Version))
	}
	r.Version = hex.EncodeToString(sum.Sum(nil)[:8])
	return r, nil
}

// builder accumulates resources by name; the first duplicate name is an error.
type builder struct {
	member   Member
	failover Failover
	// Parts every Cluster or server Listener shares (read-only once built).
	outlier  *clusterv3.OutlierDetection
	upstream *corev3.TransportSocket
	server   *listenerv3.FilterChain

	listeners, routes, clusters, endpoints map[string]types.Resource
	// servers are the member's own endpoint addresses: one server Listener each.
	servers map[netip.AddrPort]bool
	// podsClaimed are the pod addresses that have an outbound pod chain already (proxy set).
	podsClaimed map[netip.AddrPort]bool
	err         error
}

func (b *builder) add(m *map[string]types.Resource, r types.Resource) {
	name := cache.GetResourceName(r)
	if _, dup := (*m)[name]; dup && b.err == nil {
		b.err = fmt.Errorf("two resources are named %q", name)
	}
	(*m)[name] = r
}

func (b *builder) service(s *Service) error {
	if s.Namespace == "" || s.Name == "" {
		return fmt.Errorf("service %q/%q: namespace and name are required", s.Namespace, s.Name)
	}
	if s.Scope != Local && s.Scope != ClusterSet {
		return fmt.Errorf("service %s/%s: unknown scope %q", s.Namespace, s.Name, s.Scope)
	}
	host := Hostname(s.Namespace, s.Name, s.Scope)
	ips := make([]string, 0, len(s.IPs))
	for _, ip := range s.IPs {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Errorf("service %s: IP %q: %w", host, ip, err)
		}
		ips = append(ips, a.String())
	}
	slices.Sort(ips)
	ips = slices.Compact(ips)
	for _, p := range s.Ports {
		if !isTCP(p.Protocol) {
			continue
		}
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("service %s: port %q number %d is out of range", host, p.Name, p.Port)
		}
		name := ListenerName(host, p.Port)
		domains := []string{name, host}
		b.add(&b.listeners, clientListener(name, name))
		for _, ip := range ips {
			ipName := ListenerName(ip, p.Port)
			domains = append(domains, ipName)
			b.add(&b.listeners, clientListener(ipName, name))
		}
		b.add(&b.routes, routeConfig(name, domains, b.failover.Retries))
		b.add(&b.clusters, b.cluster(name))
		cla, err := b.loadAssignment(name, s, p)
		if err != nil {
			return fmt.Errorf("service %s: %w", host, err)
		}
		b.add(&b.endpoints, cla)
	}
	return nil
}

// typed sorts resources by name and hashes their deterministic encoding.
func typed(m map[string]types.Resource) Typed {
	names := slices.Sorted(maps.Keys(m))
	t := Typed{Items: make([]types.Resource, 0, len(m))}
	sum := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	for _, n := range names {
		buf, _ = opts.MarshalAppend(buf[:0], m[n]) // our own messages always marshal
		sum.Write(binary.AppendUvarint(nil, uint64(len(n))))
		sum.Write([]byte(n))
		sum.Write(binary.AppendUvarint(nil, uint64(len(buf))))
		sum.Write(buf)
		t.Items = append(t.Items, m[n])
	}
	t.Version = hex.EncodeToString(sum.Sum(nil)[:8])
	return t
}

func isTCP(protocol string) bool { return protocol == "" || protocol == "TCP" }
