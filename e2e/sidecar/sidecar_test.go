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

package sidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/inject"
	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestSidecar(t *testing.T) {
	fleet.RunSuite(t, "Sidecar e2e suite (local fleet: 1 management + 3 members, plain HTTP and TCP workloads with injected proxies)")
}

const (
	ns       = "demo"
	httpPort = fleet.HTTPEchoPort
	tcpPort  = fleet.TCPEchoPort
	echoURL  = "http://echo.demo.svc.clusterset.local:8080/"
)

var (
	f        *fleet.Fleet
	kubelets map[string]*fleet.Kubelet
	ctx      = context.Background()
	a, b, c  *fleet.Cluster
	httpecho string
)

var _ = BeforeSuite(func() {
	f, kubelets = fleet.StartSuite(ctx)
	f.MeshUp(ctx, ns, nil)
	a, b, c = f.Members[0], f.Members[1], f.Members[2]
	var err error
	httpecho, err = fleet.BuildHTTPEcho(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	Expect(fleet.EnableInjection(ctx, f.Members, ns)).To(Succeed())
})

func scaleEcho(m *fleet.Cluster, replicas int32) {
	dep := &appsv1.Deployment{}
	Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "echo"}, dep)).To(Succeed())
	dep.Spec.Replicas = ptr.To(replicas)
	Expect(m.Client.Update(ctx, dep)).To(Succeed())
}

func runPod(m *fleet.Cluster, name, sa string, podLabels map[string]string) *corev1.Pod {
	pod, err := fleet.RunHTTPEchoPod(ctx, m, ns, name, sa, podLabels)
	Expect(err).NotTo(HaveOccurred())
	return pod
}

// execIn runs httpecho in a pod of m (as uid 0: the pod's capture applies) and returns stdout.
func execIn(m *fleet.Cluster, pod string, args ...string) (string, error) {
	return kubelets[m.Name].ExecOutput(ctx, ns, pod, append([]string{httpecho}, args...)...)
}

func get(m *fleet.Cluster, pod, url string) (fleet.HTTPEchoReply, error) {
	return kubelets[m.Name].HTTPEchoGet(ctx, httpecho, ns, pod, url)
}

func tdOf(m *fleet.Cluster) spiffeid.TrustDomain {
	td, err := f.TrustDomain(ctx, m)
	Expect(err).NotTo(HaveOccurred())
	return td
}

