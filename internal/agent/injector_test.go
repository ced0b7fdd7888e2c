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

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/agent"
	"github.com/fleetmesh/fleetmesh/internal/inject"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

// agentIP is the agent's "pod IP": inside the sandbox every 10.244.x.y is local.
const agentIP = "10.244.0.130"

// TestInjectorOnARealAPIServer runs the agent, with exactly the RBAC the operator installs, as
// the sidecar injector of a real API server that resolves the webhook's Service to its
// endpoints (--enable-aggregator-routing, as in the test fleet): the agent keeps the caBundle
// and the root ConfigMap, the API server injects pods through it, and a stopped agent blocks
// nothing.
func TestInjectorOnARealAPIServer(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// As e2e/fleet's NewEnvironment (the sandbox has no default route), with the API server
	// resolving webhook Services to their endpoints as the test fleet's members do.
	env := &envtest.Environment{Scheme: scheme, ControlPlaneStartTimeout: 60 * time.Second, ControlPlaneStopTimeout: 20 * time.Second}
	env.ControlPlane.GetAPIServer().Configure().Set("advertise-address", "10.244.0.1")
	env.ControlPlane.GetAPIServer().Configure().Set("enable-aggregator-routing", "true")
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver from KUBEBUILDER_ASSETS (make kube-binaries): %v", err)
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// What the operator installs, applied as it does; the Deployment is replaced by the agent
	// run here, the CRDs and ClusterProperties are not needed.
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ControlPlane = meshv1alpha1.ControlPlaneSpec{Image: "ghcr.io/fleetmesh/agent", Version: "v0.1.0"}
	mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Namespace: "fleet"}}
	mc.Spec = meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "east"}, Installation: "demo", TrustDomain: "east.fleet.demo"}
	objs, err := install.Render(mi, mc)
	if err != nil {
		t.Fatal(err)
	}
	var rendered *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		switch o.GetObjectKind().GroupVersionKind().Kind {
		case "CustomResourceDefinition", "ClusterProperty", "Deployment":
			continue
		case "MutatingWebhookConfiguration":
			rendered = o.(*admissionregistrationv1.MutatingWebhookConfiguration)
		}
		if err := applyAsOperator(ctx, c, o); err != nil {
			t.Fatal(err)
		}
	}
	// The member's EndpointSlice controller would publish the agent pod's address.
	if err := c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "fleetmesh-agent-x", Namespace: install.Namespace, Labels: map[string]string{discoveryv1.LabelServiceName: install.AgentName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{agentIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https-webhook"), Port: ptr.To[int32](install.WebhookPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{inject.InjectLabel: inject.InjectEnabled}}}); err != nil {
		t.Fatal(err)
	}

	agentCfg := serviceAccountConfig(t, cfg, install.Namespace, install.AgentName)
	sidecar := inject.Config{
		ProxyImage: "ghcr.io/fleetmesh/proxy:v0.1.0", XDSAddress: agentIP + ":15010", IdentityAddress: agentIP + ":15012",
		TrustDomain: "east.fleet.demo", ClusterID: "east-fleet",
	}
	a, err := agent.New(agent.Options{
		Config: agentCfg, Namespace: install.Namespace, Version: "v0.1.0", ProbeAddr: agentIP + ":0", Resync: 2 * time.Second,
		Trust: &agent.TrustOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("east.fleet.demo"), SVIDTTL: time.Hour, CATTL: 48 * time.Hour,
			IdentityAddr: agentIP + ":0", BundleAddr: agentIP + ":0"},
		Injector: &agent.InjectorOptions{
			Addr: fmt.Sprintf("%s:%d", agentIP, install.WebhookPort), DNSNames: []string{"fleetmesh-agent.fleetmesh-system.svc"},
			IPs: []net.IP{net.ParseIP(agentIP)}, WebhookConfiguration: install.WebhookConfigurationName, Webhook: install.WebhookName,
			Sidecar: sidecar,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	defer func() {
		stopAgent()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	// caBundle = the member's published roots; the root ConfigMap = its bundle document, owned
	// by the webhook configuration.
	poll(t, 30*time.Second, "the caBundle and the root ConfigMap", func() error {
		bundle := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.BundleConfigMap}, bundle); err != nil {
			return err
		}
		b, err := trust.ParseBundle(spiffeid.RequireTrustDomainFromString("east.fleet.demo"), []byte(bundle.Data[wire.BundleKeyDocument]))
		if err != nil {
			return err
		}
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: install.WebhookConfigurationName}, mwc); err != nil {
			return err
		}
		if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, trust.EncodeCertificatesPEM(b.X509Authorities())) {
			return errors.New("caBundle is not the member's roots")
		}
		root := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: inject.DefaultRootConfigMap}, root); err != nil {
			return err
		}
		if root.Data[inject.RootKey] != bundle.Data[wire.BundleKeyDocument] {
			return errors.New("the root ConfigMap is not the member's bundle document")
		}
		if len(root.OwnerReferences) != 1 || root.OwnerReferences[0].UID != mwc.UID || root.OwnerReferences[0].Kind != "MutatingWebhookConfiguration" {
			return fmt.Errorf("root ConfigMap owners %+v", root.OwnerReferences)
		}
		return nil
	})

	// The operator applying the configuration again leaves caBundle alone, and reads its own
	// apply back as held (no apply loop between the two managers).
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: install.WebhookConfigurationName}, mwc); err != nil {
		t.Fatal(err)
	}
	caBundle := mwc.Webhooks[0].ClientConfig.CABundle
	if err := applyAsOperator(ctx, c, rendered); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: install.WebhookConfigurationName}, mwc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, caBundle) {
		t.Error("the operator's apply removed or changed the agent's caBundle")
	}
	for _, mf := range mwc.ManagedFields {
		owns := bytes.Contains(mf.FieldsV1.GetRawBytes(), []byte(`"f:caBundle"`))
		if owns != (mf.Manager == agent.InjectorFieldManager) {
			t.Errorf("manager %s owns caBundle: %v", mf.Manager, owns)
		}
	}
	stamped, err := ssa.Stamped(rendered)
	if err != nil {
		t.Fatal(err)
	}
	live, err := runtime.DefaultUnstructuredConverter.ToUnstructured(mwc)
	if err != nil {
		t.Fatal(err)
	}
	if !ssa.Contains(live, stamped.Object) {
		t.Error("the operator would re-apply the webhook configuration on every reconcile")
	}

	// The API server calls the agent: a pod is injected, one opted out is not.
	var injected *corev1.Pod
	poll(t, 30*time.Second, "an injected pod", func() error {
		p := testPod("web")
		if err := c.Create(ctx, p); err != nil {
			return err
		}
		if p.Annotations[inject.InjectedAnnotation] == "" {
			// Created before the API server's webhook client picked up the caBundle.
			_ = c.Delete(ctx, p, client.GracePeriodSeconds(0))
			return waitGone(ctx, c, p)
		}
		injected = p
		return nil
	})
	if injected.Annotations[inject.InjectedAnnotation] != sidecar.ProxyImage || len(injected.Spec.InitContainers) != 2 ||
		injected.Spec.InitContainers[0].Name != inject.InitContainerName || injected.Spec.InitContainers[1].Name != inject.ProxyContainerName ||
		injected.Spec.InitContainers[1].RestartPolicy == nil || len(injected.Spec.Volumes) != 3 {
		t.Errorf("injected pod: annotations %v, init containers %d, volumes %d", injected.Annotations, len(injected.Spec.InitContainers), len(injected.Spec.Volumes))
	}
	for name, edit := range map[string]func(*corev1.Pod){
		"label":      func(p *corev1.Pod) { p.Labels = map[string]string{inject.InjectLabel: inject.InjectDisabled} },
		"annotation": func(p *corev1.Pod) { p.Annotations = map[string]string{inject.InjectLabel: inject.InjectDisabled} },
	} {
		p := testPod("opted-out-" + name)
		edit(p)
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Annotations[inject.InjectedAnnotation]; ok || len(p.Spec.InitContainers) != 0 {
			t.Errorf("a pod opted out by %s was injected", name)
		}
	}

	// Least privilege: the agent cannot write a ConfigMap of another name, nor another
	// webhook configuration.
	as, err := kubernetes.NewForConfig(agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = as.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("creating another ConfigMap: %v, want Forbidden", err)
	}
	_, err = as.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, "other", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("patching another webhook configuration: %v, want Forbidden", err)
	}

	// The agent down: pods are created, without the sidecar.
	stopAgent()
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	agentDone <- nil // for the deferred stop
	p := testPod("agent-down")
	if err := c.Create(ctx, p); err != nil {
		t.Fatalf("a pod must be created while the injector is down: %v", err)
	}
	if len(p.Spec.InitContainers) != 0 {
		t.Error("injected by a stopped agent?")
	}
}

// applyAsOperator applies obj as the operator's member client does: stamped with its hash.
func applyAsOperator(ctx context.Context, c client.Client, obj client.Object) error {
	u, err := ssa.Stamped(obj)
	if err != nil {
		return err
	}
	return ssa.Apply(ctx, c, u)
}

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		// envtest runs without the ServiceAccount admission plugin, which would set this.
		Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "app:1",
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}}}},
	}
}

func waitGone(ctx context.Context, c client.Client, p *corev1.Pod) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{})), nil
	})
	if err != nil {
		return fmt.Errorf("pod %s not deleted: %w", p.Name, err)
	}
	return errors.New("the pod was created uninjected")
}

// poll retries f until it succeeds, failing the test with f's last error after timeout.
func poll(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = f()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s after %s: %v", what, timeout, last)
	}
}

// serviceAccountConfig authenticates as a ServiceAccount (TokenRequest): envtest's own user is
// in system:masters, which RBAC never restricts.
func serviceAccountConfig(t *testing.T, cfg *rest.Config, ns, name string) *rest.Config {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := rest.AnonymousClientConfig(cfg)
	out.BearerToken = tr.Status.Token
	return out
}
