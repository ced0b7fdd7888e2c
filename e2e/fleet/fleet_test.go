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
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	fleet.RunSuite(t, "Local fleet suite")
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
	// Workload pods run as a kubelet with a CNI runs them: a network namespace each, init
	// containers, native sidecars, several containers sharing the namespace.
	Context("workload pods", Ordered, func() {
		const ns = "apps"
		var (
			kubelets map[string]*fleet.Kubelet
			httpecho string
			podA     *corev1.Pod
		)
		image := "ghcr.io/fleetmesh/e2e-httpecho:test"

		BeforeAll(func() {
			// The pods of "leaves the pods the harness runs itself scheduled but not ready" are not
			// meant to run: no binary stands for their image.
			m := f.Members[0]
			for _, name := range []string{"agent", "workload"} {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name}}
				Expect(client.IgnoreNotFound(m.Client.Delete(ctx, p, client.GracePeriodSeconds(0)))).To(Succeed())
				Eventually(func() error { return m.Client.Get(ctx, client.ObjectKeyFromObject(p), p) }).
					WithTimeout(30 * time.Second).Should(Satisfy(apierrors.IsNotFound))
			}
			images := fleet.FleetmeshBinaries(GinkgoT().TempDir())
			var err error
			httpecho, err = images("ghcr.io/fleetmesh/e2e-httpecho", "test")
			Expect(err).NotTo(HaveOccurred())
			kctx, cancel := context.WithCancel(ctx)
			kubelets = map[string]*fleet.Kubelet{}
			DeferCleanup(func() {
				cancel()
				for _, k := range kubelets {
					Eventually(k.Done()).WithTimeout(60 * time.Second).Should(BeClosed())
				}
			})
			for _, m := range f.Members[:2] {
				k, err := f.StartKubelet(kctx, m, images)
				Expect(err).NotTo(HaveOccurred())
				kubelets[m.Name] = k
				Expect(m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			}
		})

		It("runs the init container, then two containers, in a network namespace of their own", func() {
			m := f.Members[0]
			podA = workloadPod(ns, "a")
			podA.Spec.InitContainers = []corev1.Container{{Name: "init", Image: image, Args: []string{"true"}}}
			podA.Spec.Volumes = []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience: "fleetmesh-test", ExpirationSeconds: ptr.To[int64](1800), Path: "token"}}},
			}}}}
			podA.Spec.Containers = []corev1.Container{
				httpechoContainer("a", image, m.Name, 8080, "--tcp-listen=:9000"),
				httpechoContainer("b", image, m.Name, 8081),
			}
			podA.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "token", MountPath: "/var/run/secrets/tokens"}}
			podA.Spec.Containers[0].Env = append(podA.Spec.Containers[0].Env, corev1.EnvVar{Name: "TOKEN_FILE", Value: "/var/run/secrets/tokens/token"})
			podA.Spec.Containers[1].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1337), RunAsGroup: ptr.To[int64](1337)}
			createPod(ctx, m, podA)
			Eventually(func(g Gomega) {
				g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(podA), podA)).To(Succeed())
				g.Expect(fleet.PodReady(podA)).To(BeTrue())
			}).WithTimeout(60 * time.Second).Should(Succeed())
			_, local, err := net.ParseCIDR(m.LocalPodCIDR())
			Expect(err).NotTo(HaveOccurred())
			Expect(local.Contains(net.ParseIP(podA.Status.PodIP))).To(BeTrue(), podA.Status.PodIP)
			Expect(podA.Status.Phase).To(Equal(corev1.PodRunning))
			Expect(podA.Status.InitContainerStatuses).To(ConsistOf(And(
				HaveField("Name", "init"), HaveField("Ready", true),
				HaveField("State.Terminated", And(Not(BeNil()), HaveField("ExitCode", BeZero()), HaveField("Reason", "Completed"))))))
			Expect(podA.Status.ContainerStatuses).To(ConsistOf(
				And(HaveField("Name", "a"), HaveField("Ready", true), HaveField("State.Running", Not(BeNil()))),
				And(HaveField("Name", "b"), HaveField("Ready", true), HaveField("State.Running", Not(BeNil()))),
			))
			// Its own network namespace, not the sandbox's.
			netns, err := kubelets[m.Name].PodNetns(ns, "a")
			Expect(err).NotTo(HaveOccurred())
			Expect(netnsID(netns)).NotTo(Equal(netnsID("/proc/self/ns/net")))
			// Every container in it, container b as uid 1337.
			for _, st := range podA.Status.ContainerStatuses {
				pid := containerPID(st)
				Expect(netnsID(fmt.Sprintf("/proc/%d/ns/net", pid))).To(Equal(netnsID(netns)), st.Name)
				status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				Expect(err).NotTo(HaveOccurred())
				uid := "0"
				if st.Name == "b" {
					uid = "1337"
				}
				Expect(string(status)).To(MatchRegexp(`(?m)^Uid:\s+%s\s`, uid), st.Name)
			}
		})

		It("shares the pod's network namespace between its containers, and only between them", func() {
			k := kubelets[f.Members[0].Name]
			// Container b's port from inside the pod (where container a is too), on 127.0.0.1.
			out, err := k.ExecOutput(ctx, ns, "a", httpecho, "get", "http://127.0.0.1:8081/hello")
			Expect(err).NotTo(HaveOccurred(), out)
			reply := echoReply(out)
			Expect(reply).To(HaveKeyWithValue("pod", "a"))
			Expect(reply).To(HaveKeyWithValue("path", "/hello"))
			Expect(reply).To(HaveKeyWithValue("remote", HavePrefix("127.0.0.1:")))
			out, err = k.ExecOutput(ctx, ns, "a", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9000; echo ping >&3; head -c 5 <&3")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(Equal("ping\n"))
			// The sandbox's 127.0.0.1 is not the pod's.
			_, err = net.DialTimeout("tcp", "127.0.0.1:8081", time.Second)
			Expect(err).To(HaveOccurred())
			_, err = net.DialTimeout("tcp", "127.0.0.1:8080", time.Second)
			Expect(err).To(HaveOccurred())
			// A process started with Exec sees eth0 with the pod IP and the node as its gateway.
			out, err = k.ExecOutput(ctx, ns, "a", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("inet " + podA.Status.PodIP + "/32"))
			out, err = k.ExecOutput(ctx, ns, "a", "ip", "route", "show", "default")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("default via " + f.Members[0].NodeIP() + " dev eth0"))
		})

		It("routes between pods of different members, and from the node, without translation", func() {
			m2 := f.Members[1]
			podC := workloadPod(ns, "c")
			podC.Spec.Containers = []corev1.Container{httpechoContainer("c", image, m2.Name, 8080)}
			createPod(ctx, m2, podC)
			Eventually(func(g Gomega) {
				g.Expect(m2.Client.Get(ctx, client.ObjectKeyFromObject(podC), podC)).To(Succeed())
				g.Expect(fleet.PodReady(podC)).To(BeTrue())
			}).WithTimeout(60 * time.Second).Should(Succeed())
			Expect(podC.Status.PodIP).NotTo(Equal(podA.Status.PodIP))

			out, err := kubelets[m2.Name].ExecOutput(ctx, ns, "c", httpecho, "get", "http://"+podA.Status.PodIP+":8080/")
			Expect(err).NotTo(HaveOccurred(), out)
			reply := echoReply(out)
			Expect(reply).To(HaveKeyWithValue("member", f.Members[0].Name))
			Expect(reply).To(HaveKeyWithValue("pod", "a"))
			Expect(reply).To(HaveKeyWithValue("remote", HavePrefix(podC.Status.PodIP+":")))
			// Open-loop load from c: one line per request, all answered by a.
			out, err = kubelets[m2.Name].ExecOutput(ctx, ns, "c", httpecho, "load", "--url", "http://"+podA.Status.PodIP+":8080/",
				"--rate", "50/s", "--duration", "1s")
			Expect(err).NotTo(HaveOccurred(), out)
			lines, err := fleet.ParseHTTPEchoLoad(out)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(lines).To(HaveLen(50))
			for _, r := range lines {
				Expect(r).To(And(HaveField("Status", 200), HaveField("Member", f.Members[0].Name), HaveField("Error", "")), "%+v", r)
				Expect(r.AtUnixNano).To(BeNumerically(">", 0))
			}
			// And back: a reaches c.
			out, err = kubelets[f.Members[0].Name].ExecOutput(ctx, ns, "a", httpecho, "get", "http://"+podC.Status.PodIP+":8080/")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(echoReply(out)).To(HaveKeyWithValue("remote", HavePrefix(podA.Status.PodIP+":")))

			// From the sandbox namespace (the node), the source is the node address.
			resp, err := http.Get("http://" + podA.Status.PodIP + ":8080/")
			Expect(err).NotTo(HaveOccurred())
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.Header.Get("X-Fleetmesh-Member")).To(Equal(f.Members[0].Name))
			Expect(echoReply(string(body))).To(HaveKeyWithValue("remote", HavePrefix(f.Members[0].NodeIP()+":")))
		})

		It("gives the containers a bound token and a kubeconfig their user can read", func() {
			k := kubelets[f.Members[0].Name]
			// As uid 1337, the proxy's user: the token of the projected volume...
			out, err := k.ExecOutput(ctx, ns, "a", "bash", "-c", `setpriv --reuid=1337 --regid=1337 --clear-groups cat "$TOKEN_FILE"`)
			Expect(err).NotTo(HaveOccurred(), out)
			parts := strings.Split(out, ".")
			Expect(parts).To(HaveLen(3))
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			Expect(err).NotTo(HaveOccurred())
			var claims struct {
				Aud        []string `json:"aud"`
				Exp, Iat   int64
				Kubernetes struct {
					Pod struct{ Name, UID string } `json:"pod"`
				} `json:"kubernetes.io"`
			}
			Expect(json.Unmarshal(payload, &claims)).To(Succeed())
			Expect(claims.Aud).To(Equal([]string{"fleetmesh-test"}))
			Expect(claims.Kubernetes.Pod.Name).To(Equal("a"))
			Expect(claims.Kubernetes.Pod.UID).To(Equal(string(podA.UID)))
			Expect(claims.Exp - claims.Iat).To(BeNumerically("==", 1800))
			// ... and the kubeconfig, which reaches the API server from the pod's namespace.
			out, err = k.ExecOutput(ctx, ns, "a", "bash", "-c",
				`HOME=/tmp setpriv --reuid=1337 --regid=1337 --clear-groups kubectl auth whoami -o jsonpath='{.status.userInfo.username}'`)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(Equal("system:serviceaccount:" + ns + ":default"))
		})

		It("restarts a container that exits", func() {
			m := f.Members[0]
			Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(podA), podA)).To(Succeed())
			var b corev1.ContainerStatus
			for _, st := range podA.Status.ContainerStatuses {
				if st.Name == "b" {
					b = st
				}
			}
			Expect(syscall.Kill(containerPID(b), syscall.SIGKILL)).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(podA), podA)).To(Succeed())
				g.Expect(fleet.PodReady(podA)).To(BeTrue())
				g.Expect(podA.Status.ContainerStatuses).To(ContainElement(And(HaveField("Name", "b"), HaveField("RestartCount", int32(1)),
					HaveField("LastTerminationState.Terminated", And(Not(BeNil()), HaveField("ExitCode", int32(128+9)))))))
				g.Expect(podA.Status.ContainerStatuses).To(ContainElement(And(HaveField("Name", "a"), HaveField("RestartCount", BeZero()))))
			}).WithTimeout(30 * time.Second).Should(Succeed())
		})

		It("retries a failing init container and starts nothing after it", func() {
			m := f.Members[0]
			pod := workloadPod(ns, "stuck")
			pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: image, Args: []string{"get", "http://127.0.0.1:1/"}}}
			pod.Spec.Containers = []corev1.Container{httpechoContainer("app", image, m.Name, 8080)}
			createPod(ctx, m, pod)
			Eventually(func(g Gomega) {
				g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
				g.Expect(pod.Status.InitContainerStatuses).To(ConsistOf(And(HaveField("RestartCount", BeNumerically(">=", 2)),
					HaveField("LastTerminationState.Terminated", And(Not(BeNil()), HaveField("ExitCode", int32(1)))))))
			}).WithTimeout(30 * time.Second).Should(Succeed())
			Expect(pod.Status.Phase).To(Equal(corev1.PodPending))
			Expect(fleet.PodReady(pod)).To(BeFalse())
			Expect(pod.Status.ContainerStatuses).To(ConsistOf(And(HaveField("State.Waiting.Reason", "PodInitializing"), HaveField("RestartCount", BeZero()))))
			_, err := kubelets[m.Name].Logs(ns, "stuck", "app")
			Expect(err).To(MatchError(os.ErrNotExist), "the app container never ran")
			Expect(m.Client.Delete(ctx, pod)).To(Succeed())
		})

		It("starts a native sidecar first and waits for its startup probe before the app", func() {
			m := f.Members[0]
			pod := workloadPod(ns, "sidecar")
			proxy := httpechoContainer("proxy", image, m.Name, 15021, "--startup-delay=2s")
			proxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
			proxy.StartupProbe, proxy.ReadinessProbe = proxy.ReadinessProbe, nil
			proxy.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1337)}
			pod.Spec.InitContainers = []corev1.Container{proxy}
			pod.Spec.Containers = []corev1.Container{httpechoContainer("app", image, m.Name, 8080)}
			createPod(ctx, m, pod)
			// The sidecar runs, not started yet; the app waits.
			Eventually(func(g Gomega) {
				g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
				g.Expect(pod.Status.InitContainerStatuses).To(ConsistOf(And(HaveField("State.Running", Not(BeNil())), HaveField("Started", HaveValue(BeFalse())))))
				g.Expect(pod.Status.ContainerStatuses).To(ConsistOf(HaveField("State.Waiting.Reason", "PodInitializing")))
			}).WithTimeout(60 * time.Second).Should(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
				g.Expect(fleet.PodReady(pod)).To(BeTrue())
			}).WithTimeout(30 * time.Second).Should(Succeed())
			Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
			Expect(pod.Status.InitContainerStatuses).To(ConsistOf(And(HaveField("State.Running", Not(BeNil())),
				HaveField("Started", HaveValue(BeTrue())), HaveField("Ready", true))))
			// The app started after the sidecar first answered its startup probe, by their own logs.
			k := kubelets[m.Name]
			proxyLog, err := k.Logs(ns, "sidecar", "proxy")
			Expect(err).NotTo(HaveOccurred())
			appLog, err := k.Logs(ns, "sidecar", "app")
			Expect(err).NotTo(HaveOccurred())
			healthy, serving := logTime(proxyLog, "httpecho: healthy"), logTime(appLog, "httpecho: serving HTTP")
			Expect(serving.After(healthy)).To(BeTrue(), "app serving at %s, sidecar healthy at %s", serving, healthy)
		})

		It("removes the pod's network namespace and veth with the pod", func() {
			m := f.Members[0]
			k := kubelets[m.Name]
			netns, err := k.PodNetns(ns, "a")
			Expect(err).NotTo(HaveOccurred())
			veth, err := k.PodVeth(ns, "a")
			Expect(err).NotTo(HaveOccurred())
			Expect(veth).To(Equal(fleet.VethName(podA.Status.PodIP)))
			_, err = net.InterfaceByName(veth)
			Expect(err).NotTo(HaveOccurred())
			Expect(m.Client.Delete(ctx, podA)).To(Succeed())
			Eventually(func() error { return m.Client.Get(ctx, client.ObjectKeyFromObject(podA), &corev1.Pod{}) }).
				WithTimeout(30 * time.Second).Should(Satisfy(apierrors.IsNotFound))
			// The kubelet finishes the deletion only once it has torn the pod down.
			_, err = net.InterfaceByName(veth)
			Expect(err).To(HaveOccurred(), "veth %s still there", veth)
			_, err = os.Stat(netns)
			Expect(err).To(HaveOccurred(), "network namespace %s still held", netns)
			_, err = k.PodNetns(ns, "a")
			Expect(err).To(HaveOccurred())
			_, err = net.DialTimeout("tcp", podA.Status.PodIP+":8080", time.Second)
			Expect(err).To(HaveOccurred())
		})
	})
})

