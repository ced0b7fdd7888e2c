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
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
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
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestServices(t *testing.T) {
	fleet.RunSuite(t, "Service federation e2e suite (local fleet: 1 management + 3 members)")
}

const ns = "demo"

var (
	f       *fleet.Fleet
	ctx     = context.Background()
	a, b, c *fleet.Cluster
)

var _ = BeforeSuite(func() {
	f = fleet.StartMeshSuite(ctx, ns, func(mi *meshv1alpha1.MeshInstallation) {
		// Long enough for an operator restart inside it (the disruptive spec).
		mi.Spec.ServiceFederation.EndpointGracePeriod = &meshv1alpha1.Duration{Duration: 45 * time.Second}
	})
	a, b, c = f.Members[0], f.Members[1], f.Members[2]
})

// echo runs 2 kwok pods behind a Service in a member; the real EndpointSlice controller
// publishes their addresses.
func echo(m *fleet.Cluster, name string, headless bool, ports ...corev1.ServicePort) {
	echoWith(m, name, func(s *corev1.Service) {
		if headless {
			s.Spec.ClusterIP = corev1.ClusterIPNone
		}
	}, ports...)
}

// echoWith is echo with the Service edited before it is created.
func echoWith(m *fleet.Cluster, name string, edit func(*corev1.Service), ports ...corev1.ServicePort) {
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
	edit(svc)
	Expect(m.Client.Create(ctx, svc)).To(Succeed())
}

func noEdit(*corev1.Service) {}

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
			mcsv1beta1.LabelServiceName: name, discoveryv1.LabelManagedBy: mcs.ManagedBy,
		})).To(Succeed())
		out := map[string]int{}
		for _, s := range list.Items {
			out[s.Labels[mcsv1beta1.LabelSourceCluster]] = len(s.Endpoints)
		}
		return out
	}
}

