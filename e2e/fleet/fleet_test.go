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
	"os"
	"os/exec"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
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
	f, err := fleet.Start(context.Background(), fleet.Options{Members: 1})
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
		f, err = fleet.Start(ctx, fleet.Options{Members: 3, Regions: []string{"eu", "us"}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			Expect(f.Stop()).To(Succeed())
			Eventually(fleet.RunningClusterProcesses).WithTimeout(30 * time.Second).Should(BeEmpty())
		})
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
})

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
