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
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Converters from the Kubernetes objects an agent watches to Build's inputs. They are pure and
// skip, rather than fail on, what the data plane cannot use.

// LocalService converts one of the member's own Services with its EndpointSlices; slices not
// labelled kubernetes.io/service-name=<name> in its namespace are ignored. An ExternalName
// Service gets no ports (it has no endpoints to serve).
func LocalService(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, m Member) Service {
	s := Service{Namespace: svc.Namespace, Name: svc.Name, Scope: Local}
	s.RequestTimeout, s.InvalidTimeout = requestTimeout(svc.Annotations)
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return s
	}
	for _, ip := range svc.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			s.IPs = append(s.IPs, ip)
		}
	}
	for _, p := range svc.Spec.Ports {
		s.Ports = append(s.Ports, Port{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol), AppProtocol: ptr.Deref(p.AppProtocol, "")})
	}
	for _, es := range eps {
		if es.Namespace == svc.Namespace && es.Labels[discoveryv1.LabelServiceName] == svc.Name {
			s.Endpoints = append(s.Endpoints, EndpointSetFromSlice(es, m.Cluster, m.Region))
		}
	}
	return s
}

// ImportedService converts a ServiceImport with its MCS EndpointSlices: those in its namespace
// labelled multicluster.kubernetes.io/service-name=<name> and with a source-cluster label. The
// source cluster's region is the slice's topology.kubernetes.io/region label (fleetmesh's
// federation sets it), else the member's own for the member's own slices.
func ImportedService(si *mcsv1beta1.ServiceImport, eps []*discoveryv1.EndpointSlice, m Member) Service {
	s := Service{Namespace: si.Namespace, Name: si.Name, Scope: ClusterSet}
	s.RequestTimeout, s.InvalidTimeout = requestTimeout(si.Annotations)
	if si.Spec.Type == mcsv1beta1.ClusterSetIP {
		s.IPs = slices.Clone(si.Spec.IPs)
	}
	for _, p := range si.Spec.Ports {
		s.Ports = append(s.Ports, Port{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol), AppProtocol: ptr.Deref(p.AppProtocol, "")})
	}
	for _, es := range eps {
		cluster := es.Labels[mcsv1beta1.LabelSourceCluster]
		if es.Namespace != si.Namespace || es.Labels[mcsv1beta1.LabelServiceName] != si.Name || cluster == "" {
			continue
		}
		region := es.Labels[corev1.LabelTopologyRegion]
		if region == "" && cluster == m.Cluster {
			region = m.Region
		}
		s.Endpoints = append(s.Endpoints, EndpointSetFromSlice(es, cluster, region))
	}
	return s
}

// requestTimeout reads wire.RequestTimeoutAnnotation (absent: none).
func requestTimeout(annotations map[string]string) (time.Duration, error) {
	v, ok := annotations[wire.RequestTimeoutAnnotation]
	if !ok {
		return 0, nil
	}
	return wire.ParseRequestTimeout(v)
}

// EndpointSetFromSlice converts one EndpointSlice of the given source cluster and region. FQDN
// slices and ports without a number ("all ports") are skipped; an endpoint's zone falls back to
// the slice's topology.kubernetes.io/zone label; unset conditions follow the EndpointSlice API
// (ready unknown is ready, serving unknown is ready, terminating unknown is false). Every
// endpoint takes the slice's wire.EndpointWeightAnnotation as its weight (an unreadable one
// is 1).
func EndpointSetFromSlice(es *discoveryv1.EndpointSlice, cluster, region string) EndpointSet {
	set := EndpointSet{Cluster: cluster, Region: region, Gateway: es.Labels[wire.NetworkLabel] != ""}
	var weight uint32
	if w, err := strconv.ParseUint(es.Annotations[wire.EndpointWeightAnnotation], 10, 32); err == nil && w > 0 {
		weight = uint32(w)
	}
	if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
		return set
	}
	for _, p := range es.Ports {
		if p.Port != nil {
			set.Ports = append(set.Ports, Port{Name: ptr.Deref(p.Name, ""), Port: *p.Port, Protocol: string(ptr.Deref(p.Protocol, corev1.ProtocolTCP))})
		}
	}
	for _, e := range es.Endpoints {
		if len(e.Addresses) == 0 {
			continue
		}
		ready := ptr.Deref(e.Conditions.Ready, true)
		set.Endpoints = append(set.Endpoints, Endpoint{
			Address:     e.Addresses[0], // the API says consumers use the first
			Zone:        ptr.Deref(e.Zone, es.Labels[corev1.LabelTopologyZone]),
			Ready:       ready,
			Serving:     ptr.Deref(e.Conditions.Serving, ready),
			Terminating: ptr.Deref(e.Conditions.Terminating, false),
			Weight:      weight,
		})
	}
	return set
}

// FailoverFromSpec applies FailoverSpec's defaults.
func FailoverFromSpec(s meshv1alpha1.FailoverSpec) Failover {
	f := Failover{ConsecutiveErrors: DefaultConsecutiveErrors, Retries: DefaultRetries,
		Interval: meshv1alpha1.DefaultOutlierInterval, BaseEjectionTime: meshv1alpha1.DefaultBaseEjectionTime}
	if s.ConsecutiveErrors != nil {
		f.ConsecutiveErrors = *s.ConsecutiveErrors
	}
	if s.Retries != nil {
		f.Retries = *s.Retries
	}
	f.Interval = s.Interval.Or(f.Interval)
	f.BaseEjectionTime = s.BaseEjectionTime.Or(f.BaseEjectionTime)
	return f
}

// PolicyFromSpec is the data-plane policy of a MeshInstallation spec.
func PolicyFromSpec(f meshv1alpha1.FailoverSpec, a meshv1alpha1.AuthorizationSpec) Policy {
	return Policy{
		Failover: FailoverFromSpec(f),
		Authorization: Authorization{
			AllowedTrustDomains: slices.Clone(a.AllowedTrustDomains),
			AllowedNamespaces:   slices.Clone(a.AllowedNamespaces),
		},
	}
}