func clusterID(m *fleet.Cluster) string { return fleet.ClusterID(m) }

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
	AfterEach(func() {
		if CurrentSpecReport().Failed() {
			f.PrintOperatorLogs(GinkgoWriter, 80)
		}
	})
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
		func(name string, young func(*corev1.Service), youngPort corev1.ServicePort, reason string) {
			echo(b, name, false, tcp("grpc", 8080))
			exportService(b, name)
			Eventually(serviceImport(a, name)).WithTimeout(30 * time.Second).Should(HaveField("Spec.Type", mcsv1beta1.ClusterSetIP))
			echoWith(c, name, young, youngPort)
			exportService(c, name)
			for _, m := range []*fleet.Cluster{b, c} {
				Eventually(exportCondition(m, name, "Conflict")).WithTimeout(30*time.Second).Should(Equal("True/"+reason), m.Name)
			}
			// The oldest export (B's) defines the import meanwhile.
			Consistently(serviceImport(a, name)).WithTimeout(2 * time.Second).Should(And(
				HaveField("Spec.Type", mcsv1beta1.ClusterSetIP),
				HaveField("Spec.SessionAffinity", corev1.ServiceAffinityNone),
				HaveField("Spec.Ports", HaveExactElements(And(HaveField("Protocol", corev1.ProtocolTCP), HaveField("Port", int32(8080))))),
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
		Entry("type: headless against ClusterSetIP", "typed", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }, tcp("grpc", 8080), "TypeConflict"),
		Entry("port protocol: UDP against TCP", "ported", noEdit, corev1.ServicePort{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolUDP}, "PortConflict"),
		Entry("port number: one name, another number", "renumbered", noEdit, tcp("grpc", 8081), "PortConflict"),
		Entry("session affinity: ClientIP against None", "sticky", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }, tcp("grpc", 8080), "SessionAffinityConflict"),
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

	Context("the MCS API as KEP-1645 defines it", kepSpecs)
	Context("clusterset DNS", dnsSpecs)
	Context("clusterset DNS benchmark", dnsBench)

	It("keeps an unreachable member's endpoints, marked stale, for the grace period (across an operator restart), then withdraws them; they return with it", Label("disruptive"), func() {
		Eventually(sources(a, "late")).Should(Equal(map[string]int{clusterID(b): 2}))
		Expect(f.StopAPIServer(b)).To(Succeed())
		staleIn := func(m *fleet.Cluster) func() string {
			return func() string {
				list := &discoveryv1.EndpointSliceList{}
				Expect(m.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{mcsv1beta1.LabelServiceName: "late"})).To(Succeed())
				var out []string
				for _, s := range list.Items {
					out = append(out, s.Labels[mcsv1beta1.LabelSourceCluster]+"="+s.Labels[mcs.StaleLabel])
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
		// The operator restarts while B is away: the new one has no memory of B's export and
		// rebuilds it from what A and C import, so B's endpoints stay for the rest of the grace.
		// And no import's clusterset IP changes: the new operator seeds its allocator with every
		// IP the imports show before it allocates one.
		clusterSetIPs := func() map[string][]string {
			out := map[string][]string{}
			for _, m := range []*fleet.Cluster{a, c} {
				list := &mcsv1beta1.ServiceImportList{}
				Expect(m.Client.List(ctx, list)).To(Succeed())
				for _, si := range list.Items {
					out[m.Name+" "+si.Namespace+"/"+si.Name] = si.Spec.IPs
				}
			}
			return out
		}
		ipsBefore := clusterSetIPs()
		Expect(ipsBefore).NotTo(BeEmpty())
		lease := &coordinationv1.Lease{}
		leaseKey := client.ObjectKey{Namespace: fleet.OperatorNamespace, Name: "fleetmesh-manager.mesh.fleetmesh.io"}
		Expect(f.Management.Client.Get(ctx, leaseKey, lease)).To(Succeed())
		oldLeader := ptr.Deref(lease.Spec.HolderIdentity, "")
		Expect(f.RestartOperator(ctx)).To(Succeed())
		Eventually(func() string {
			l := &coordinationv1.Lease{}
			if err := f.Management.Client.Get(ctx, leaseKey, l); err != nil {
				return oldLeader
			}
			return ptr.Deref(l.Spec.HolderIdentity, "")
		}).WithTimeout(40*time.Second).ShouldNot(Or(Equal(oldLeader), BeEmpty()), "a new operator leads")
		for _, m := range []*fleet.Cluster{a, c} {
			Consistently(staleIn(m)).WithTimeout(4*time.Second).Should(Equal(clusterID(b)+"=true"), "kept across the restart in %s", m.Name)
		}
		Expect(clusterSetIPs()).To(Equal(ipsBefore), "every import keeps its clusterset IP across the restart")
		for _, m := range []*fleet.Cluster{a, c} {
			Eventually(staleIn(m)).WithTimeout(60*time.Second).Should(Equal("none"), "withdrawn after the grace period from %s", m.Name)
		}
		Expect(f.StartAPIServer(b)).To(Succeed())
		for _, m := range []*fleet.Cluster{a, c} {
			Eventually(staleIn(m)).WithTimeout(90*time.Second).Should(Equal(clusterID(b)+"="), "back in %s", m.Name)
		}
	})
})

func udp(name string, p int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(p)}
}

func portKeys(si *mcsv1beta1.ServiceImport) []string {
	var out []string
	for _, p := range si.Spec.Ports {
		out = append(out, fmt.Sprintf("%s/%d/%s", p.Name, p.Port, p.Protocol))
	}
	return out
}

func importClusters(si *mcsv1beta1.ServiceImport) []string {
	var out []string
	for _, c := range si.Status.Clusters {
		out = append(out, c.Cluster)
	}
	return out
}

func editMesh(edit func(*meshv1alpha1.ServiceFederationSpec)) {
	Eventually(func() error {
		mi := &meshv1alpha1.MeshInstallation{}
		if err := f.Management.Client.Get(ctx, client.ObjectKey{Name: fleet.MeshName}, mi); err != nil {
			return err
		}
		edit(&mi.Spec.ServiceFederation)
		return f.Management.Client.Update(ctx, mi)
	}).Should(Succeed())
}

