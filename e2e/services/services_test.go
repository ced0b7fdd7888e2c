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

package services_test

import (
	"context"
	"os"
	"sort"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
	"github.com/fleetmesh/fleetmesh/internal/federation"
)

func TestMain(m *testing.M) {
	sandbox.Enter()
	os.Exit(m.Run())
}

func TestServices(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Service federation e2e suite (local fleet: 1 management + 3 members)")
}

const ns = "demo"

var (
	f       *fleet.Fleet
	ctx     = context.Background()
	a, b, c *fleet.Cluster
)

var _ = BeforeSuite(func() {
	f = fleet.StartMeshSuite(ctx, ns, func(mi *meshv1alpha1.MeshInstallation) {
		mi.Spec.ServiceFederation.EndpointGracePeriod = &metav1.Duration{Duration: 20 * time.Second}
	})
	a, b, c = f.Members[0], f.Members[1], f.Members[2]
})

// echo runs 2 kwok pods behind a Service in a member; the real EndpointSlice controller
// publishes their addresses.
func echo(m *fleet.Cluster, name string, headless bool, ports ...corev1.ServicePort) {
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: "echo:v1"}}},
			},
		},
	}
	Expect(client.IgnoreAlreadyExists(m.Client.Create(ctx, dep))).To(Succeed())
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.ServiceSpec{Selector: labels, Ports: ports}}
	if headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	Expect(m.Client.Create(ctx, svc)).To(Succeed())
}

func tcp(name string, p int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(p)}
}

func exportService(m *fleet.Cluster, name string) {
	Expect(m.Client.Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
}

func unexport(m *fleet.Cluster, name string) {
	Expect(m.Client.Delete(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
}

func deleteService(m *fleet.Cluster, name string) {
	Expect(client.IgnoreNotFound(m.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}))).To(Succeed())
}

func serviceImport(m *fleet.Cluster, name string) func() (*mcsv1beta1.ServiceImport, error) {
	return func() (*mcsv1beta1.ServiceImport, error) {
		si := &mcsv1beta1.ServiceImport{}
		err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, si)
		return si, err
	}
}

func importPorts(si *mcsv1beta1.ServiceImport) []int32 {
	var out []int32
	for _, p := range si.Spec.Ports {
		out = append(out, p.Port)
	}
	return out
}

// sources lists the source clusters of the MCS slices of a service in a member, with their
// endpoint counts.
func sources(m *fleet.Cluster, name string) func() map[string]int {
	return func() map[string]int {
		list := &discoveryv1.EndpointSliceList{}
		Expect(m.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{
			mcsv1beta1.LabelServiceName: name, discoveryv1.LabelManagedBy: federation.ManagedBy,
		})).To(Succeed())
		out := map[string]int{}
		for _, s := range list.Items {
			out[s.Labels[mcsv1beta1.LabelSourceCluster]] = len(s.Endpoints)
		}
		return out
	}
}

func clusterID(m *fleet.Cluster) string { return m.Name + "." + fleet.ClusterNamespace }

func exportCondition(m *fleet.Cluster, name, t string) func() string {
	return func() string {
		se := &mcsv1beta1.ServiceExport{}
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, se); err != nil {
			return err.Error()
		}
		if c := meta.FindStatusCondition(se.Status.Conditions, t); c != nil {
			return string(c.Status) + "/" + c.Reason
		}
		return ""
	}
}

