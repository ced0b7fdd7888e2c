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

// Package hardening_test is the e2e suite of what a mistaken or hostile hand must not break: a
// swapped or broken kubeconfig Secret, hand-made and hand-edited MeshClusters, a Cluster that
// collides with a member's trust domain, the Secrets the operator may read, a deleted CA Secret
// and a CA rotation that unreachable members stall.
package hardening_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestHardening(t *testing.T) {
	fleet.RunSuite(t, "Hardening e2e suite (local fleet: 1 management + 3 members)")
}

var (
	f   *fleet.Fleet
	ctx = context.Background()
)

// The template leaves the namespace out, so a Cluster of another namespace can collide with a
// member's trust domain.
const template = "{cluster}.{mesh}"

// webhookCertSecret is where the operator keeps its webhook's CA (config/default).
const webhookCertSecret = "fleetmesh-webhook-server-cert"

var _ = BeforeSuite(func() {
	f, _ = fleet.StartSuite(ctx)
	// Cluster API labels its CA Secret like the kubeconfig: the operator must never read it.
	for _, m := range f.Members {
		Expect(f.Management.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleet.ClusterNamespace, Name: m.Name + "-ca",
				Labels: map[string]string{clusterv1.ClusterNameLabel: m.Name}},
			Type: clusterv1.ClusterSecretType,
			Data: map[string][]byte{"tls.key": []byte("not a real key, but a secret all the same")},
		})).To(Succeed())
	}
	_, err := f.InstallMesh(ctx, func(mi *meshv1alpha1.MeshInstallation) { mi.Spec.Trust.TrustDomainTemplate = template }, 2*time.Minute)
	Expect(err).NotTo(HaveOccurred())
})

func meshCluster(name string) func() (*meshv1alpha1.MeshCluster, error) {
	return func() (*meshv1alpha1.MeshCluster, error) { return f.MeshCluster(ctx, fleet.ClusterNamespace, name) }
}

func condition(t string) func(*meshv1alpha1.MeshCluster) string {
	return func(mc *meshv1alpha1.MeshCluster) string { return fleet.ConditionOf(mc.Status.Conditions, t) }
}

func conditionMessage(t string) func(*meshv1alpha1.MeshCluster) string {
	return func(mc *meshv1alpha1.MeshCluster) string { return fleet.ConditionMessageOf(mc.Status.Conditions, t) }
}

func installation() (*meshv1alpha1.MeshInstallation, error) {
	mi := &meshv1alpha1.MeshInstallation{}
	err := f.Management.Client.Get(ctx, client.ObjectKey{Name: fleet.MeshName}, mi)
	return mi, err
}

// agentRunning: the member's agent Deployment exists and is not being deleted.
func agentRunning(m *fleet.Cluster) func() error {
	return func() error {
		dep := &appsv1.Deployment{}
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, dep); err != nil {
			return err
		}
		if !dep.DeletionTimestamp.IsZero() {
			return apierrors.NewResourceExpired("agent Deployment is being deleted")
		}
		return nil
	}
}

func clusterID(m *fleet.Cluster) func() string {
	return func() string {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("about.k8s.io/v1alpha1")
		u.SetKind("ClusterProperty")
		if err := m.Client.Get(ctx, client.ObjectKey{Name: install.ClusterIDProperty}, u); err != nil {
			return err.Error()
		}
		v, _, _ := unstructured.NestedString(u.Object, "spec", "value")
		return v
	}
}

// operatorPods names the operator's pods that are not being deleted, with their UIDs and
// container restarts: a restarted (or crashed) operator changes it.
func operatorPods() ([]string, error) {
	pods := &corev1.PodList{}
	if err := f.Management.Client.List(ctx, pods, client.InNamespace(fleet.OperatorNamespace)); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		restarts := int32(0)
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		out = append(out, fmt.Sprintf("%s (uid %s, %d restarts)", p.Name, p.UID, restarts))
	}
	return out, nil
}

