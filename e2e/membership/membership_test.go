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

package membership_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/argocd"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/inject"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestMembership(t *testing.T) {
	fleet.RunSuite(t, "Membership e2e suite (local fleet: 1 management + 3 members)")
}

var (
	f        *fleet.Fleet
	ctx      = context.Background()
	kubelets map[string]*fleet.Kubelet
)

var _ = BeforeSuite(func() {
	f, kubelets = fleet.StartSuite(ctx)
})

func sample() *meshv1alpha1.MeshInstallation {
	root, err := fleet.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "mesh_v1alpha1_meshinstallation.yaml"))
	Expect(err).NotTo(HaveOccurred())
	mi := &meshv1alpha1.MeshInstallation{}
	Expect(yaml.UnmarshalStrict(data, mi)).To(Succeed())
	return mi
}

func meshCluster(name string) func() (*meshv1alpha1.MeshCluster, error) {
	return func() (*meshv1alpha1.MeshCluster, error) { return f.MeshCluster(ctx, fleet.ClusterNamespace, name) }
}

func condition(t string) func(*meshv1alpha1.MeshCluster) string {
	return func(mc *meshv1alpha1.MeshCluster) string { return fleet.ConditionOf(mc.Status.Conditions, t) }
}

// installedObjects lists what fleetmesh installed in a member (by its labels), CRDs included.
func installedObjects(m *fleet.Cluster) []string {
	var names []string
	sel := client.MatchingLabels{meshv1alpha1.ManagedByLabel: meshv1alpha1.ManagedByValue}
	lists := map[string]client.ObjectList{
		"Deployment": &appsv1.DeploymentList{}, "ConfigMap": &corev1.ConfigMapList{}, "Service": &corev1.ServiceList{},
		"ServiceAccount": &corev1.ServiceAccountList{}, "Role": &rbacv1.RoleList{}, "RoleBinding": &rbacv1.RoleBindingList{},
		"ClusterRole": &rbacv1.ClusterRoleList{}, "ClusterRoleBinding": &rbacv1.ClusterRoleBindingList{},
		"MutatingWebhookConfiguration": &admissionregistrationv1.MutatingWebhookConfigurationList{},
	}
	for kind, list := range lists {
		Expect(m.Client.List(ctx, list, sel)).To(Succeed())
		items, err := meta.ExtractList(list)
		Expect(err).NotTo(HaveOccurred())
		for _, it := range items {
			o := it.(client.Object)
			names = append(names, kind+":"+o.GetNamespace()+"/"+o.GetName())
		}
	}
	ns := &corev1.Namespace{}
	if err := m.Client.Get(ctx, client.ObjectKey{Name: install.Namespace}, ns); err == nil && ns.DeletionTimestamp.IsZero() {
		names = append(names, "Namespace:"+install.Namespace)
	}
	return names
}