var _ = Describe("exports become imports everywhere", Ordered, func() {
	It("imports a ClusterIP service exported in B into A and C with its ports, clusterset IP and endpoints", func() {
		echo(b, "echo", false, tcp("grpc", 8080))
		exportService(b, "echo")
		var ip string
		for _, m := range []*fleet.Cluster{a, c, b} {
			Eventually(serviceImport(m, "echo")).WithTimeout(30*time.Second).Should(And(
				HaveField("Spec.Type", mcsv1beta1.ClusterSetIP),
				WithTransform(importPorts, Equal([]int32{8080})),
				HaveField("Spec.IPs", HaveLen(1)),
			), m.Name)
			si, _ := serviceImport(m, "echo")()
			if ip == "" {
				ip = si.Spec.IPs[0]
			}
			Expect(si.Spec.IPs[0]).To(Equal(ip), "the clusterset IP is the same in every member")
			Eventually(sources(m, "echo")).Should(Equal(map[string]int{clusterID(b): 2}), m.Name)
		}
		Eventually(exportCondition(b, "echo", "Valid")).Should(Equal("True/Valid"))
		Eventually(exportCondition(b, "echo", "Ready")).Should(Equal("True/Ready"))
		Eventually(exportCondition(b, "echo", "Conflict")).Should(Equal("False/NoConflicts"))
	})

	It("merges ports and sources when C exports the same service with an extra port", func() {
		echo(c, "echo", false, tcp("grpc", 8080), tcp("metrics", 9090))
		exportService(c, "echo")
		for _, m := range f.Members {
			Eventually(serviceImport(m, "echo")).WithTimeout(30*time.Second).Should(
				WithTransform(importPorts, Equal([]int32{8080, 9090})), m.Name)
			Eventually(sources(m, "echo")).Should(Equal(map[string]int{clusterID(b): 2, clusterID(c): 2}), m.Name)
		}
	})

	It("keeps only C's endpoints once B unexports, and removes the import once C does", func() {
		unexport(b, "echo")
		for _, m := range f.Members {
			Eventually(sources(m, "echo")).WithTimeout(30*time.Second).Should(Equal(map[string]int{clusterID(c): 2}), m.Name)
		}
		unexport(c, "echo")
		for _, m := range f.Members {
			Eventually(func() error { _, err := serviceImport(m, "echo")(); return err }).WithTimeout(30*time.Second).
				Should(Satisfy(apierrors.IsNotFound), m.Name)
			Eventually(sources(m, "echo")).Should(BeEmpty(), m.Name)
		}
	})

	DescribeTable("reports a conflict on every involved export and clears it once resolved",
		func(name string, youngHeadless bool, youngPort corev1.ServicePort, reason string) {
			echo(b, name, false, tcp("grpc", 8080))
			exportService(b, name)
			Eventually(serviceImport(a, name)).WithTimeout(30 * time.Second).Should(HaveField("Spec.Type", mcsv1beta1.ClusterSetIP))
			echo(c, name, youngHeadless, youngPort)
			exportService(c, name)
			for _, m := range []*fleet.Cluster{b, c} {
				Eventually(exportCondition(m, name, "Conflict")).WithTimeout(30*time.Second).Should(Equal("True/"+reason), m.Name)
			}
			// The oldest export (B's) defines the import meanwhile.
			Consistently(serviceImport(a, name)).WithTimeout(2 * time.Second).Should(And(
				HaveField("Spec.Type", mcsv1beta1.ClusterSetIP),
				HaveField("Spec.Ports", HaveExactElements(HaveField("Protocol", corev1.ProtocolTCP))),
			))
			// Resolve: C's Service now matches B's.
			deleteService(c, name)
			echo(c, name, false, tcp("grpc", 8080))
			for _, m := range []*fleet.Cluster{b, c} {
				Eventually(exportCondition(m, name, "Conflict")).WithTimeout(30*time.Second).Should(Equal("False/NoConflicts"), m.Name)
			}
			unexport(b, name)
			unexport(c, name)
		},
		Entry("type: headless against ClusterSetIP", "typed", true, tcp("grpc", 8080), "TypeConflict"),
		Entry("port protocol: UDP against TCP", "ported", false, corev1.ServicePort{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolUDP}, "PortConflict"),
	)

	It("marks an export whose Service is missing invalid, imports nothing, and recovers when the Service appears", func() {
		exportService(b, "late")
		Eventually(exportCondition(b, "late", "Valid")).WithTimeout(30 * time.Second).Should(Equal("False/NoService"))
		Consistently(func() error { _, err := serviceImport(a, "late")(); return err }).WithTimeout(2 * time.Second).Should(Satisfy(apierrors.IsNotFound))
		echo(b, "late", false, tcp("grpc", 8080))
		Eventually(exportCondition(b, "late", "Valid")).WithTimeout(30 * time.Second).Should(Equal("True/Valid"))
		Eventually(serviceImport(a, "late")).WithTimeout(30 * time.Second).Should(HaveField("Spec.Type", mcsv1beta1.ClusterSetIP))
	})

	It("counts exports and imports on each MeshCluster", func() {
		Eventually(func(g Gomega) {
			mc := &meshv1alpha1.MeshCluster{}
			g.Expect(f.Management.Client.Get(ctx, client.ObjectKey{Namespace: fleet.ClusterNamespace, Name: b.Name}, mc)).To(Succeed())
			g.Expect(mc.Status.ExportedServices).To(BeEquivalentTo(1))
			g.Expect(mc.Status.ImportedServices).To(BeEquivalentTo(1))
			g.Expect(meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.ServicesSyncedCondition)).To(BeTrue())
		}).WithTimeout(60 * time.Second).Should(Succeed())
		// The operator's /metrics has the imports per member and the export -> import latency.
		Eventually(func() (string, error) { return f.OperatorMetrics(ctx) }).Should(And(
			MatchRegexp(`(?m)^fleetmesh_federation_imported_services\{cluster="[^"]+",installation="[^"]+"\} 1`),
			MatchRegexp(`(?m)^fleetmesh_federation_propagation_seconds_count\{installation="[^"]+"\} [1-9]`),
		))
	})

	It("keeps an unreachable member's endpoints, marked stale, for the grace period, then withdraws them; they return with it", Label("disruptive"), func() {
		Eventually(sources(a, "late")).Should(Equal(map[string]int{clusterID(b): 2}))
		Expect(f.StopAPIServer(b)).To(Succeed())
		staleIn := func(m *fleet.Cluster) func() string {
			return func() string {
				list := &discoveryv1.EndpointSliceList{}
				Expect(m.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{mcsv1beta1.LabelServiceName: "late"})).To(Succeed())
				var out []string
				for _, s := range list.Items {
					out = append(out, s.Labels[mcsv1beta1.LabelSourceCluster]+"="+s.Labels[federation.StaleLabel])
				}
				sort.Strings(out)
				if len(out) == 0 {
					return "none"
				}
				return out[0]
			}
		}
		for _, m := range []*fleet.Cluster{a, c} {
			Eventually(staleIn(m)).WithTimeout(60*time.Second).Should(Equal(clusterID(b)+"=true"), m.Name)
		}
		for _, m := range []*fleet.Cluster{a, c} {
			Eventually(staleIn(m)).WithTimeout(60*time.Second).Should(Equal("none"), "withdrawn after the grace period from %s", m.Name)
		}
		Expect(f.StartAPIServer(b)).To(Succeed())
		for _, m := range []*fleet.Cluster{a, c} {
			Eventually(staleIn(m)).WithTimeout(90*time.Second).Should(Equal(clusterID(b)+"="), "back in %s", m.Name)
		}
	})
})
