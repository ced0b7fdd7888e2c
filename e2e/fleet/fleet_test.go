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

package fleet_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	capikubeconfig "sigs.k8s.io/cluster-api/util/kubeconfig"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
)

const crashEnv = "FLEET_TEST_CRASH"

func TestMain(m *testing.M) {
	sandbox.Enter()
	if os.Getenv(crashEnv) == "1" {
		crashWithRunningFleet()
	}
	os.Exit(m.Run())
}

// crashWithRunningFleet starts a fleet and dies without stopping it, as a failed or killed test
// run would.
func crashWithRunningFleet() {
	f, err := fleet.Start(context.Background(), fleet.Options{Members: 1, Full: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(2)
	}
	_ = f
	fmt.Printf("started %d cluster processes\n", len(fleet.RunningClusterProcesses()))
	os.Exit(3)
}

func TestFleet(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Local fleet suite")
}

var _ = Describe("a fleet of one management cluster and three members", Ordered, func() {
	var f *fleet.Fleet
	ctx := context.Background()

	BeforeAll(func() {
		var err error
		started := time.Now()
		f, err = fleet.Start(ctx, fleet.Options{Members: 3, Regions: []string{"eu", "us"}, Full: true,
			// FLEET_TEST_WORKDIR keeps the components' logs after the run.
			WorkDir: os.Getenv("FLEET_TEST_WORKDIR")})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("fleet started in %s\n", time.Since(started).Round(time.Millisecond))
		for _, c := range append([]*fleet.Cluster{f.Management}, f.Members...) {
			GinkgoWriter.Printf("  %s started in %s\n", c.Name, c.StartedIn.Round(time.Millisecond))
		}
		DeferCleanup(func() {
			Expect(f.Stop()).To(Succeed())
			Eventually(fleet.RunningClusterProcesses).WithTimeout(30 * time.Second).Should(BeEmpty())
		})
	})

	AfterEach(func() {
		if CurrentSpecReport().Failed() && f != nil {
			for _, m := range f.Members[:1] {
				logs, _ := filepath.Glob(filepath.Join(f.LogDir(m), "*.log"))
				for _, l := range logs {
					out, _ := exec.Command("tail", "-n", "15", l).CombinedOutput()
					GinkgoWriter.Printf("==> %s <==\n%s\n", l, out)
				}
			}
		}
	})

	It("registers every member as a provisioned Cluster API Cluster", func() {
		for _, m := range f.Members {
			c := &clusterv1.Cluster{}
			Expect(f.Management.Client.Get(ctx, client.ObjectKey{Namespace: fleet.ClusterNamespace, Name: m.Name}, c)).To(Succeed())
			Expect(c.Labels).To(HaveKeyWithValue(fleet.MemberLabel, "true"))
			Expect(c.Labels).To(HaveKey(fleet.RegionLabel))
			Expect(c.Status.Initialization.InfrastructureProvisioned).To(HaveValue(BeTrue()))
		}
	})

	It("reaches every member through its Cluster API kubeconfig Secret", func() {
		for _, m := range f.Members {
			data, err := capikubeconfig.FromSecret(ctx, f.Management.Client, client.ObjectKey{Namespace: fleet.ClusterNamespace, Name: m.Name})
			Expect(err).NotTo(HaveOccurred())
			cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
			Expect(err).NotTo(HaveOccurred())
			c, err := client.New(cfg, client.Options{Scheme: f.Scheme})
			Expect(err).NotTo(HaveOccurred())
			// Write through one member, read back through the fleet's own client of that member:
			// the Secret leads to that member and no other.
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hello-" + m.Name}}
			Expect(c.Create(ctx, ns)).To(Succeed())
			Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(ns), &corev1.Namespace{})).To(Succeed())
			for _, other := range f.Members {
				if other != m {
					err := other.Client.Get(ctx, client.ObjectKeyFromObject(ns), &corev1.Namespace{})
					Expect(client.IgnoreNotFound(err)).To(Succeed())
					Expect(err).To(HaveOccurred(), "namespace %s leaked into %s", ns.Name, other.Name)
				}
			}
		}
	})

	It("writes one kubeconfig with a context per cluster", func() {
		cfg, err := clientcmd.LoadFromFile(f.KubeconfigPath)
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Contexts).To(HaveLen(4))
		Expect(cfg.Contexts).To(HaveKey(fleet.ManagementName))
		for _, m := range f.Members {
			Expect(cfg.Contexts).To(HaveKey(m.Name))
		}
		out, err := exec.Command("kubectl", "--kubeconfig", f.KubeconfigPath, "--context", "member-2",
			"get", "namespace", "hello-member-2", "-o", "name").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(Equal("namespace/hello-member-2\n"))
	})

	It("serves the fleetmesh, Cluster API and cert-manager CRDs in management", func() {
		for _, list := range []client.ObjectList{&clusterv1.ClusterList{}} {
			Expect(f.Management.Client.List(ctx, list)).To(Succeed())
		}
		out, err := exec.Command("kubectl", "--kubeconfig", f.KubeconfigPath, "api-resources", "-o", "name").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(And(
			ContainSubstring("meshinstallations.mesh.fleetmesh.io"),
			ContainSubstring("meshclusters.mesh.fleetmesh.io"),
			ContainSubstring("clusterissuers.cert-manager.io"),
			ContainSubstring("certificaterequests.cert-manager.io"),
		))
	})

	It("rolls a Deployment out to ready endpoints in a member", func() {
		m := f.Members[0]
		Expect(m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}})).To(Succeed())
		labels := map[string]string{"app": "web"}
		Expect(m.Client.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](3),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "web", Image: "registry.invalid/web:1",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					}}},
				},
			},
		})).To(Succeed())
		Expect(m.Client.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
			Spec: corev1.ServiceSpec{
				Selector: labels,
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		})).To(Succeed())
		Eventually(readyEndpoints).WithArguments(ctx, m, "web", "web").WithTimeout(60 * time.Second).
			Should(HaveLen(3))
		ips, err := readyEndpoints(ctx, m, "web", "web")
		Expect(err).NotTo(HaveOccurred())
		_, fakePods, err := net.ParseCIDR(m.FakePodCIDR())
		Expect(err).NotTo(HaveOccurred())
		for _, ip := range ips {
			Expect(fakePods.Contains(net.ParseIP(ip))).To(BeTrue(), "%s in %s", ip, fakePods)
			Expect(ip).NotTo(Equal(m.NodeIP()))
		}
	})

	It("leaves the pods the harness runs itself scheduled but not ready", func() {
		m := f.Members[0]
		pods := []*corev1.Pod{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "agent",
				Labels: map[string]string{fleet.PartOfLabel: fleet.PartOfValue}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "workload",
				Annotations: map[string]string{fleet.RunLocallyAnnotation: "true"}}},
		}
		for _, p := range pods {
			p.Spec.Containers = []corev1.Container{{Name: "main", Image: "registry.invalid/main:1"}}
			Expect(m.Client.Create(ctx, p)).To(Succeed())
		}
		for _, p := range pods {
			Eventually(func(g Gomega) {
				g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
				g.Expect(p.Spec.NodeName).To(Equal(m.NodeName()))
			}).WithTimeout(30 * time.Second).Should(Succeed())
			// The ServiceAccount admission plugin is on, as in a real cluster.
			Expect(p.Spec.Volumes).To(ContainElement(HaveField("Name", HavePrefix("kube-api-access-"))), p.Name)
		}
		Consistently(func(g Gomega) {
			for _, p := range pods {
				g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
				g.Expect(p.Status.PodIP).To(BeEmpty(), p.Name)
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady {
						g.Expect(c.Status).NotTo(Equal(corev1.ConditionTrue), p.Name)
					}
				}
			}
		}).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})

	It("stops and restarts a member's API server behind the same kubeconfig", func() {
		m := f.Members[0]
		cfg, err := clientcmd.RESTConfigFromKubeConfig(m.Kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		c, err := client.New(cfg, client.Options{Scheme: f.Scheme})
		Expect(err).NotTo(HaveOccurred())
		web := client.ObjectKey{Namespace: "web", Name: "web"}
		Expect(c.Get(ctx, web, &appsv1.Deployment{})).To(Succeed())

		restarts := f.APIServerRestarts(m)
		stopped := time.Now()
		Expect(f.StopAPIServer(m)).To(Succeed())
		GinkgoWriter.Printf("API server of %s stopped in %s\n", m.Name, time.Since(stopped).Round(time.Millisecond))
		Expect(c.Get(ctx, web, &appsv1.Deployment{})).NotTo(Succeed())
		Expect(f.Members[1].Client.Get(ctx, client.ObjectKey{Name: "default"}, &corev1.Namespace{})).To(Succeed(),
			"only the stopped member is down")

		started := time.Now()
		Expect(f.StartAPIServer(m)).To(Succeed())
		GinkgoWriter.Printf("API server of %s restarted in %s\n", m.Name, time.Since(started).Round(time.Millisecond))
		Expect(c.Get(ctx, web, &appsv1.Deployment{})).To(Succeed())
		Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: "web", Name: "agent"}, &corev1.Pod{})).To(Succeed())
		Expect(f.APIServerRestarts(m)).To(Equal(restarts), "a stop by StopAPIServer is not a crash for the watchdog")

		// The controller-manager, the scheduler and kwok reconnected: a scale-up rolls out.
		scaled := time.Now()
		d := &appsv1.Deployment{}
		Expect(c.Get(ctx, web, d)).To(Succeed())
		d.Spec.Replicas = ptr.To[int32](4)
		Expect(c.Update(ctx, d)).To(Succeed())
		Eventually(readyEndpoints).WithArguments(ctx, m, "web", "web").WithTimeout(90 * time.Second).
			Should(HaveLen(4))
		GinkgoWriter.Printf("scale-up after the restart ready in %s\n", time.Since(scaled).Round(time.Millisecond))
	})

	It("restarts a member's API server that crashed", func() {
		m := f.Members[1]
		before := f.APIServerRestarts(m)
		Expect(f.KillAPIServer(m)).To(Succeed())
		Eventually(f.APIServerRestarts).WithArguments(m).WithTimeout(90 * time.Second).Should(Equal(before + 1))
		Expect(m.Client.Get(ctx, client.ObjectKey{Name: "default"}, &corev1.Namespace{})).To(Succeed())
	})
})

// readyEndpoints are the addresses of the ready endpoints of a Service, from its EndpointSlices.
func readyEndpoints(ctx context.Context, m *fleet.Cluster, namespace, service string) ([]string, error) {
	slices := &discoveryv1.EndpointSliceList{}
	if err := m.Client.List(ctx, slices, client.InNamespace(namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return nil, err
	}
	var ips []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	return ips, nil
}

var _ = Describe("a test run that dies with its fleet running", func() {
	It("leaves no cluster process behind", func() {
		self, err := os.Executable()
		Expect(err).NotTo(HaveOccurred())
		cmd := exec.Command(self, "-test.run=^$")
		// A nested sandbox: the child is the first process of its own PID namespace.
		env := []string{crashEnv + "=1"}
		for _, kv := range os.Environ() {
			if !bytes.HasPrefix([]byte(kv), []byte("FLEETMESH_SANDBOX")) {
				env = append(env, kv)
			}
		}
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(cmd.ProcessState.ExitCode()).To(Equal(3), string(out))
		Expect(string(out)).To(MatchRegexp(`started [1-9][0-9]* cluster processes`))
		Eventually(fleet.RunningClusterProcesses).WithTimeout(10 * time.Second).Should(BeEmpty())
	})
})