var _ = Describe("one MeshInstallation over three Cluster API clusters", Ordered, func() {
	var mi *meshv1alpha1.MeshInstallation

	BeforeAll(func() {
		// member-2 runs CoreDNS as kubeadm sets it up: the operator adds the clusterset.local
		// block and takes it out again at uninstall.
		Expect(f.Members[1].Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: install.CoreDNSNamespace, Name: install.CoreDNSConfigMap},
			Data: map[string]string{install.CorefileKey: kubeadmCorefile}})).To(Succeed())
		mi = sample()
		// As Argo CD syncs it: server-side apply of the file from Git.
		applySampleAsArgoCD()
		Expect(f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), mi)).To(Succeed())
	})

	It("installs and runs the control plane in every member until the mesh is Ready 3/3", func() {
		Eventually(installation(mi)).WithTimeout(90*time.Second).Should(And(
			HaveField("Status.ReadyClusters", BeEquivalentTo(3)),
			HaveField("Status.SelectedClusters", BeEquivalentTo(3)),
			WithTransform(miCondition(meshv1alpha1.ReadyCondition), Equal("True/Reconciled")),
		), fleetStatus)
		got, _ := installation(mi)()
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		for _, m := range f.Members {
			mc, err := meshCluster(m.Name)()
			Expect(err).NotTo(HaveOccurred())
			Expect(condition(meshv1alpha1.ConnectedCondition)(mc)).To(Equal("True/Connected"))
			Expect(condition(meshv1alpha1.ControlPlaneReadyCondition)(mc)).To(Equal("True/AgentReady"))
			Expect(mc.Status.AgentVersion).To(Equal("v0.1.0"))
			Expect(mc.Spec.TrustDomain).To(Equal(m.Name + ".fleet.demo"))
			Expect(mc.Spec.Locality.Region).NotTo(BeEmpty())
			Expect(metav1.IsControlledBy(mc, mi)).To(BeTrue())
			Expect(installedObjects(m)).To(ContainElements(
				"Namespace:fleetmesh-system",
				"Deployment:fleetmesh-system/fleetmesh-agent",
				"ConfigMap:fleetmesh-system/fleetmesh-agent-config",
				"ServiceAccount:fleetmesh-system/fleetmesh-agent",
				"ClusterRole:/fleetmesh-agent-demo",
				"MutatingWebhookConfiguration:/fleetmesh-sidecar-injector",
			))
			Expect(m.Client.Get(ctx, client.ObjectKey{Name: "serviceexports.multicluster.x-k8s.io"}, &apiextensionsv1.CustomResourceDefinition{})).To(Succeed())
			Expect(kubelets[m.Name].Running()).To(Equal(1), "the agent runs as a process in %s", m.Name)
			Expect(clusterProperty(m, install.ClusterIDProperty)).To(Equal(fleet.ClusterID(m)))
			Expect(clusterProperty(m, install.ClusterSetProperty)).To(Equal("demo"))
		}
		Eventually(corefile(f.Members[1])).Should(Equal(kubeadmCorefile + "\n" + install.ClusterSetStanza(agentServiceIP(f.Members[1]))))
	})

	It("keeps the user's spec as Git has it: a second server-side apply changes nothing, no spec field is the operator's", func() {
		before := &meshv1alpha1.MeshInstallation{}
		Expect(f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), before)).To(Succeed())
		applySampleAsArgoCD()
		after := &meshv1alpha1.MeshInstallation{}
		Expect(f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), after)).To(Succeed())
		Expect(after.Generation).To(Equal(before.Generation), "the second apply changed the spec")
		Expect(after.Spec).To(Equal(before.Spec))
		for _, mf := range after.ManagedFields {
			if mf.Manager == argoCDManager || mf.FieldsV1 == nil {
				continue
			}
			Expect(mf.FieldsV1.GetRawString()).NotTo(ContainSubstring(`"f:spec"`), "manager %s owns spec fields", mf.Manager)
		}
		// Argo CD tracks the installation; nothing derived from it carries the tracking marks.
		Expect(after.Labels).To(HaveKey(argoCDTrackingLabel))
		for _, m := range f.Members {
			mc, err := meshCluster(m.Name)()
			Expect(err).NotTo(HaveOccurred())
			dep := &appsv1.Deployment{}
			Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, dep)).To(Succeed())
			for _, o := range []client.Object{mc, dep} {
				Expect(o.GetLabels()).NotTo(HaveKey(argoCDTrackingLabel), "%T %s", o, o.GetName())
				Expect(o.GetAnnotations()).NotTo(HaveKey(argoCDTrackingAnnotation), "%T %s", o, o.GetName())
			}
		}
	})

	It("is Healthy for Argo CD's health checks, on the real status objects", func() {
		Expect(argoHealth("MeshInstallation", func() (client.Object, error) { return installation(mi)() })).To(Equal("Healthy"))
		for _, m := range f.Members {
			Expect(argoHealth("MeshCluster", func() (client.Object, error) { return meshCluster(m.Name)() })).To(Equal("Healthy"), m.Name)
		}
	})

	It("exposes fleetmesh's metrics on the operator's and the agent's /metrics", func() {
		operatorPods := &corev1.PodList{}
		Expect(f.Management.Client.List(ctx, operatorPods, client.InNamespace(fleet.OperatorNamespace))).To(Succeed())
		Expect(operatorPods.Items).NotTo(BeEmpty())
		Expect(scrape(operatorPods.Items[0].Status.PodIP, 8080)).To(And(
			ContainSubstring(`fleetmesh_members{condition="Ready",installation="demo",status="True"} 3`),
			ContainSubstring(`controller_runtime_reconcile_time_seconds_bucket{controller="meshcluster"`),
			ContainSubstring(`fleetmesh_federation_imported_services{`),
		))
		agentPods := &corev1.PodList{}
		Expect(f.Members[0].Client.List(ctx, agentPods, client.InNamespace(install.Namespace))).To(Succeed())
		Expect(agentPods.Items).NotTo(BeEmpty())
		Expect(scrape(agentPods.Items[0].Status.PodIP, install.ProbePort)).To(And(
			ContainSubstring(`fleetmesh_agent_info{version="v0.1.0"} 1`),
			ContainSubstring(`fleetmesh_agent_status_publishes_total{result="ok"}`),
		))
	})

	It("gives the agent what it needs and refuses it what it must not have", func() {
		m := f.Members[0]
		agent := serviceAccountClient(m, install.Namespace, install.AgentName)
		// Needs: cluster-wide reads for xDS and federation, TokenReview for the identity API,
		// its own namespace's Secrets (its CA key).
		Expect(agent.List(ctx, &corev1.ServiceList{})).To(Succeed())
		Expect(agent.List(ctx, &corev1.SecretList{}, client.InNamespace(install.Namespace))).To(Succeed())
		tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "not-a-token"}}
		Expect(agent.Create(ctx, tr)).To(Succeed())
		// Refused: Secrets anywhere else, writes outside its namespace, escalation.
		for _, err := range []error{
			agent.List(ctx, &corev1.SecretList{}, client.InNamespace("default")),
			agent.List(ctx, &corev1.SecretList{}),
			agent.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}),
			agent.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}}),
		} {
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
		}
	})

	It("restores an installed object deleted or edited by hand in a member", func() {
		m := f.Members[0]
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: install.AgentName}}
		Expect(m.Client.Delete(ctx, dep)).To(Succeed())
		cm := &corev1.ConfigMap{}
		Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.ConfigMapName}, cm)).To(Succeed())
		rendered := cm.Data[install.ConfigFileName]
		cm.Data[install.ConfigFileName] = "tampered: true\n"
		Expect(m.Client.Update(ctx, cm)).To(Succeed())

		// The webhook configuration comes back from the operator, its caBundle from the agent.
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: install.WebhookConfigurationName}}
		Expect(m.Client.Delete(ctx, mwc)).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
			g.Expect(dep.DeletionTimestamp.IsZero()).To(BeTrue())
			g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
			g.Expect(cm.Data[install.ConfigFileName]).To(Equal(rendered))
			g.Expect(m.Client.Get(ctx, client.ObjectKeyFromObject(mwc), mwc)).To(Succeed())
			g.Expect(mwc.Webhooks).To(HaveLen(1))
			g.Expect(mwc.Webhooks[0].ClientConfig.CABundle).NotTo(BeEmpty())
		}).WithTimeout(20 * time.Second).Should(Succeed())
		Eventually(installation(mi)).WithTimeout(60 * time.Second).Should(HaveField("Status.ReadyClusters", BeEquivalentTo(3)))
	})

	It("injects the sidecar proxy into pods of namespaces labelled for injection, and never blocks a pod", func() {
		m := f.Members[0]
		const ns = "inject-e2e"
		Expect(m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{inject.InjectLabel: inject.InjectEnabled}}})).To(Succeed())
		// The namespace stays: uninstall (the last spec) must leave no root ConfigMap in it.

		// The agent keeps the webhook's caBundle equal to the member's roots and writes them into
		// the labelled namespace for the proxies to authenticate it.
		Eventually(func(g Gomega) {
			bundle := &corev1.ConfigMap{}
			g.Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.BundleConfigMap}, bundle)).To(Succeed())
			root := &corev1.ConfigMap{}
			g.Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: inject.DefaultRootConfigMap}, root)).To(Succeed())
			g.Expect(root.Data[inject.RootKey]).To(Equal(bundle.Data[wire.BundleKeyDocument]))
			td, err := spiffeid.TrustDomainFromString(bundle.Data[wire.BundleKeyTrustDomain])
			g.Expect(err).NotTo(HaveOccurred())
			b, err := trust.ParseBundle(td, []byte(bundle.Data[wire.BundleKeyDocument]))
			g.Expect(err).NotTo(HaveOccurred())
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			g.Expect(m.Client.Get(ctx, client.ObjectKey{Name: install.WebhookConfigurationName}, mwc)).To(Succeed())
			g.Expect(mwc.Webhooks).To(HaveLen(1))
			g.Expect(mwc.Webhooks[0].ClientConfig.CABundle).To(Equal(trust.EncodeCertificatesPEM(b.X509Authorities())))
			g.Expect(root.OwnerReferences).To(ConsistOf(HaveField("UID", mwc.UID)))
		}).Should(Succeed())

		agentAddr, err := fleet.AgentAddress(ctx, m, install.XDSPort)
		Expect(err).NotTo(HaveOccurred())
		agentIP, _, err := net.SplitHostPort(agentAddr)
		Expect(err).NotTo(HaveOccurred())

		// The namespace's default ServiceAccount comes from the member's controller-manager.
		pod := injectionPod("web")
		Eventually(func() error { return m.Client.Create(ctx, pod) }).Should(Succeed())
		Expect(pod.Labels).To(Equal(map[string]string{"app": "web"}), "injection changes no label")
		Expect(pod.Annotations).To(HaveKeyWithValue(inject.InjectedAnnotation, "ghcr.io/fleetmesh/proxy:v0.1.0"))
		Expect(pod.Spec.InitContainers).To(HaveLen(2))
		ini, proxy := pod.Spec.InitContainers[0], pod.Spec.InitContainers[1]
		Expect(ini.Name).To(Equal(inject.InitContainerName))
		Expect(ini.Image).To(Equal("ghcr.io/fleetmesh/proxy:v0.1.0"))
		// The app's HTTP probe goes to the sidecar, so no app port is left out of the capture.
		Expect(ini.Args).To(Equal([]string{"init", "--proxy-uid=1337", "--outbound-port=15001", "--inbound-port=15006", "--dns-port=15053"}))
		Expect(pod.Spec.Containers[0].ReadinessProbe.HTTPGet.Port.IntValue()).To(Equal(inject.AdminPort))
		Expect(pod.Spec.Containers[0].ReadinessProbe.HTTPGet.Path).To(HavePrefix(inject.AppProbePrefix))
		Expect(ini.SecurityContext.Capabilities.Add).To(ConsistOf(corev1.Capability("NET_ADMIN"), corev1.Capability("NET_RAW")))
		Expect(proxy.Name).To(Equal(inject.ProxyContainerName))
		Expect(proxy.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)), "a native sidecar")
		Expect(proxy.Args).To(Equal([]string{"sidecar",
			"--xds-address=" + agentIP + ":15010", "--identity-address=" + agentIP + ":15012",
			"--trust-domain=" + m.Name + ".fleet.demo", "--cluster-id=" + fleet.ClusterID(m),
			"--trust-file=/var/run/secrets/fleetmesh/root/roots.json", "--token-file=/var/run/secrets/fleetmesh/tokens/token",
			"--work-dir=/var/run/fleetmesh", "--admin-port=15021", "--metrics-port=15090"}))
		Expect(proxy.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(1337)))
		Expect(proxy.StartupProbe.HTTPGet.Path).To(Equal("/healthz/ready"))
		vols := map[string]corev1.Volume{}
		for _, v := range pod.Spec.Volumes {
			vols[v.Name] = v
		}
		Expect(vols).To(HaveKey(inject.TokenVolume))
		Expect(vols[inject.TokenVolume].Projected.Sources[0].ServiceAccountToken).To(And(
			HaveField("Audience", "fleetmesh"), HaveField("Path", "token"), HaveField("ExpirationSeconds", HaveValue(BeEquivalentTo(3600)))))
		Expect(vols[inject.RootVolume].ConfigMap).To(HaveField("Name", inject.DefaultRootConfigMap))
		Expect(vols[inject.WorkVolume].EmptyDir).To(HaveField("Medium", corev1.StorageMediumMemory))

		// Opted out by label (the webhook is not even called) or by annotation.
		byLabel := injectionPod("by-label")
		byLabel.Labels[inject.InjectLabel] = inject.InjectDisabled
		byAnnotation := injectionPod("by-annotation")
		byAnnotation.Annotations = map[string]string{inject.InjectLabel: inject.InjectDisabled}
		for _, p := range []*corev1.Pod{byLabel, byAnnotation} {
			Expect(m.Client.Create(ctx, p)).To(Succeed())
			Expect(p.Spec.InitContainers).To(BeEmpty(), p.Name)
			Expect(p.Annotations).NotTo(HaveKey(inject.InjectedAnnotation), p.Name)
		}

		// The agent down (the operator stopped first, or it would scale the agent straight back):
		// failurePolicy Ignore, the pod is created without a sidecar.
		scaleOperator(0)
		DeferCleanup(func() {
			// The operator back restores the agent's replicas; its status is stale until then, so
			// wait for the agent itself, then for the member to be reported ready again.
			scaleOperator(1)
			Eventually(func() error { _, err := fleet.AgentAddress(ctx, m, install.WebhookPort); return err }).
				WithTimeout(90 * time.Second).Should(Succeed())
			Eventually(meshCluster(m.Name)).WithTimeout(60 * time.Second).Should(
				WithTransform(condition(meshv1alpha1.ReadyCondition), Equal("True/Reconciled")))
		})
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: install.AgentName}}
		Expect(m.Client.Patch(ctx, dep, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":0}}`)))).To(Succeed())
		Eventually(func() error { _, err := fleet.AgentAddress(ctx, m, install.WebhookPort); return err }).
			WithTimeout(60 * time.Second).Should(HaveOccurred())
		Eventually(kubelets[m.Name].Running).WithTimeout(60 * time.Second).Should(BeZero())
		down := injectionPod("agent-down")
		Expect(m.Client.Create(ctx, down)).To(Succeed())
		Expect(down.Spec.InitContainers).To(BeEmpty())
		Expect(down.Annotations).NotTo(HaveKey(inject.InjectedAnnotation))
	})

	It("rolls a control-plane change out to every member, across an operator restart", func() {
		updateInstallation(mi, func(mi *meshv1alpha1.MeshInstallation) {
			mi.Spec.ControlPlane.Replicas = ptrTo(int32(2))
			mi.Spec.ControlPlane.LogLevel = meshv1alpha1.LogLevelDebug
			mi.Spec.ControlPlane.Version = "v0.1.1"
		})
		// Restart the operator in the middle of the rollout: its pod is deleted, the Deployment
		// controller makes a new one, leader election hands over.
		Expect(f.RestartOperator(ctx)).To(Succeed())
		// Argo CD sees the rollout as Progressing on the real objects: the installation while its
		// new generation is not observed or members converge, a member while its agent rolls out.
		Eventually(func() string {
			return argoHealth("MeshInstallation", func() (client.Object, error) { return installation(mi)() })
		}).WithTimeout(60 * time.Second).Should(Equal("Progressing"))
		Eventually(func() []string {
			var health []string
			for _, m := range f.Members {
				health = append(health, argoHealth("MeshCluster", func() (client.Object, error) { return meshCluster(m.Name)() }))
			}
			return health
		}).WithTimeout(120 * time.Second).Should(ContainElement("Progressing"))

		for _, m := range f.Members {
			Eventually(meshCluster(m.Name)).WithTimeout(240*time.Second).Should(And(
				HaveField("Status.AgentVersion", "v0.1.1"),
				WithTransform(condition(meshv1alpha1.ReadyCondition), Equal("True/Reconciled")),
			), m.Name)
			dep := &appsv1.Deployment{}
			Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, dep)).To(Succeed())
			Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
			Expect(dep.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--v=4"))
			Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal("ghcr.io/fleetmesh/agent:v0.1.1"))
		}
		// No duplicate and no orphan: one MeshCluster per member, exactly the rendered objects.
		list := &meshv1alpha1.MeshClusterList{}
		Expect(f.Management.Client.List(ctx, list)).To(Succeed())
		Expect(list.Items).To(HaveLen(3))
		for _, m := range f.Members {
			Expect(installedObjects(m)).To(HaveLen(10), m.Name)
		}
	})

	It("keeps working against a member whose kubeconfig Secret is rotated and the old credential revoked", func() {
		// The operator is connected with the token of the Secret the fleet registered.
		m := f.Members[2]
		next, err := fleet.AdminToken(ctx, m, "capi-admin-rotated")
		Expect(err).NotTo(HaveOccurred())
		kc, err := fleet.KubeconfigWithToken(m, next)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.WriteKubeconfigSecret(ctx, m, kc)).To(Succeed())
		Expect(fleet.RevokeAdminToken(ctx, m, fleet.InitialCredential)).To(Succeed())

		// The operator still restores drift in that member, now necessarily with the new token.
		Expect(m.Client.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: install.ConfigMapName}})).To(Succeed())
		Eventually(func() error {
			return m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.ConfigMapName}, &corev1.ConfigMap{})
		}).WithTimeout(60 * time.Second).Should(Succeed())
		Eventually(meshCluster(m.Name)).WithTimeout(60 * time.Second).Should(
			WithTransform(condition(meshv1alpha1.ReadyCondition), Equal("True/Reconciled")))
	})

	It("uninstalls from a cluster relabelled out, leaves the others alone, and rejoins it", func() {
		leaving, staying := f.Members[1], f.Members[2]
		stayingBefore := installedObjects(staying)
		setLabel(leaving.Name, "false")
		Eventually(func() error { _, err := meshCluster(leaving.Name)(); return err }).WithTimeout(60 * time.Second).
			Should(Satisfy(apierrors.IsNotFound))
		Expect(installedObjects(leaving)).To(BeEmpty())
		Expect(clusterProperty(leaving, install.ClusterIDProperty)).To(BeEmpty())
		Eventually(func() error {
			return leaving.Client.Get(ctx, client.ObjectKey{Name: install.Namespace}, &corev1.Namespace{})
		}).WithTimeout(60*time.Second).Should(Satisfy(apierrors.IsNotFound), "the member's namespace controller finishes the namespace")
		Expect(installedObjects(staying)).To(ConsistOf(stayingBefore))
		Expect(corefile(leaving)()).To(Equal(kubeadmCorefile+"\n"), "the clusterset.local block is taken out, nothing else")
		// CRDs stay: deleting them would delete users' ServiceExports.
		Expect(leaving.Client.Get(ctx, client.ObjectKey{Name: "serviceexports.multicluster.x-k8s.io"}, &apiextensionsv1.CustomResourceDefinition{})).To(Succeed())
		Eventually(installation(mi)).Should(HaveField("Status.SelectedClusters", BeEquivalentTo(2)))

		setLabel(leaving.Name, "true")
		Eventually(meshCluster(leaving.Name)).WithTimeout(90 * time.Second).Should(
			WithTransform(condition(meshv1alpha1.ReadyCondition), Equal("True/Reconciled")))
		Eventually(installation(mi)).WithTimeout(30 * time.Second).Should(HaveField("Status.ReadyClusters", BeEquivalentTo(3)))
		Eventually(corefile(leaving)).Should(ContainSubstring(install.ClusterSetStanza(agentServiceIP(leaving))))
	})

	It("reports a member whose API server is down, keeps converging the others, and heals", Label("disruptive"), func() {
		down := f.Members[0]
		Expect(f.StopAPIServer(down)).To(Succeed())
		// Cluster API's health probe disconnects after 5 failures 10 s apart.
		Eventually(meshCluster(down.Name)).WithTimeout(120 * time.Second).Should(
			WithTransform(condition(meshv1alpha1.ConnectedCondition), Equal("False/Unreachable")))
		Eventually(installation(mi)).WithTimeout(30 * time.Second).Should(
			WithTransform(miConditionMessage(meshv1alpha1.DegradedCondition), ContainSubstring("fleet/"+down.Name)))
		Expect(argoHealth("MeshCluster", func() (client.Object, error) { return meshCluster(down.Name)() })).To(Equal("Degraded"))
		Expect(argoHealth("MeshInstallation", func() (client.Object, error) { return installation(mi)() })).To(Equal("Degraded"))

		updateInstallation(mi, func(mi *meshv1alpha1.MeshInstallation) { mi.Spec.ControlPlane.Replicas = ptrTo(int32(1)) })
		for _, m := range f.Members[1:] {
			Eventually(func(g Gomega) {
				dep := &appsv1.Deployment{}
				g.Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, dep)).To(Succeed())
				g.Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
			}).WithTimeout(30*time.Second).Should(Succeed(), m.Name)
		}

		Expect(f.StartAPIServer(down)).To(Succeed())
		Eventually(func(g Gomega) {
			dep := &appsv1.Deployment{}
			g.Expect(down.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, dep)).To(Succeed())
			g.Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
		}).WithTimeout(120 * time.Second).Should(Succeed())
		// The healed member's agent restarts with the new settings and must be federated again.
		Eventually(installation(mi)).WithTimeout(120 * time.Second).Should(And(
			HaveField("Status.ReadyClusters", BeEquivalentTo(3)),
			WithTransform(miCondition(meshv1alpha1.DegradedCondition), Equal("False/Reconciled")),
		))
	})

	It("cleans every member and removes every MeshCluster when the MeshInstallation is deleted", func() {
		Expect(f.Management.Client.Delete(ctx, mi)).To(Succeed())
		Eventually(func() error {
			return f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), &meshv1alpha1.MeshInstallation{})
		}).WithTimeout(60 * time.Second).Should(Satisfy(apierrors.IsNotFound))
		list := &meshv1alpha1.MeshClusterList{}
		Expect(f.Management.Client.List(ctx, list)).To(Succeed())
		Expect(list.Items).To(BeEmpty())
		for _, m := range f.Members {
			Expect(installedObjects(m)).To(BeEmpty(), m.Name)
			if m == f.Members[1] {
				Expect(corefile(m)()).To(Equal(kubeadmCorefile + "\n"))
			}
			// The agent's root ConfigMaps go with the webhook configuration that owns them.
			Eventually(func() error {
				return m.Client.Get(ctx, client.ObjectKey{Namespace: "inject-e2e", Name: inject.DefaultRootConfigMap}, &corev1.ConfigMap{})
			}).WithTimeout(60*time.Second).Should(Satisfy(apierrors.IsNotFound), m.Name)
			// The member's own garbage collector and namespace controller delete the agent's pods;
			// in a member whose API server was restarted a spec ago, its controller-manager may
			// still be relisting (seen taking over 30 s on a loaded machine).
			Eventually(kubelets[m.Name].Running).WithTimeout(90*time.Second).Should(BeZero(), "the agent process in %s stops", m.Name)
		}
	})
})