func notImported(m *fleet.Cluster, namespace, name string) func() bool {
	return func() bool {
		err := m.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &mcsv1beta1.ServiceImport{})
		return apierrors.IsNotFound(err)
	}
}

// kepSpecs run inside the suite's ordered container, before its disruptive spec: after a member's
// API server restarts, its informers relist on client-go's backoff (up to 30 s), and a spec
// that then waits on a new export in it would measure that backoff, not federation.
func kepSpecs() {
	It("imports a TCP and a UDP port of one number, session affinity, internalTrafficPolicy and trafficDistribution into every member, listing the exporters", func() {
		edit := func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(300))}}
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
			s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferClose)
		}
		echoWith(b, "resolver", edit, tcp("dns-tcp", 53), udp("dns", 53))
		exportService(b, "resolver")
		matches := func(ports []string, clusters ...string) types.GomegaMatcher {
			return And(
				HaveField("Spec.Type", mcsv1beta1.ClusterSetIP),
				WithTransform(portKeys, Equal(ports)),
				HaveField("Spec.SessionAffinity", corev1.ServiceAffinityClientIP),
				HaveField("Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds", HaveValue(BeEquivalentTo(300))),
				HaveField("Spec.InternalTrafficPolicy", HaveValue(Equal(corev1.ServiceInternalTrafficPolicyLocal))),
				HaveField("Spec.TrafficDistribution", HaveValue(Equal(corev1.ServiceTrafficDistributionPreferClose))),
				HaveField("Spec.IPFamilies", Equal([]corev1.IPFamily{corev1.IPv4Protocol})),
				HaveField("Spec.IPs", HaveLen(1)),
				WithTransform(importClusters, Equal(clusters)),
			)
		}
		for _, m := range f.Members {
			Eventually(serviceImport(m, "resolver")).WithTimeout(30*time.Second).Should(
				matches([]string{"dns-tcp/53/TCP", "dns/53/UDP"}, clusterID(b)), m.Name)
		}
		Eventually(exportCondition(b, "resolver", "Conflict")).Should(Equal("False/NoConflicts"))
		// C exports it too, with an extra port: the union, both exporters, no conflict.
		echoWith(c, "resolver", edit, tcp("dns-tcp", 53), udp("dns", 53), tcp("metrics", 9153))
		exportService(c, "resolver")
		for _, m := range f.Members {
			Eventually(serviceImport(m, "resolver")).WithTimeout(30*time.Second).Should(
				matches([]string{"dns-tcp/53/TCP", "dns/53/UDP", "metrics/9153/TCP"}, clusterID(b), clusterID(c)), m.Name)
		}
		for _, m := range []*fleet.Cluster{b, c} {
			Eventually(exportCondition(m, "resolver", "Conflict")).Should(Equal("False/NoConflicts"), m.Name)
		}
	})

	It("gives a headless export no clusterset IP and refuses an ExternalName export", func() {
		echo(b, "db", true, tcp("pg", 5432))
		exportService(b, "db")
		for _, m := range f.Members {
			Eventually(serviceImport(m, "db")).WithTimeout(30*time.Second).Should(And(
				HaveField("Spec.Type", mcsv1beta1.Headless), HaveField("Spec.IPs", BeEmpty())), m.Name)
		}
		Expect(b.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external", Namespace: ns},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}})).To(Succeed())
		exportService(b, "external")
		Eventually(exportCondition(b, "external", "Valid")).WithTimeout(30 * time.Second).Should(Equal("False/InvalidServiceType"))
		Consistently(notImported(a, ns, "external")).WithTimeout(2 * time.Second).Should(BeTrue())
	})

	It("limits an export to the members its export-to annotation names", func() {
		echo(b, "scoped", false, tcp("http", 8080))
		Expect(b.Client.Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "scoped", Namespace: ns,
			Annotations: map[string]string{mcs.ExportToAnnotation: clusterID(a)}}})).To(Succeed())
		for _, m := range []*fleet.Cluster{a, b} {
			Eventually(sources(m, "scoped")).WithTimeout(30*time.Second).Should(Equal(map[string]int{clusterID(b): 2}), m.Name)
		}
		Consistently(notImported(c, ns, "scoped")).WithTimeout(3 * time.Second).Should(BeTrue())
		Expect(sources(c, "scoped")()).To(BeEmpty())
	})

	It("imports only into namespaces the installation federates, and creates them when asked to", func() {
		const team = "team-x"
		Expect(b.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}})).To(Succeed())
		Expect(b.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: team},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, Ports: []corev1.ServicePort{tcp("http", 8080)}}})).To(Succeed())
		Expect(b.Client.Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: team}})).To(Succeed())
		// Namespace sameness: only B has team-x.
		Eventually(notImported(b, team, "api")).WithTimeout(30 * time.Second).Should(BeFalse())
		Consistently(notImported(a, team, "api")).WithTimeout(2 * time.Second).Should(BeTrue())

		editMesh(func(s *meshv1alpha1.ServiceFederationSpec) { s.CreateNamespaces = true })
		for _, m := range []*fleet.Cluster{a, c} {
			Eventually(notImported(m, team, "api")).WithTimeout(30*time.Second).Should(BeFalse(), "createNamespaces: %s gets team-x and the import", m.Name)
		}

		editMesh(func(s *meshv1alpha1.ServiceFederationSpec) { s.Namespaces = []string{ns} })
		for _, m := range f.Members {
			Eventually(notImported(m, team, "api")).WithTimeout(30*time.Second).Should(BeTrue(), "team-x is not federated: no import in %s", m.Name)
			Expect(notImported(m, ns, "resolver")()).To(BeFalse(), "imports of federated namespaces stay in %s", m.Name)
		}
		editMesh(func(s *meshv1alpha1.ServiceFederationSpec) { s.Namespaces, s.CreateNamespaces = nil, false })
		Eventually(notImported(a, team, "api")).WithTimeout(30 * time.Second).Should(BeFalse())
	})
}