func allReady() {
	Eventually(installation).WithTimeout(3 * time.Minute).Should(
		HaveField("Status.ReadyClusters", BeEquivalentTo(len(f.Members))))
}

var _ = Describe("a mesh under mistaken and hostile hands", Ordered, func() {
	It("reads no Secret but the members' kubeconfig Secrets, each by a GET of its name, and its webhook's CA Secret", func() {
		allReady()
		var accesses []fleet.SecretAccess
		Eventually(func() ([]fleet.SecretAccess, error) {
			var err error
			accesses, err = f.SecretAccesses("system:serviceaccount:" + fleet.OperatorNamespace + ":")
			return accesses, err
		}).ShouldNot(BeEmpty(), "the audit log shows the operator reading the kubeconfig Secrets")
		for _, a := range accesses {
			if a.Namespace == fleet.OperatorNamespace && a.Name == webhookCertSecret {
				// The CA of its webhook's serving certificate (config/webhook-cert): read and,
				// when it holds none, written, by name.
				Expect(a.Verb).To(BeElementOf("get", "update"), a.String())
				continue
			}
			Expect(a.Verb).To(Equal("get"), "%s: no list or watch of Secrets (nothing is cached)", a)
			Expect(a.Namespace).To(Equal(fleet.ClusterNamespace), a.String())
			Expect(a.Name).To(HaveSuffix("-kubeconfig"), "%s: only kubeconfig Secrets, never Cluster API's CA Secrets", a)
		}
	})

	It("refuses at admission, through the operator's webhook, what CEL cannot check in federatesWith", func() {
		entry := meshv1alpha1.FederatedTrustDomain{
			TrustDomain: "spire.example.org", BundleEndpointURL: "https://spire.example.org/bundle",
			EndpointSPIFFEID: "spiffe://spire.example.org/spire/server", Bundle: `{"keys": oops}`,
		}
		federating := func(entry meshv1alpha1.FederatedTrustDomain) func() error {
			return func() error {
				mi, err := installation()
				if err != nil {
					return err
				}
				mi.Spec.Trust.FederatesWith = []meshv1alpha1.FederatedTrustDomain{entry}
				return f.Management.Client.Update(ctx, mi, client.DryRunAll)
			}
		}
		// Shaped like a bundle document, so CEL lets it through; the webhook parses it.
		Eventually(federating(entry)).Should(And(Satisfy(apierrors.IsInvalid),
			MatchError(ContainSubstring("spec.trust.federatesWith[0].bundle: Invalid value: not a SPIFFE bundle document")),
			MatchError(ContainSubstring("invalid character 'o' looking for beginning of value"))))
		// A member's trust domain, from the Clusters the installation selects.
		member := f.Members[0].Name + "." + fleet.MeshName
		doc, err := fleet.BundleDocument(member)
		Expect(err).NotTo(HaveOccurred())
		entry.TrustDomain, entry.EndpointSPIFFEID, entry.Bundle = member, "spiffe://"+member+"/spire/server", doc
		// Eventually: a status write between the read and the dry-run update is a conflict.
		Eventually(federating(entry)).Should(And(Satisfy(apierrors.IsInvalid),
			MatchError(ContainSubstring(`spec.trust.federatesWith[0].trustDomain: Invalid value: "`+member+`": a member's trust domain`))))
	})

	It("refuses at admission a MeshCluster made by hand and a hand edit of a MeshCluster's spec", func() {
		m := f.Members[0]
		handMade := func() *meshv1alpha1.MeshCluster {
			return &meshv1alpha1.MeshCluster{
				ObjectMeta: metav1.ObjectMeta{Namespace: fleet.ClusterNamespace, Name: "hand-made"},
				Spec: meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: m.Name},
					Installation: fleet.MeshName, TrustDomain: "hand-made.mesh"},
			}
		}
		// config/default's ValidatingAdmissionPolicy lets only the operator's ServiceAccount
		// create MeshClusters or change their spec (the harness user is a cluster admin).
		Eventually(func() error { return f.Management.Client.Create(ctx, handMade(), client.DryRunAll) }).Should(
			And(Satisfy(apierrors.IsForbidden), MatchError(ContainSubstring("select the Cluster instead of creating a MeshCluster"))))
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mc, err := meshCluster(m.Name)()
			if err != nil {
				return err
			}
			mc.Spec.Locality.Zone = "hand-edited"
			return f.Management.Client.Update(ctx, mc)
		})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec of MeshCluster " + m.Name + " is decided by the fleetmesh operator"))
		// Every operator-owned field, the gateway address (from the Cluster's annotation) too.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mc, err := meshCluster(m.Name)()
			if err != nil {
				return err
			}
			mc.Spec.GatewayAddress = "192.0.2.7"
			return f.Management.Client.Update(ctx, mc, client.DryRunAll)
		})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a hand-set gatewayAddress: got %v", err)
		// Labels and annotations stay the users'.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mc, err := meshCluster(m.Name)()
			if err != nil {
				return err
			}
			mc.Annotations = map[string]string{"team": "platform"}
			return f.Management.Client.Update(ctx, mc)
		})).To(Succeed())

		// OperatorHub installs cannot ship the policy: the specs below run without it, as there,
		// and show that the operator itself ignores or reverts what the policy would refuse.
		Expect(f.Management.Client.Delete(ctx, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "fleetmesh-meshcluster-operator-only"}})).To(Succeed())
		Eventually(func() error { return f.Management.Client.Create(ctx, handMade(), client.DryRunAll) }).Should(Succeed())
	})

	It("reverts a hand edit of a MeshCluster's spec, even of a field the operator leaves empty", func() {
		m := f.Members[0]
		before, err := meshCluster(m.Name)()
		Expect(err).NotTo(HaveOccurred())
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mc, err := meshCluster(m.Name)()
			if err != nil {
				return err
			}
			mc.Spec.Locality.Zone = "hand-edited"
			mc.Spec.Locality.Region = "elsewhere"
			return f.Management.Client.Update(ctx, mc)
		})).To(Succeed())
		Eventually(meshCluster(m.Name)).Should(HaveField("Spec.Locality", Equal(before.Spec.Locality)))
	})

	It("ignores a MeshCluster made by hand that names a real member, and uninstalls nothing when it goes", func() {
		m := f.Members[0]
		fake := &meshv1alpha1.MeshCluster{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleet.ClusterNamespace, Name: "hand-made",
				// As if copied from the real one: the finalizer would make its deletion uninstall.
				Finalizers: []string{meshv1alpha1.MeshClusterFinalizer}},
			Spec: meshv1alpha1.MeshClusterSpec{
				ClusterRef: meshv1alpha1.ClusterReference{Name: m.Name}, Installation: fleet.MeshName,
				TrustDomain: "hand-made.mesh",
			},
		}
		Expect(f.Management.Client.Create(ctx, fake)).To(Succeed())
		Eventually(meshCluster("hand-made")).Should(WithTransform(condition(meshv1alpha1.ReadyCondition), Equal("False/NotManagedByOperator")))
		Expect(f.Management.Client.Delete(ctx, fake)).To(Succeed())
		Eventually(func() error { _, err := meshCluster("hand-made")(); return err }).Should(Satisfy(apierrors.IsNotFound))
		Expect(agentRunning(m)()).To(Succeed(), "the real member's control plane stays")
		Expect(meshCluster(m.Name)()).To(WithTransform(condition(meshv1alpha1.ReadyCondition), Equal("True/Reconciled")))
	})

	It("refuses only the newcomer when a new Cluster expands to a joined member's trust domain", func() {
		m := f.Members[0]
		Expect(f.Management.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}})).To(Succeed())
		newcomer := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: m.Name,
			Labels: map[string]string{fleet.MemberLabel: "true"}},
			Spec: clusterv1.ClusterSpec{ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: "10.244.200.1", Port: 6443}}}
		Expect(f.Management.Client.Create(ctx, newcomer)).To(Succeed())
		Eventually(installation).Should(WithTransform(func(mi *meshv1alpha1.MeshInstallation) string {
			return fleet.ConditionMessageOf(mi.Status.Conditions, meshv1alpha1.DegradedCondition)
		}, ContainSubstring("cluster elsewhere/"+m.Name+" expands to trust domain \""+m.Name+".mesh\", which member "+fleet.ClusterNamespace+"/"+m.Name+" already holds")))
		// The reason is an Event on the installation too, and the member was never told to leave.
		events := &corev1.EventList{}
		Expect(f.Management.Client.List(ctx, events)).To(Succeed())
		var messages []string
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "MeshInstallation" {
				messages = append(messages, e.Reason+": "+e.Message)
			}
		}
		Expect(strings.Join(messages, "\n")).To(ContainSubstring("already holds"))
		Expect(strings.Join(messages, "\n")).NotTo(ContainSubstring("no longer selected"))
		mc, err := meshCluster(m.Name)()
		Expect(err).NotTo(HaveOccurred())
		Expect(mc.DeletionTimestamp.IsZero()).To(BeTrue())
		Expect(agentRunning(m)()).To(Succeed())
		_, err = f.MeshCluster(ctx, "elsewhere", m.Name)
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the newcomer has no MeshCluster")

		Expect(f.Management.Client.Delete(ctx, newcomer)).To(Succeed())
		Eventually(installation).Should(WithTransform(func(mi *meshv1alpha1.MeshInstallation) string {
			return fleet.ConditionOf(mi.Status.Conditions, meshv1alpha1.DegradedCondition)
		}, HavePrefix("False/")))
	})

	It("writes a deleted CA Secret again from the agent's memory, keeping the CA, and says so", func() {
		m := f.Members[2]
		before := &corev1.Secret{}
		Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.CASecret}, before)).To(Succeed())
		mc, err := meshCluster(m.Name)()
		Expect(err).NotTo(HaveOccurred())
		Expect(mc.Status.Bundle).NotTo(BeNil())
		fingerprint := mc.Status.Bundle.Fingerprint

		Expect(m.Client.Delete(ctx, before)).To(Succeed())
		Eventually(func(g Gomega) {
			after := &corev1.Secret{}
			g.Expect(m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.CASecret}, after)).To(Succeed())
			g.Expect(after.UID).NotTo(Equal(before.UID))
			for k, v := range before.Data {
				if strings.HasSuffix(k, ".crt") || strings.HasSuffix(k, ".key") {
					g.Expect(after.Data).To(HaveKeyWithValue(k, v), "the restored Secret holds another CA")
				}
			}
		}).WithTimeout(time.Minute).Should(Succeed())
		Eventually(meshCluster(m.Name)).WithTimeout(time.Minute).Should(And(
			WithTransform(condition(meshv1alpha1.CARotationCondition), Equal("True/CASecretRestored")),
			WithTransform(conditionMessage(meshv1alpha1.CARotationCondition), ContainSubstring("audit log")),
			HaveField("Status.Bundle.Fingerprint", Equal(fingerprint)),
		))
	})

	It("writes nothing into another cluster that a member's kubeconfig Secret reaches, and names a broken Secret", func() {
		swapped, other, broken := f.Members[0], f.Members[1], f.Members[2]
		// No restart: the running operator notices the Secrets change while its connections,
		// built from the old Secrets, still work, and heals once they are put right.
		running, err := operatorPods()
		Expect(err).NotTo(HaveOccurred())
		Expect(running).NotTo(BeEmpty())
		// Member 1's Secret now holds member 2's credentials; member 3's holds garbage.
		Expect(f.WriteKubeconfigSecret(ctx, swapped, other.Kubeconfig)).To(Succeed())
		Expect(f.WriteKubeconfigSecret(ctx, broken, []byte("this is not a kubeconfig"))).To(Succeed())
		swappedAt := time.Now()

		Eventually(meshCluster(swapped.Name)).WithTimeout(2 * time.Minute).Should(
			WithTransform(condition(meshv1alpha1.ConnectedCondition), Equal("False/ClusterIdentityChanged")))
		GinkgoWriter.Printf("swapped Secret of %s: ClusterIdentityChanged %s after the swap, operator not restarted\n", swapped.Name, time.Since(swappedAt).Round(time.Second))
		mc, err := meshCluster(swapped.Name)()
		Expect(err).NotTo(HaveOccurred())
		Expect(conditionMessage(meshv1alpha1.ConnectedCondition)(mc)).To(ContainSubstring("kube-system namespace has UID"))
		Eventually(meshCluster(broken.Name)).WithTimeout(2 * time.Minute).Should(And(
			WithTransform(condition(meshv1alpha1.ConnectedCondition), Equal("False/KubeconfigInvalid")),
			WithTransform(conditionMessage(meshv1alpha1.ConnectedCondition), ContainSubstring("Secret "+fleet.ClusterNamespace+"/"+broken.Name+"-kubeconfig")),
			WithTransform(conditionMessage(meshv1alpha1.ConnectedCondition), Not(ContainSubstring("this is not"))),
		))
		GinkgoWriter.Printf("broken Secret of %s: KubeconfigInvalid %s after the swap, operator not restarted\n", broken.Name, time.Since(swappedAt).Round(time.Second))
		// Member 2 is still only itself: its cluster id and agent, never member 1's.
		Consistently(clusterID(other)).WithTimeout(5 * time.Second).Should(Equal(fleet.ClusterID(other)))
		cm := &corev1.ConfigMap{}
		Expect(other.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.ConfigMapName}, cm)).To(Succeed())
		Expect(cm.Data).NotTo(ContainElement(ContainSubstring(swapped.Name + ".mesh")))
		Expect(meshCluster(other.Name)()).To(WithTransform(condition(meshv1alpha1.ConnectedCondition), Equal("True/Connected")))

		// With members 1 and 3 out of reach, a CA rotation of member 2 waits for them and says so,
		// naming them and when it switches anyway.
		mc, err = meshCluster(other.Name)()
		Expect(err).NotTo(HaveOccurred())
		patch := client.MergeFrom(mc.DeepCopy())
		if mc.Annotations == nil {
			mc.Annotations = map[string]string{}
		}
		mc.Annotations[meshv1alpha1.RotateCAAnnotation] = time.Now().Format(time.RFC3339Nano)
		Expect(f.Management.Client.Patch(ctx, mc, patch)).To(Succeed())
		Eventually(meshCluster(other.Name)).WithTimeout(time.Minute).Should(And(
			WithTransform(condition(meshv1alpha1.CARotationCondition), Equal("False/RotationStalled")),
			WithTransform(conditionMessage(meshv1alpha1.CARotationCondition), And(
				ContainSubstring(swapped.Name), ContainSubstring(broken.Name), ContainSubstring("switches anyway at"))),
		))

		// Put both Secrets right; the running operator reconnects with them and both heal.
		Expect(f.WriteKubeconfigSecret(ctx, swapped, swapped.Kubeconfig)).To(Succeed())
		Expect(f.WriteKubeconfigSecret(ctx, broken, broken.Kubeconfig)).To(Succeed())
		fixedAt := time.Now()
		allReady()
		GinkgoWriter.Printf("both Secrets put right: all %d members Ready %s later\n", len(f.Members), time.Since(fixedAt).Round(time.Second))
		for _, m := range []*fleet.Cluster{swapped, broken} {
			Expect(meshCluster(m.Name)()).To(WithTransform(condition(meshv1alpha1.ConnectedCondition), Equal("True/Connected")))
		}
		// Every member holds member 2's new bundle again: its rotation goes on.
		Eventually(meshCluster(other.Name)).WithTimeout(2 * time.Minute).Should(
			WithTransform(condition(meshv1alpha1.CARotationCondition), HavePrefix("True/")))
		Expect(operatorPods()).To(Equal(running), "healed by the operator that was running, not a restarted one")
		GinkgoWriter.Printf("operator pods unchanged throughout: %v\n", running)
	})
})