// kubeadmCorefile is the Corefile kubeadm writes.
const kubeadmCorefile = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}`

func corefile(m *fleet.Cluster) func() string {
	return func() string {
		cm := &corev1.ConfigMap{}
		Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.CoreDNSNamespace, Name: install.CoreDNSConfigMap}, cm)).To(Succeed())
		return cm.Data[install.CorefileKey]
	}
}

func agentServiceIP(m *fleet.Cluster) string {
	svc := &corev1.Service{}
	Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, svc)).To(Succeed())
	return svc.Spec.ClusterIP
}

const argoCDManager = "argocd-controller"

// argoHealth runs config/argocd's health script of a kind on the object as it is now.
func argoHealth(kind string, get func() (client.Object, error)) string {
	root, err := fleet.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	script, err := argocd.LoadScript(root, kind)
	Expect(err).NotTo(HaveOccurred())
	obj, err := get()
	Expect(err).NotTo(HaveOccurred())
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	Expect(err).NotTo(HaveOccurred())
	status, _, err := argocd.Health(script, u)
	Expect(err).NotTo(HaveOccurred())
	return status
}

// Argo CD's resource tracking: the label (label tracking) and the annotation (annotation
// tracking) it puts on every object it syncs. Objects the operator derives must not copy them, or
// Argo CD would adopt (and prune) them as its own.
const (
	argoCDTrackingLabel      = "app.kubernetes.io/instance"
	argoCDTrackingAnnotation = "argocd.argoproj.io/tracking-id"
)

// applySampleAsArgoCD server-side applies config/samples' MeshInstallation, as Argo CD syncs it
// (with its tracking label and annotation).
func applySampleAsArgoCD() {
	root, err := fleet.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "mesh_v1alpha1_meshinstallation.yaml"))
	Expect(err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal(data, &u.Object)).To(Succeed())
	u.SetLabels(map[string]string{argoCDTrackingLabel: "fleetmesh"})
	u.SetAnnotations(map[string]string{argoCDTrackingAnnotation: "fleetmesh:mesh.fleetmesh.io/MeshInstallation:/" + u.GetName()})
	Expect(f.Management.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(argoCDManager))).To(Succeed())
}

// scrape reads a /metrics endpoint of a process the harness runs (inside the sandbox).
func scrape(ip string, port int) string {
	var body string
	Eventually(func() (err error) {
		body, err = fleet.Scrape(ip, port)
		return err
	}).Should(Succeed())
	return body
}

// fleetStatus describes every MeshCluster's conditions, for failure messages.
func fleetStatus() string {
	list := &meshv1alpha1.MeshClusterList{}
	if err := f.Management.Client.List(ctx, list); err != nil {
		return err.Error()
	}
	out := ""
	for _, mc := range list.Items {
		out += mc.Name + ":"
		for _, c := range mc.Status.Conditions {
			out += fmt.Sprintf(" %s=%s/%s (%s);", c.Type, c.Status, c.Reason, c.Message)
		}
		out += "\n"
	}
	return out
}

// updateInstallation changes the user's object as a person would, retrying on conflicts with
// the operator's status writes.
func updateInstallation(mi *meshv1alpha1.MeshInstallation, mutate func(*meshv1alpha1.MeshInstallation)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), mi); err != nil {
			return err
		}
		mutate(mi)
		return f.Management.Client.Update(ctx, mi)
	})).To(Succeed())
}

func installation(mi *meshv1alpha1.MeshInstallation) func() (*meshv1alpha1.MeshInstallation, error) {
	return func() (*meshv1alpha1.MeshInstallation, error) {
		got := &meshv1alpha1.MeshInstallation{}
		err := f.Management.Client.Get(ctx, client.ObjectKeyFromObject(mi), got)
		return got, err
	}
}

func miCondition(t string) func(*meshv1alpha1.MeshInstallation) string {
	return func(mi *meshv1alpha1.MeshInstallation) string { return fleet.ConditionOf(mi.Status.Conditions, t) }
}

func miConditionMessage(t string) func(*meshv1alpha1.MeshInstallation) string {
	return func(mi *meshv1alpha1.MeshInstallation) string {
		return fleet.ConditionMessageOf(mi.Status.Conditions, t)
	}
}

// serviceAccountClient is a client of the member authenticated as a ServiceAccount (TokenRequest).
func serviceAccountClient(m *fleet.Cluster, namespace, name string) client.Client {
	cs, err := kubernetes.NewForConfig(m.Config)
	Expect(err).NotTo(HaveOccurred())
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	cfg := rest.AnonymousClientConfig(m.Config)
	cfg.BearerToken = tr.Status.Token
	c, err := client.New(cfg, client.Options{Scheme: f.Scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// clusterProperty reads a KEP-2149 ClusterProperty's value in a member ("" when absent).
func clusterProperty(m *fleet.Cluster, name string) string {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(install.ClusterPropertyGroup + "/v1alpha1")
	u.SetKind("ClusterProperty")
	if err := m.Client.Get(ctx, client.ObjectKey{Name: name}, u); err != nil {
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "get ClusterProperty %s: %v", name, err)
		return ""
	}
	v, _, _ := unstructured.NestedString(u.Object, "spec", "value")
	return v
}

func setLabel(cluster, value string) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &clusterv1.Cluster{}
		if err := f.Management.Client.Get(ctx, client.ObjectKey{Namespace: fleet.ClusterNamespace, Name: cluster}, c); err != nil {
			return err
		}
		c.Labels[fleet.MemberLabel] = value
		return f.Management.Client.Update(ctx, c)
	})).To(Succeed())
}

func ptrTo[T any](v T) *T { return &v }

// injectionPod is an ordinary workload for the injection specs, with a readiness probe whose
// port the capture rules must leave alone. kwok runs it: nothing of it needs to run.
func injectionPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "inject-e2e", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "web:1",
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}},
		}}},
	}
}

// scaleOperator sets the operator Deployment's replicas and waits until that many operator
// processes run.
func scaleOperator(replicas int) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.OperatorNamespace, Name: "fleetmesh-controller-manager"}}
	Expect(f.Management.Client.Patch(ctx, dep, client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)))).To(Succeed())
	Eventually(kubelets[f.Management.Name].Running).WithTimeout(60 * time.Second).Should(Equal(replicas))
}