// resolve asks a member's agent, as CoreDNS forwards to it, with a real DNS client over UDP:
// the response code and the answers, sorted.
func resolve(m *fleet.Cluster, name string, qtype uint16) func() (string, error) {
	return func() (string, error) {
		addr, err := fleet.AgentAddress(ctx, m, install.DNSPort)
		if err != nil {
			return "", err
		}
		return resolveAt(addr, name, qtype)()
	}
}

// resolveAt is resolve against one DNS server address.
func resolveAt(addr, name string, qtype uint16) func() (string, error) {
	return func() (string, error) {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, qtype), addr)
		if err != nil {
			return "", err
		}
		var answers []string
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				answers = append(answers, rr.A.String())
			case *dns.SRV:
				answers = append(answers, fmt.Sprintf("%d %s", rr.Port, rr.Target))
			case *dns.TXT:
				answers = append(answers, strings.Join(rr.Txt, ""))
			}
		}
		sort.Strings(answers)
		return strings.TrimSpace(dns.RcodeToString[r.Rcode] + " " + strings.Join(answers, " ")), nil
	}
}

// statefulSet runs a headless Service and a 2-replica StatefulSet of kwok pods behind it.
func statefulSet(m *fleet.Cluster, name string, port corev1.ServicePort) {
	labels := map[string]string{"app": name}
	Expect(m.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels, Ports: []corev1.ServicePort{port}}})).To(Succeed())
	Expect(m.Client.Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: name, Replicas: ptr.To(int32(2)), PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "db:v1"}}},
			},
		},
	})).To(Succeed())
}

