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

// Package gateway_test runs a mixed fleet: members A and B share a network, C is on another
// one, behind a router, whose pod addresses are A's own (overlapping CIDRs), so that A and B
// cannot reach C's pods; A's plain HTTP client calls a service only C exports, through C's
// east-west gateway behind its network's load balancer.
package gateway_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/membership"
	"github.com/fleetmesh/fleetmesh/internal/proxy"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestGateway(t *testing.T) {
	fleet.RunSuite(t, "East-west gateway e2e suite (local fleet: A and B on one network, C on another behind its gateway)")
}

const (
	ns      = "demo"
	echoURL = "http://echo.demo.svc.clusterset.local:8080/"
	network = "vpc-2"
)

var (
	f        *fleet.Fleet
	kubelets map[string]*fleet.Kubelet
	ctx      = context.Background()
	a, b, c  *fleet.Cluster
	httpecho string
)

func cluster(m *fleet.Cluster) *clusterv1.Cluster {
	cl := &clusterv1.Cluster{}
	Expect(f.Management.Client.Get(ctx, client.ObjectKey{Namespace: fleet.ClusterNamespace, Name: m.Name}, cl)).To(Succeed())
	return cl
}

var _ = BeforeSuite(func() {
	f, kubelets = fleet.StartSuite(ctx)
	a, b, c = f.Members[0], f.Members[1], f.Members[2]
	// C is on a network of its own, with A's pod addresses, before it runs a pod.
	Expect(kubelets[c.Name].IsolateNetwork(a)).To(Succeed())
	// ... and says so before it joins.
	cl := cluster(c)
	cl.Labels[membership.NetworkLabel] = network
	Expect(f.Management.Client.Update(ctx, cl)).To(Succeed())
	f.MeshUp(ctx, ns, func(mi *meshv1alpha1.MeshInstallation) {
		mi.Spec.ServiceFederation.Networking = meshv1alpha1.NetworkingGateway
	})
	var err error
	httpecho, err = fleet.BuildHTTPEcho(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	Expect(fleet.EnableInjection(ctx, f.Members, ns)).To(Succeed())
})

func get(m *fleet.Cluster, pod, url string) (fleet.HTTPEchoReply, error) {
	return kubelets[m.Name].HTTPEchoGet(ctx, httpecho, ns, pod, url)
}

func meshCluster(m *fleet.Cluster) func() (*meshv1alpha1.MeshCluster, error) {
	return func() (*meshv1alpha1.MeshCluster, error) { return f.MeshCluster(ctx, fleet.ClusterNamespace, m.Name) }
}

func gatewayReady(mc *meshv1alpha1.MeshCluster) string {
	return fleet.ConditionOf(mc.Status.Conditions, meshv1alpha1.GatewayReadyCondition)
}

// gatewayPod is the running pod of a member's gateway.
func gatewayPod(m *fleet.Cluster) (*corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := m.Client.List(ctx, pods, client.InNamespace(install.Namespace), client.MatchingLabels{"app.kubernetes.io/name": install.GatewayName}); err != nil {
		return nil, err
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && p.Status.PodIP != "" && fleet.PodReady(p) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no ready gateway pod in %s yet", m.Name)
}

var _ = Describe("members on separate networks through east-west gateways", Ordered, func() {
	var (
		gw        *corev1.Pod
		clientPod *corev1.Pod // A's, with no fleetmesh code
		lb        string      // the address of C's network's load balancer, which forwards to gw
	)

	AfterEach(func() {
		if !CurrentSpecReport().Failed() {
			return
		}
		fleet.PrintPodLogs(ctx, GinkgoWriter, kubelets, f.Members, ns, "fleetmesh-proxy", "app")
	})

	BeforeAll(func() {
		Expect(fleet.DeployHTTPEcho(ctx, c, ns)).To(Succeed())
		var err error
		clientPod, err = fleet.RunHTTPEchoPod(ctx, a, ns, "client", "client", nil)
		Expect(err).NotTo(HaveOccurred())
	})

	It("installs a gateway in every member, and says which one no other network can reach yet", func() {
		Eventually(meshCluster(c)).WithTimeout(2 * time.Minute).Should(WithTransform(gatewayReady, Equal("False/"+meshv1alpha1.ReasonGatewayNoAddress)))
		mc, err := meshCluster(c)()
		Expect(err).NotTo(HaveOccurred())
		Expect(mc.Spec.Network).To(Equal(network))
		Expect(fleet.ConditionMessageOf(mc.Status.Conditions, meshv1alpha1.GatewayReadyCondition)).To(ContainSubstring(membership.GatewayAddressAnnotation))
		GinkgoWriter.Printf("C's GatewayReady before an address is given: %s\n", fleet.ConditionMessageOf(mc.Status.Conditions, meshv1alpha1.GatewayReadyCondition))
		// Without an address, A's slice of C has no endpoint: nothing points where traffic cannot go.
		Eventually(func() (int, error) {
			s, err := sliceOf(a, c)
			if err != nil {
				return -1, err
			}
			return len(s.Endpoints), nil
		}).Should(BeZero())

		Eventually(func() (err error) { gw, err = gatewayPod(c); return err }).WithTimeout(2 * time.Minute).Should(Succeed())
		lb, err = kubelets[c.Name].ExposeOnNetwork(gw.Namespace, gw.Name)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("C's gateway pod %s is behind its network's load balancer %s\n", gw.Status.PodIP, lb)
		cl := cluster(c)
		if cl.Annotations == nil {
			cl.Annotations = map[string]string{}
		}
		cl.Annotations[membership.GatewayAddressAnnotation] = lb
		Expect(f.Management.Client.Update(ctx, cl)).To(Succeed())
		Eventually(meshCluster(c)).Should(WithTransform(gatewayReady, Equal("True/"+meshv1alpha1.ReasonGatewayReady)))
	})

	It("gives A the gateway of C, not C's pod IPs, in the MCS EndpointSlice", func() {
		Eventually(func() (string, error) {
			s, err := sliceOf(a, c)
			if err != nil || len(s.Endpoints) != 1 || len(s.Ports) == 0 {
				return "", err
			}
			return fmt.Sprintf("%s:%d network=%s weight=%s", s.Endpoints[0].Addresses[0], ptr.Deref(s.Ports[0].Port, 0),
				s.Labels[wire.NetworkLabel], s.Annotations[wire.EndpointWeightAnnotation]), nil
		}).Should(Equal(fmt.Sprintf("%s:%d network=%s weight=1", lb, wire.GatewayPort, network)))
	})

	It("carries a plain HTTP call from A to the service only C exports through C's gateway, mTLS end to end", func() {
		var r fleet.HTTPEchoReply
		Eventually(func() (err error) { r, err = get(a, "client", echoURL); return err }).
			WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
		Expect(r.Member).To(Equal(c.Name))
		tdA, err := f.TrustDomain(ctx, a)
		Expect(err).NotTo(HaveOccurred())
		tdC, err := f.TrustDomain(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		// C's server sidecar terminated the TLS A's sidecar began: it saw A's SVID, which only a
		// gateway that never terminates TLS passes on.
		Expect(r.XFCC()).To(ContainSubstring("URI=spiffe://" + tdA.Name() + "/ns/demo/sa/client"))
		Expect(r.XFCC()).To(ContainSubstring("By=spiffe://" + tdC.Name() + "/ns/demo/sa/echo"))
		GinkgoWriter.Printf("A -> C through C's gateway %s (pod %s): C's sidecar forwarded %s=%q\n", lb, gw.Status.PodIP, proxy.HeaderXFCC, r.XFCC())
	})

	It("has C's pods on addresses of A's own range, which neither side reaches across the networks", func() {
		var echo *corev1.Pod
		Eventually(func() (err error) { echo, err = runningPod(c, "app", "echo"); return err }).Should(Succeed())
		_, aRange, err := net.ParseCIDR(a.LocalPodCIDR())
		Expect(err).NotTo(HaveOccurred())
		Expect(aRange.Contains(net.ParseIP(echo.Status.PodIP))).To(BeTrue(), "C's pod %s overlaps A's pod range %s", echo.Status.PodIP, aRange)
		Expect(aRange.Contains(net.ParseIP(gw.Status.PodIP))).To(BeTrue(), "C's gateway pod %s overlaps A's pod range %s", gw.Status.PodIP, aRange)
		GinkgoWriter.Printf("C's echo pod %s and gateway pod %s are in A's pod range %s\n", echo.Status.PodIP, gw.Status.PodIP, aRange)

		// A dialing C's echo pod's address gets no echo from C: the address is A's own. (A's
		// sidecar takes the connection and finds nothing listening there in A's network; the
		// client then sees a reset or a clean close, depending on timing, but never the echo.)
		reply, err := kubelets[a.Name].ExecOutput(ctx, ns, "client", httpecho, "tcp", net.JoinHostPort(echo.Status.PodIP, fmt.Sprint(fleet.TCPEchoPort)), "hello")
		Expect(reply).NotTo(ContainSubstring("hello"), "A reached %s, C's echo pod's address, and C's echo server answered", echo.Status.PodIP)
		GinkgoWriter.Printf("A -> %s (C's echo pod's address) directly: reply %q, error %v\n", echo.Status.PodIP, reply, err)

		// C dialing A's client pod is dropped where C's network ends (the address is not one
		// of C's own, which C would reach).
		Expect(clientPod.Status.PodIP).NotTo(BeElementOf(echo.Status.PodIP, gw.Status.PodIP))
		before, err := kubelets[c.Name].DroppedLeavingNetwork()
		Expect(err).NotTo(HaveOccurred())
		raw, err := kubelets[c.Name].Exec(ctx, ns, echo.Name, httpecho, "tcp", net.JoinHostPort(clientPod.Status.PodIP, fmt.Sprint(fleet.TCPEchoPort)), "hello")
		Expect(err).NotTo(HaveOccurred())
		out, err := raw.CombinedOutput()
		Expect(err).To(HaveOccurred(), "C reached A's client pod %s: %s", clientPod.Status.PodIP, out)
		after, err := kubelets[c.Name].DroppedLeavingNetwork()
		Expect(err).NotTo(HaveOccurred())
		Expect(after).To(BeNumerically(">", before), "C's network dropped the attempt to reach A's pod")
	})

	It("fails clearly while C's gateway is down, and recovers when it returns", func() {
		kubelets[c.Name].HoldPod(gw.Namespace, gw.Name)
		DeferCleanup(kubelets[c.Name].ReleasePod, gw.Namespace, gw.Name)
		Eventually(func() error { _, err := get(a, "client", echoURL); return err }).WithTimeout(time.Minute).
			Should(MatchError(ContainSubstring("503")))
		kubelets[c.Name].ReleasePod(gw.Namespace, gw.Name)
		Eventually(func() (string, error) { r, err := get(a, "client", echoURL); return r.Member, err }).
			WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal(c.Name))
	})

	It("in a mixed fleet, reaches B on A's network by pod IP and fails over to it while C's gateway is down", func() {
		Expect(fleet.DeployHTTPEcho(ctx, b, ns)).To(Succeed())
		podIP := ""
		Eventually(func() (string, error) {
			pods := &corev1.PodList{}
			if err := b.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "echo"}); err != nil || len(pods.Items) == 0 {
				return "", err
			}
			podIP = pods.Items[0].Status.PodIP
			return podIP, nil
		}).WithTimeout(time.Minute).ShouldNot(BeEmpty())
		Eventually(func() (string, error) {
			s, err := sliceOf(a, b)
			if err != nil || len(s.Endpoints) != 1 {
				return "", err
			}
			return fmt.Sprintf("%s network=%q", s.Endpoints[0].Addresses[0], s.Labels[wire.NetworkLabel]), nil
		}).WithTimeout(time.Minute).Should(Equal(fmt.Sprintf("%s network=%q", podIP, "")), "A reaches B, on its network, by pod IP")
		// C shares A's region and serves first; with its gateway down A's calls go to B.
		Eventually(func() (string, error) { r, err := get(a, "client", echoURL); return r.Member, err }).
			WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal(c.Name))
		kubelets[c.Name].HoldPod(gw.Namespace, gw.Name)
		DeferCleanup(kubelets[c.Name].ReleasePod, gw.Namespace, gw.Name)
		Eventually(func() (string, error) { r, err := get(a, "client", echoURL); return r.Member, err }).
			WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal(b.Name))
		kubelets[c.Name].ReleasePod(gw.Namespace, gw.Name)
		Eventually(func() (string, error) { r, err := get(a, "client", echoURL); return r.Member, err }).
			WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Equal(c.Name))
	})
})

// runningPod is a running pod of member m in the demo namespace with label key=value.
func runningPod(m *fleet.Cluster, key, value string) (*corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := m.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{key: value}); err != nil {
		return nil, err
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && p.Status.PodIP != "" && fleet.PodReady(p) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no ready pod %s=%s in %s yet", key, value, m.Name)
}

// sliceOf is the MCS EndpointSlice member m holds of source's echo export.
func sliceOf(m, source *fleet.Cluster) (*discoveryv1.EndpointSlice, error) {
	list := &discoveryv1.EndpointSliceList{}
	if err := m.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{
		mcsv1beta1.LabelServiceName: "echo", mcsv1beta1.LabelSourceCluster: fleet.ClusterID(source),
	}); err != nil {
		return nil, err
	}
	if len(list.Items) != 1 {
		return nil, fmt.Errorf("%s holds %d slices of %s's echo", m.Name, len(list.Items), source.Name)
	}
	return &list.Items[0], nil
}
