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
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func slice(name string, labels map[string]string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: name, Labels: labels},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](9000)}, {Name: ptr.To("any")}},
		Endpoints:   eps,
	}
}

func TestLocalService(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo"},
		Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.10"}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
	own := map[string]string{discoveryv1.LabelServiceName: "echo"}
	eps := []*discoveryv1.EndpointSlice{
		slice("echo-1", own,
			discoveryv1.Endpoint{Addresses: []string{"10.244.0.1"}, Zone: ptr.To("z2")}, // conditions unknown: ready
			discoveryv1.Endpoint{Addresses: []string{"10.244.0.2"}, Conditions: discoveryv1.EndpointConditions{
				Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
			discoveryv1.Endpoint{}), // no address: skipped
		slice("other", map[string]string{discoveryv1.LabelServiceName: "other"}),
		slice("mcs", map[string]string{mcsv1beta1.LabelServiceName: "echo", mcsv1beta1.LabelSourceCluster: "b"}),
	}
	got := LocalService(svc, eps, memberA)
	if got.Scope != Local || got.Namespace != "demo" || got.Name != "echo" || !slices.Equal(got.IPs, []string{"10.96.0.10"}) {
		t.Errorf("service %+v", got)
	}
	if want := []Port{{Name: "grpc", Port: 8080, Protocol: "TCP"}, {Name: "dns", Port: 53, Protocol: "UDP"}}; !slices.Equal(got.Ports, want) {
		t.Errorf("ports %v, want %v", got.Ports, want)
	}
	if len(got.Endpoints) != 1 {
		t.Fatalf("want only the service's own slice, got %d", len(got.Endpoints))
	}
	set := got.Endpoints[0]
	if set.Cluster != "a" || set.Region != "r1" || !slices.Equal(set.Ports, []Port{{Name: "grpc", Port: 9000, Protocol: "TCP"}}) {
		t.Errorf("set %+v", set)
	}
	want := []Endpoint{
		{Address: "10.244.0.1", Zone: "z2", Ready: true, Serving: true},
		{Address: "10.244.0.2", Serving: true, Terminating: true},
	}
	if !slices.Equal(set.Endpoints, want) {
		t.Errorf("endpoints %+v, want %+v", set.Endpoints, want)
	}

	headless := svc.DeepCopy()
	headless.Spec.ClusterIP, headless.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	if got := LocalService(headless, eps, memberA); len(got.IPs) != 0 {
		t.Errorf("headless service has IPs %v", got.IPs)
	}
	external := svc.DeepCopy()
	external.Spec.Type = corev1.ServiceTypeExternalName
	if got := LocalService(external, eps, memberA); len(got.Ports) != 0 {
		t.Errorf("ExternalName service has ports %v", got.Ports)
	}
}

func TestImportedService(t *testing.T) {
	si := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo"},
		Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, IPs: []string{"241.0.0.7"},
			Ports: []mcsv1beta1.ServicePort{{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolTCP}}},
	}
	mcs := func(cluster, region string) map[string]string {
		l := map[string]string{mcsv1beta1.LabelServiceName: "echo", mcsv1beta1.LabelSourceCluster: cluster}
		if region != "" {
			l[corev1.LabelTopologyRegion] = region
		}
		return l
	}
	ep := discoveryv1.Endpoint{Addresses: []string{"10.244.1.1"}}
	eps := []*discoveryv1.EndpointSlice{
		slice("a", mcs("a", ""), ep),
		slice("b", mcs("b", "r2"), ep),
		slice("local", map[string]string{discoveryv1.LabelServiceName: "echo"}, ep), // not MCS
	}
	eps[1].Labels[corev1.LabelTopologyZone] = "r2-z3"
	// b is on another network: its slice is its gateway, standing for 4 endpoints.
	eps[1].Annotations = map[string]string{wire.EndpointWeightAnnotation: "4"}
	eps[1].Labels[wire.NetworkLabel] = "vpc-2"
	got := ImportedService(si, eps, memberA)
	if got.Scope != ClusterSet || !slices.Equal(got.IPs, []string{"241.0.0.7"}) || len(got.Endpoints) != 2 {
		t.Fatalf("service %+v", got)
	}
	if a, b := got.Endpoints[0], got.Endpoints[1]; a.Cluster != "a" || a.Region != "r1" || b.Cluster != "b" || b.Region != "r2" || b.Endpoints[0].Zone != "r2-z3" ||
		a.Endpoints[0].Weight != 0 || b.Endpoints[0].Weight != 4 || a.Gateway || !b.Gateway {
		t.Errorf("sets %+v", got.Endpoints)
	}
	si.Spec.Type = mcsv1beta1.Headless
	if got := ImportedService(si, eps, memberA); len(got.IPs) != 0 {
		t.Errorf("headless import has IPs %v", got.IPs)
	}

	// And the result builds.
	in := input(got, LocalService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 8080}}}}, eps, memberA))
	mustBuild(t, in)
}

func TestFQDNSlice(t *testing.T) {
	s := slice("x", nil, discoveryv1.Endpoint{Addresses: []string{"pod.example"}})
	s.AddressType = discoveryv1.AddressTypeFQDN
	if got := EndpointSetFromSlice(s, "a", "r1"); len(got.Endpoints) != 0 {
		t.Errorf("FQDN endpoints kept: %v", got.Endpoints)
	}
}

func TestPolicyFromSpec(t *testing.T) {
	got := PolicyFromSpec(meshv1alpha1.FailoverSpec{}, meshv1alpha1.AuthorizationSpec{AllowedNamespaces: []string{"demo"}})
	want := Failover{ConsecutiveErrors: 2, Interval: time.Second, BaseEjectionTime: 15 * time.Second, Retries: 2}
	if got.Failover != want || !slices.Equal(got.Authorization.AllowedNamespaces, []string{"demo"}) {
		t.Errorf("defaults: %+v", got)
	}
	set := meshv1alpha1.FailoverSpec{ConsecutiveErrors: ptr.To[int32](5), Retries: ptr.To[int32](0),
		Interval: &meshv1alpha1.Duration{Duration: 3 * time.Second}, BaseEjectionTime: &meshv1alpha1.Duration{Duration: time.Minute}}
	if got, want := FailoverFromSpec(set), (Failover{ConsecutiveErrors: 5, Interval: 3 * time.Second, BaseEjectionTime: time.Minute}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