func podIP(m *fleet.Cluster, name string) func() string {
	return func() string {
		p := &corev1.Pod{}
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return ""
		}
		return p.Status.PodIP
	}
}

// dnsSpecs: clusterset DNS as the MCS DNS specification defines it, answered by every member's
// agent.
func dnsSpecs() {
	const zone = ".demo.svc.clusterset.local."
	It("resolves a ClusterSetIP import to its clusterset IP and its named ports by SRV in every member, and NXDOMAIN once unexported", func() {
		echo(b, "web", false, tcp("http", 8080))
		exportService(b, "web")
		Eventually(serviceImport(a, "web")).WithTimeout(30 * time.Second).Should(HaveField("Spec.IPs", HaveLen(1)))
		si, _ := serviceImport(a, "web")()
		ip := si.Spec.IPs[0]
		for _, m := range f.Members {
			Eventually(resolve(m, "web"+zone, dns.TypeA)).WithTimeout(20*time.Second).Should(Equal("NOERROR "+ip), m.Name)
			Expect(resolve(m, "_http._tcp.web"+zone, dns.TypeSRV)()).To(Equal("NOERROR 8080 web"+zone), m.Name)
			Expect(resolve(m, "dns-version.clusterset.local.", dns.TypeTXT)()).To(Equal("NOERROR 1.0.0"), m.Name)
			Expect(resolve(m, fleet.ClusterID(b)+".web"+zone, dns.TypeA)()).To(Equal("NXDOMAIN"), "no per-cluster name for a ClusterSetIP service (2.3.4)")
		}
		unexport(b, "web")
		for _, m := range f.Members {
			Eventually(resolve(m, "web"+zone, dns.TypeA)).WithTimeout(30*time.Second).Should(Equal("NXDOMAIN"), m.Name)
		}
	})

	It("resolves a headless StatefulSet exported from two clusters: every ready pod, and each pod by name under its cluster ID", func() {
		for _, m := range []*fleet.Cluster{b, c} {
			statefulSet(m, "ledger", tcp("pg", 5432))
			exportService(m, "ledger")
		}
		var ips []string
		for _, m := range []*fleet.Cluster{b, c} {
			for _, pod := range []string{"ledger-0", "ledger-1"} {
				Eventually(podIP(m, pod)).WithTimeout(30*time.Second).ShouldNot(BeEmpty(), m.Name+"/"+pod)
				ips = append(ips, podIP(m, pod)())
			}
		}
		sort.Strings(ips)
		for _, m := range f.Members {
			Eventually(resolve(m, "ledger"+zone, dns.TypeA)).WithTimeout(30*time.Second).Should(Equal("NOERROR "+strings.Join(ips, " ")), m.Name)
			for _, src := range []*fleet.Cluster{b, c} {
				name := "ledger-0." + fleet.ClusterID(src) + ".ledger" + zone
				Expect(resolve(m, name, dns.TypeA)()).To(Equal("NOERROR "+podIP(src, "ledger-0")()), "%s from %s", name, m.Name)
			}
			Expect(resolve(m, "_pg._tcp.ledger"+zone, dns.TypeSRV)()).To(Equal("NOERROR "+strings.Join([]string{
				"5432 ledger-0." + fleet.ClusterID(b) + ".ledger" + zone, "5432 ledger-0." + fleet.ClusterID(c) + ".ledger" + zone,
				"5432 ledger-1." + fleet.ClusterID(b) + ".ledger" + zone, "5432 ledger-1." + fleet.ClusterID(c) + ".ledger" + zone,
			}, " ")), m.Name)
		}
		unexport(c, "ledger")
		Eventually(resolve(a, "ledger-0."+fleet.ClusterID(c)+".ledger"+zone, dns.TypeA)).WithTimeout(30 * time.Second).Should(Equal("NXDOMAIN"))
		Expect(resolve(a, "ledger-0."+fleet.ClusterID(b)+".ledger"+zone, dns.TypeA)()).To(HavePrefix("NOERROR 10."))
	})
}
