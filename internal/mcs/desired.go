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

package mcs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Desired is what one importing member should have for one service.
type Desired struct {
	Import *mcsv1beta1.ServiceImport
	Slices []*discoveryv1.EndpointSlice
}

// ForMember renders the ServiceImport and one MCS EndpointSlice per source cluster for member
// (a cluster ID) on network: only the sources that reach it (Export.Reaches); nil Import when
// none does. A source on the member's network gives its ready pod endpoints; one on another
// network its east-west gateway (gatewaySlice). ip is the service's clusterset IP
// (ClusterSetIP imports only). labels are added to everything (fleetmesh's ownership labels).
// Namespace sameness is the caller's: call it only for members that have the namespace. The
// import's status lists the exporting clusters its slices come from (the caller writes status
// through the status subresource).
func ForMember(imp *Import, member, network, ip string, labels map[string]string) Desired {
	var sources []Export
	for _, src := range imp.Sources {
		if src.Reaches(member) {
			sources = append(sources, src)
		}
	}
	if len(sources) == 0 {
		return Desired{}
	}
	si := &mcsv1beta1.ServiceImport{
		TypeMeta: metav1.TypeMeta{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{
			Name: imp.Key.Name, Namespace: imp.Key.Namespace,
			Labels: merge(imp.Labels, labels), Annotations: maps.Clone(imp.Annotations),
		},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:                  imp.Type,
			Ports:                 imp.Ports,
			SessionAffinity:       imp.SessionAffinity,
			SessionAffinityConfig: imp.SessionAffinityConfig,
			IPFamilies:            imp.IPFamilies,
			InternalTrafficPolicy: imp.InternalTrafficPolicy,
			TrafficDistribution:   imp.TrafficDistribution,
		},
	}
	// KEP-1645, "ClusterSetIP": a non-headless import has a clusterset IP, one per family it
	// carries (IPv4 only here); a Headless import has none.
	if imp.Type == mcsv1beta1.ClusterSetIP && ip != "" {
		si.Spec.IPs = []string{ip}
	}
	d := Desired{Import: si}
	for _, src := range sources {
		si.Status.Clusters = append(si.Status.Clusters, mcsv1beta1.ClusterStatus{Cluster: src.Cluster})
		s := sliceFor(imp.Key, src, labels)
		if networkOf(src.Network) != networkOf(network) {
			gatewaySlice(s, src, imp.Type)
		}
		d.Slices = append(d.Slices, s)
	}
	return d
}

// SliceName is stable per service and source cluster, and a valid DNS subdomain however long
// the names are; ownership is never derived from it (labels are).
func SliceName(k Key, cluster string) string {
	sum := sha256.Sum256([]byte(k.String() + "@" + cluster))
	name := k.Name
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("%s-%s", name, hex.EncodeToString(sum[:5]))
}

// sliceFor copies the source cluster's ready endpoints (flat networking: pod IPs are reachable
// from every member) into one MCS EndpointSlice.
func sliceFor(k Key, src Export, labels map[string]string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Name: SliceName(k, src.Cluster), Namespace: k.Namespace,
			Labels: merge(labels, map[string]string{
				mcsv1beta1.LabelServiceName:   k.Name,
				mcsv1beta1.LabelSourceCluster: src.Cluster,
				discoveryv1.LabelManagedBy:    ManagedBy,
			}),
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	if src.Region != "" {
		s.Labels[RegionLabel] = src.Region
	}
	if src.Zone != "" {
		s.Labels[ZoneLabel] = src.Zone
	}
	if src.Stale {
		s.Labels[StaleLabel] = "true"
	}
	if src.ExportTo != nil {
		// Where the export reaches, for an operator that must rebuild it from this slice
		// (Reconstruct) while its member is unreachable: no import records it otherwise.
		s.Annotations = map[string]string{ExportToAnnotation: strings.Join(src.ExportTo, ",")}
	}
	ports := map[string]discoveryv1.EndpointPort{}
	seen := map[string]bool{}
	for _, es := range src.Slices {
		if es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue // IPv4 only for now; the import says so in ipFamilies
		}
		for _, p := range es.Ports {
			ports[ptr.Deref(p.Name, "")] = p
		}
		for _, ep := range es.Endpoints {
			if !ptr.Deref(ep.Conditions.Ready, false) || len(ep.Addresses) == 0 || seen[ep.Addresses[0]] {
				continue
			}
			seen[ep.Addresses[0]] = true
			zone := ep.Zone
			if zone == nil && src.Zone != "" {
				zone = ptr.To(src.Zone)
			}
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  ep.Addresses,
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				Hostname:   ep.Hostname,
				Zone:       zone,
			})
		}
	}
	sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Addresses[0] < s.Endpoints[j].Addresses[0] })
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Ports = append(s.Ports, ports[n])
	}
	return s
}

// networkOf is a network's name, wire.DefaultNetwork for none.
func networkOf(n string) string {
	if n == "" {
		return wire.DefaultNetwork
	}
	return n
}