var _ = Describe("plain HTTP and TCP workloads across members through injected sidecars", Ordered, func() {
	var clientPod *corev1.Pod

	AfterEach(func() {
		if !CurrentSpecReport().Failed() {
			return
		}
		fleet.PrintPodLogs(ctx, GinkgoWriter, kubelets, f.Members, ns, "fleetmesh-init", "fleetmesh-proxy", "app")
	})

	BeforeAll(func() {
		Expect(fleet.DeployHTTPEcho(ctx, b, ns)).To(Succeed())
		Expect(fleet.DeployHTTPEcho(ctx, c, ns)).To(Succeed())
		clientPod = runPod(a, "client", "client", nil)
	})

	It("injects the init container and the native sidecar", func() {
		Expect(clientPod.Annotations).To(HaveKey(inject.InjectedAnnotation))
		Expect(clientPod.Spec.InitContainers).To(HaveLen(2))
		Expect(clientPod.Spec.InitContainers[0].Name).To(Equal("fleetmesh-init"))
		Expect(clientPod.Spec.InitContainers[0].Args[0]).To(Equal("init"))
		sidecar := clientPod.Spec.InitContainers[1]
		Expect(sidecar.Name).To(Equal("fleetmesh-proxy"))
		Expect(sidecar.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(*sidecar.SecurityContext.RunAsUser).To(BeEquivalentTo(1337))
	})

	It("calls http://echo.demo.svc.clusterset.local:8080/ from a plain HTTP client in A, with mTLS: the server side sees A's SPIFFE ID", func() {
		var r fleet.HTTPEchoReply
		Eventually(func() (err error) { r, err = get(a, "client", echoURL); return err }).
			WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
		Expect(r.Member).To(BeElementOf(b.Name, c.Name))
		want := "URI=spiffe://" + tdOf(a).Name() + "/ns/demo/sa/client"
		Expect(r.XFCC()).To(ContainSubstring(want))
		Expect(r.XFCC()).To(ContainSubstring("By=spiffe://" + map[string]string{b.Name: tdOf(b).Name(), c.Name: tdOf(c).Name()}[r.Member] + "/ns/demo/sa/echo"))
		GinkgoWriter.Printf("A -> %s: the server sidecar forwarded %s=%q\n", r.Member, proxy.HeaderXFCC, r.XFCC())
		// And the client side: A's sidecar counts the request under the server identity it
		// verified (its golden metrics' destination labels).
		server := "spiffe://" + map[string]string{b.Name: tdOf(b).Name(), c.Name: tdOf(c).Name()}[r.Member] + "/ns/demo/sa/echo"
		Eventually(func() ([]string, error) {
			out, err := fleet.Scrape(clientPod.Status.PodIP, inject.MetricsPort)
			return fleet.VerifiedServers(out, "echo.demo.svc.clusterset.local"), err
		}).Should(ContainElement(server))
		GinkgoWriter.Printf("A's sidecar verified the server as %s\n", server)
	})

	It("calls one of B's pods by its own address (as a headless service's records give it) with mTLS to that pod", func() {
		pods := &corev1.PodList{}
		Expect(b.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "echo"})).To(Succeed())
		Expect(pods.Items).NotTo(BeEmpty())
		url := "http://" + net.JoinHostPort(pods.Items[0].Status.PodIP, fmt.Sprint(httpPort)) + "/"
		var r fleet.HTTPEchoReply
		Eventually(func() (err error) { r, err = get(a, "client", url); return err }).
			WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		Expect(r.Member).To(Equal(b.Name), "the pod dialled, never another")
		Expect(r.XFCC()).To(ContainSubstring("URI=spiffe://" + tdOf(a).Name() + "/ns/demo/sa/client"))
		GinkgoWriter.Printf("A -> %s's pod %s: the server sidecar forwarded %s=%q\n", b.Name, pods.Items[0].Status.PodIP, proxy.HeaderXFCC, r.XFCC())
	})

	It("carries raw TCP to the clusterset IP", func() {
		si := &mcsv1beta1.ServiceImport{}
		Expect(a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "echo"}, si)).To(Succeed())
		Expect(si.Spec.IPs).NotTo(BeEmpty())
		addr := net.JoinHostPort(si.Spec.IPs[0], fmt.Sprint(tcpPort))
		Eventually(func() (string, error) { return execIn(a, "client", "tcp", addr, "hello over the mesh") }).
			WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("hello over the mesh"))
	})

	It("refuses plaintext and an unfederated SVID at the server's pod", func() {
		pods := &corev1.PodList{}
		Expect(b.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "echo"})).To(Succeed())
		Expect(pods.Items).NotTo(BeEmpty())
		addr := net.JoinHostPort(pods.Items[0].Status.PodIP, fmt.Sprint(httpPort))
		// From the node (the sandbox namespace), as a pod without a sidecar would call it.
		_, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + addr + "/")
		Expect(err).To(HaveOccurred(), "plaintext to an injected pod's port is refused: the traffic between pods is mTLS only")
		rogue, _, err := fleet.UnfederatedSVID(ns, "client")
		Expect(err).NotTo(HaveOccurred())
		cert := tls.Certificate{PrivateKey: rogue.PrivateKey}
		for _, c := range rogue.Certificates {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		// The rogue client does not care who the server is: only the server's verdict counts.
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr,
			&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"fleetmesh-h2"}}) //nolint:gosec // see above
		if err == nil {
			// TLS 1.3: the server's refusal of our certificate arrives with the first read.
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			if err == nil {
				_, err = bufio.NewReader(conn).ReadByte()
			}
			_ = conn.Close()
		}
		Expect(err).To(HaveOccurred(), "an SVID of an unfederated trust domain is refused")
	})

	It("refuses a federated caller whose trust domain, or namespace, the authorization policy leaves out, and serves it again once allowed", func() {
		setAuthorization := func(authz meshv1alpha1.AuthorizationSpec) {
			Eventually(func() error {
				mi := &meshv1alpha1.MeshInstallation{}
				if err := f.Management.Client.Get(ctx, client.ObjectKey{Name: fleet.MeshName}, mi); err != nil {
					return err
				}
				mi.Spec.Authorization = authz
				return f.Management.Client.Update(ctx, mi)
			}).Should(Succeed())
		}
		call := func() error { _, err := get(a, "client", echoURL); return err }
		// What the exporters' server sidecars counted as refused by the policy, from A.
		deniedFromA := func() (float64, error) {
			var total float64
			for _, m := range []*fleet.Cluster{b, c} {
				pods := &corev1.PodList{}
				if err := m.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "echo"}); err != nil {
					return 0, err
				}
				for _, p := range pods.Items {
					out, err := fleet.Scrape(p.Status.PodIP, inject.MetricsPort)
					if err != nil {
						return 0, err
					}
					total += fleet.SeriesSum(out, "fleetmesh_proxy_inbound_denied_total", "source_trust_domain", tdOf(a).Name())
				}
			}
			return total, nil
		}
		before, err := deniedFromA()
		Expect(err).NotTo(HaveOccurred())
		setAuthorization(meshv1alpha1.AuthorizationSpec{AllowedTrustDomains: []string{tdOf(b).Name(), tdOf(c).Name()}})
		Eventually(call).WithTimeout(time.Minute).WithPolling(time.Second).Should(HaveOccurred(), "A's trust domain is left out")
		Eventually(deniedFromA).Should(BeNumerically(">", before), "refused by the servers' policy")
		setAuthorization(meshv1alpha1.AuthorizationSpec{})
		Eventually(call).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed(), "allowed again")
		before, err = deniedFromA()
		Expect(err).NotTo(HaveOccurred())
		setAuthorization(meshv1alpha1.AuthorizationSpec{AllowedNamespaces: []string{"shop"}})
		Eventually(call).WithTimeout(time.Minute).WithPolling(time.Second).Should(HaveOccurred(), "A's namespace demo is left out")
		Eventually(deniedFromA).Should(BeNumerically(">", before), "refused by the servers' policy")
		setAuthorization(meshv1alpha1.AuthorizationSpec{})
		Eventually(call).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed(), "allowed again")
	})

	It("bounds each request by the timeout the export's exportedAnnotations give the service, and lifts it when removed", func() {
		setTimeout := func(v string) {
			for _, m := range []*fleet.Cluster{b, c} {
				Eventually(func() error {
					se := &mcsv1beta1.ServiceExport{}
					if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "echo"}, se); err != nil {
						return err
					}
					se.Spec.ExportedAnnotations = map[string]string{}
					if v != "" {
						se.Spec.ExportedAnnotations[wire.RequestTimeoutAnnotation] = v
					}
					return m.Client.Update(ctx, se)
				}).Should(Succeed())
			}
		}
		slow := echoURL + "?delay=1500ms"
		call := func(url string) func() error { return func() error { _, err := get(a, "client", url); return err } }
		Expect(call(slow)()).To(Succeed(), "no timeout yet: a slow answer arrives")
		setTimeout("500ms")
		Eventually(call(slow)).WithTimeout(time.Minute).WithPolling(time.Second).Should(
			MatchError(ContainSubstring("504")), "A's sidecar gives up after 500ms: 504")
		Expect(call(echoURL+"?delay=50ms")()).To(Succeed(), "a request within the timeout")
		setTimeout("")
		Eventually(call(slow)).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed(), "no timeout again")
	})

	It("fails over to the other exporter with no failed request when the serving one stops, and comes back", func() {
		// C shares A's region (priority 1), B does not (priority 2): C serves first.
		Eventually(func() (string, error) { r, err := get(a, "client", echoURL); return r.Member, err }).
			WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Equal(c.Name))
		cmd, err := kubelets[a.Name].Exec(ctx, ns, "client", httpecho, "load", "--url", echoURL, "--rate", "50/s", "--duration", "25s")
		Expect(err).NotTo(HaveOccurred())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, GinkgoWriter
		Expect(cmd.Start()).To(Succeed())
		time.Sleep(3 * time.Second) // let the load run against C first: part of the scenario, not synchronisation
		killed := time.Now()
		scaleEcho(c, 0)
		Eventually(func() int {
			pods := &corev1.PodList{}
			Expect(c.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "echo"})).To(Succeed())
			return len(pods.Items)
		}).WithTimeout(time.Minute).Should(BeZero())
		time.Sleep(5 * time.Second) // B alone serves for a while: part of the scenario
		scaleEcho(c, 1)
		Expect(cmd.Wait()).To(Succeed())
		failed, byMember, firstRemote := 0, map[string]int{}, time.Duration(0)
		results, err := fleet.ParseHTTPEchoLoad(out.String())
		Expect(err).NotTo(HaveOccurred())
		for _, r := range results {
			if r.Status != http.StatusOK {
				failed++
				GinkgoWriter.Printf("failed request: %+v\n", r)
				continue
			}
			byMember[r.Member]++
			at := time.Unix(0, r.AtUnixNano)
			if r.Member == b.Name && at.After(killed) && firstRemote == 0 {
				firstRemote = at.Sub(killed)
			}
		}
		GinkgoWriter.Printf("failover %s -> %s: answers %v, failed %d, first answer from %s %s after the scale-down\n", c.Name, b.Name, byMember, failed, b.Name, firstRemote)
		AddReportEntry("sidecar failover", fmt.Sprintf("answers %v, failed %d", byMember, failed))
		Expect(failed).To(BeZero())
		Expect(byMember[b.Name]).To(BeNumerically(">", 0))
		// The client's sidecar after carrying the run: a real process, its RSS as the kernel counts it.
		pod := &corev1.Pod{}
		Expect(a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "client"}, pod)).To(Succeed())
		for _, st := range pod.Status.InitContainerStatuses {
			if st.Name != inject.ProxyContainerName {
				continue
			}
			status, err := os.ReadFile("/proc/" + strings.TrimPrefix(st.ContainerID, "harness://") + "/status")
			Expect(err).NotTo(HaveOccurred())
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
					GinkgoWriter.Printf("client sidecar %s\n", line)
					AddReportEntry("client sidecar memory", line)
				}
			}
		}
		// C is back: calls return to it.
		Eventually(func() (string, error) { r, err := get(a, "client", echoURL); return r.Member, err }).
			WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(Equal(c.Name))
	})

	It("leaves a pod without injection working directly", func() {
		optOut := map[string]string{inject.InjectLabel: inject.InjectDisabled}
		server := runPod(a, "plain-server", "echo", optOut)
		Expect(server.Spec.InitContainers).To(BeEmpty())
		plain := runPod(a, "plain-client", "client", optOut)
		Expect(plain.Spec.InitContainers).To(BeEmpty())
		r, err := get(a, "plain-client", "http://"+net.JoinHostPort(server.Status.PodIP, fmt.Sprint(httpPort))+"/")
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Member).To(Equal(a.Name))
		Expect(r.XFCC()).To(BeEmpty())
	})
})