// workloadPod is a pod the harness's kubelet runs as a workload (it is not part of fleetmesh).
func workloadPod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
		Annotations: map[string]string{fleet.RunLocallyAnnotation: "true"}}}
}

// httpechoContainer serves HTTP on port, ready when /healthz answers.
func httpechoContainer(name, image, member string, port int32, extraArgs ...string) corev1.Container {
	return corev1.Container{
		Name: name, Image: image,
		Args: append([]string{fmt.Sprintf("--listen=:%d", port)}, extraArgs...),
		Env: []corev1.EnvVar{
			{Name: "MEMBER", Value: member},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/healthz", Port: intstr.FromInt32(port)}}},
	}
}

// createPod creates a pod once its namespace's default ServiceAccount exists (the
// ServiceAccount admission plugin rejects it before).
func createPod(ctx context.Context, m *fleet.Cluster, pod *corev1.Pod) {
	GinkgoHelper()
	Eventually(func() error { return m.Client.Create(ctx, pod) }).WithTimeout(30 * time.Second).Should(Succeed())
}

// containerPID is the process of a running container (the harness's containerID).
func containerPID(st corev1.ContainerStatus) int {
	GinkgoHelper()
	pid, err := strconv.Atoi(strings.TrimPrefix(st.ContainerID, "harness://"))
	Expect(err).NotTo(HaveOccurred(), st.ContainerID)
	return pid
}

// netnsID identifies a network namespace (net:[inode]).
func netnsID(path string) string {
	GinkgoHelper()
	id, err := os.Readlink(path)
	Expect(err).NotTo(HaveOccurred())
	return id
}

// echoReply decodes httpecho's JSON answer.
func echoReply(body string) map[string]any {
	GinkgoHelper()
	var reply map[string]any
	Expect(json.Unmarshal([]byte(body), &reply)).To(Succeed(), body)
	return reply
}

// logTime is the time at the start of the first log line that contains what.
func logTime(log, what string) time.Time {
	GinkgoHelper()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, what) {
			t, err := time.Parse(time.RFC3339Nano, strings.Fields(line)[0])
			Expect(err).NotTo(HaveOccurred(), line)
			return t
		}
	}
	Fail(fmt.Sprintf("no %q in the log:\n%s", what, log))
	return time.Time{}
}

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