// gatewaySlice turns the MCS slice of a source on another network into what the importer can
// reach: one endpoint, the source's gateway address, on wire.GatewayPort for every port (the
// gateway routes by the TLS server name, which names the service port), labelled with the
// source's network and weighted by the ready endpoints it stands for. With no gateway address,
// no ready endpoint, or a Headless import (whose per-pod names a gateway cannot route), the
// slice has no endpoints: the source is listed in the import but unreachable from here.
func gatewaySlice(s *discoveryv1.EndpointSlice, src Export, typ mcsv1beta1.ServiceImportType) {
	s.Labels[wire.NetworkLabel] = networkOf(src.Network)
	ready := len(s.Endpoints)
	s.Endpoints = nil
	for i := range s.Ports {
		s.Ports[i].Port = ptr.To(int32(wire.GatewayPort))
	}
	if src.Gateway == "" || ready == 0 || typ == mcsv1beta1.Headless {
		return
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[wire.EndpointWeightAnnotation] = strconv.Itoa(ready)
	ep := discoveryv1.Endpoint{
		Addresses:  []string{src.Gateway},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
	}
	if src.Zone != "" {
		ep.Zone = ptr.To(src.Zone)
	}
	s.Endpoints = []discoveryv1.Endpoint{ep}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// Allocator hands out clusterset IPs from a range: stable for a service (a hash picks its first
// candidate, so a restarted operator re-derives most IPs) and unique while it is held.
type Allocator struct {
	prefix netip.Prefix
	byKey  map[Key]netip.Addr
	byIP   map[netip.Addr]Key
}

// NewAllocator parses the range (spec.serviceFederation.clusterSetIPRange).
func NewAllocator(cidr string) (*Allocator, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return nil, fmt.Errorf("clusterSetIPRange %q must be an IPv4 CIDR of at least 4 addresses", cidr)
	}
	return &Allocator{prefix: p.Masked(), byKey: map[Key]netip.Addr{}, byIP: map[netip.Addr]Key{}}, nil
}

// Allocate returns the service's IP: the one it holds, else current (what members already
// show, if free and in range), else the first free address from its hash.
func (a *Allocator) Allocate(k Key, current string) (string, error) {
	if ip, ok := a.byKey[k]; ok {
		return ip.String(), nil
	}
	if a.Hold(k, current) {
		return current, nil
	}
	size := uint32(1) << (32 - a.prefix.Bits())
	base := binary.BigEndian.Uint32(a.prefix.Addr().AsSlice())
	sum := sha256.Sum256([]byte(k.String()))
	start := binary.BigEndian.Uint32(sum[:4]) % size
	for i := uint32(0); i < size; i++ {
		off := (start + i) % size
		if off == 0 || off == size-1 {
			continue // network and broadcast addresses
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+off)
		ip := netip.AddrFrom4(b)
		if _, taken := a.byIP[ip]; !taken {
			a.hold(k, ip)
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("clusterSetIPRange %s is exhausted", a.prefix)
}

// Hold gives k the address current (what members already show) if it is in range and not held
// by another service, and tells whether it did; k keeps an address it already holds.
func (a *Allocator) Hold(k Key, current string) bool {
	ip, err := netip.ParseAddr(current)
	if err != nil || !a.prefix.Contains(ip) {
		return false
	}
	if held, ok := a.byKey[k]; ok {
		return held == ip
	}
	if holder, taken := a.byIP[ip]; taken && holder != k {
		return false
	}
	a.hold(k, ip)
	return true
}

// Release frees the service's IP once no member imports it.
func (a *Allocator) Release(k Key) {
	if ip, ok := a.byKey[k]; ok {
		delete(a.byIP, ip)
		delete(a.byKey, k)
	}
}

func (a *Allocator) hold(k Key, ip netip.Addr) {
	a.byKey[k] = ip
	a.byIP[ip] = k
}

// Reconstruct rebuilds a member's export of a service from what another member imports of it:
// the import's spec (type, ports and the other properties the oldest export decided) and the MCS
// slice of that member (its ready endpoints, region and zone, created when its export was first
// federated). An operator that restarts while a member is unreachable has no memory of the
// member's export; this stands in for it for the rest of the grace period. dropLabels and
// dropAnnotations are the keys fleetmesh adds to imports (ownership labels, the applied hash).
func Reconstruct(cluster string, si *mcsv1beta1.ServiceImport, slice *discoveryv1.EndpointSlice, dropLabels, dropAnnotations []string) Export {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{
		Type:                  corev1.ServiceTypeClusterIP,
		SessionAffinity:       si.Spec.SessionAffinity,
		SessionAffinityConfig: si.Spec.SessionAffinityConfig,
		InternalTrafficPolicy: si.Spec.InternalTrafficPolicy,
		TrafficDistribution:   si.Spec.TrafficDistribution,
		IPFamilies:            si.Spec.IPFamilies,
	}}
	if si.Spec.Type == mcsv1beta1.Headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	for _, p := range si.Spec.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port})
	}
	without := func(m map[string]string, keys []string) map[string]string {
		out := maps.Clone(m)
		for _, k := range keys {
			delete(out, k)
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return Export{
		Cluster: cluster, Key: Key{Namespace: si.Namespace, Name: si.Name}, Created: slice.CreationTimestamp.Time,
		Service: svc, ExportedLabels: without(si.Labels, dropLabels), ExportedAnnotations: without(si.Annotations, dropAnnotations),
		Slices: []discoveryv1.EndpointSlice{*slice}, Region: slice.Labels[RegionLabel], Zone: slice.Labels[ZoneLabel], Stale: true,
		// The export's reach, as its slices carry it (sliceFor): an export limited to some
		// members never leaks to another while it is rebuilt.
		ExportTo: ParseExportTo(slice.Annotations),
	}
}
