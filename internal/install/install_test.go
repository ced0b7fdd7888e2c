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

package install

import (
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/inject"
)

func inputs() (*meshv1alpha1.MeshInstallation, *meshv1alpha1.MeshCluster) {
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ControlPlane = meshv1alpha1.ControlPlaneSpec{Image: "ghcr.io/fleetmesh/agent", Version: "v0.1.0", Replicas: ptr.To(int32(2)), LogLevel: "info"}
	mi.Spec.Trust.SVIDTTL = &meshv1alpha1.Duration{Duration: time.Hour}
	mi.Spec.Trust.CATTL = &meshv1alpha1.Duration{Duration: 48 * time.Hour}
	mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Namespace: "fleet"}}
	mc.Spec = meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "east"}, Installation: "demo", TrustDomain: "east.fleet.demo"}
	return mi, mc
}

func find[T client.Object](t *testing.T, objs []client.Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if typed, ok := o.(T); ok && o.GetName() == name {
			return typed
		}
	}
	var zero T
	t.Fatalf("%T %s not rendered", zero, name)
	return zero
}

func TestRenderLabelsEverythingAndOrdersCRDsFirst(t *testing.T) {
	mi, mc := inputs()
	objs, err := Render(mi, mc)
	if err != nil {
		t.Fatal(err)
	}
	crds := 0
	for crds < len(objs) && IsCRD(objs[crds]) {
		crds++
	}
	if crds != 3 {
		t.Errorf("the 3 CRDs (ServiceExport, ServiceImport, ClusterProperty) must be applied first, got %d", crds)
	}
	if _, ok := objs[crds].(*corev1.Namespace); !ok {
		t.Errorf("the namespace must follow the CRDs, got %s", KeyOf(objs[crds]))
	}
	props := map[string]string{}
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok && u.GetKind() == "ClusterProperty" {
			props[u.GetName()], _, _ = unstructured.NestedString(u.Object, "spec", "value")
		}
	}
	if props[ClusterIDProperty] != "east-fleet" || props[ClusterSetProperty] != "demo" {
		t.Errorf("ClusterProperties = %v, want the cluster ID east-fleet and the clusterset demo", props)
	}
	for _, o := range objs {
		if o.GetObjectKind().GroupVersionKind().Kind == "" {
			t.Errorf("%s/%s has no kind: server-side apply needs it", o.GetNamespace(), o.GetName())
		}
		if o.GetLabels()[meshv1alpha1.ManagedByLabel] != "fleetmesh" || o.GetLabels()[meshv1alpha1.InstallationLabel] != "demo" {
			t.Errorf("%s lacks fleetmesh's ownership labels: %v", KeyOf(o), o.GetLabels())
		}
	}
}

func TestRenderAgentFollowsTheSpec(t *testing.T) {
	mi, mc := inputs()
	objs, _ := Render(mi, mc)
	dep := find[*appsv1.Deployment](t, objs, AgentName)
	if *dep.Spec.Replicas != 2 {
		t.Errorf("replicas = %d", *dep.Spec.Replicas)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != "ghcr.io/fleetmesh/agent:v0.1.0" {
		t.Errorf("image = %s", c.Image)
	}
	if c.SecurityContext == nil || *c.SecurityContext.AllowPrivilegeEscalation || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("agent container is not locked down: %+v", c.SecurityContext)
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Error("agent needs readiness and liveness probes")
	}
	if c.Resources.Requests.Memory().IsZero() {
		t.Error("agent needs default resource requests")
	}
	cfg := find[*corev1.ConfigMap](t, objs, ConfigMapName).Data[ConfigFileName]
	for _, want := range []string{"trustDomain: east.fleet.demo", "svidTTL: 1h0m0s", "mesh: demo"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("agent config lacks %q:\n%s", want, cfg)
		}
	}

	// A config change rolls the pods; a replica change does not touch the pod template.
	hash := dep.Spec.Template.Annotations[ConfigHashAnnotation]
	mi.Spec.ControlPlane.LogLevel = "debug"
	mi.Spec.Trust.SVIDTTL = &meshv1alpha1.Duration{Duration: 2 * time.Hour}
	objs, _ = Render(mi, mc)
	if find[*appsv1.Deployment](t, objs, AgentName).Spec.Template.Annotations[ConfigHashAnnotation] == hash {
		t.Error("config hash did not change with the config")
	}
	// The data-plane policy reaches the agent through its ConfigMap, without a roll.
	hash = find[*appsv1.Deployment](t, objs, AgentName).Spec.Template.Annotations[ConfigHashAnnotation]
	mi.Spec.Authorization.AllowedNamespaces = []string{"shop"}
	mi.Spec.Failover.Retries = ptr.To[int32](0)
	objs, _ = Render(mi, mc)
	if got := find[*appsv1.Deployment](t, objs, AgentName).Spec.Template.Annotations[ConfigHashAnnotation]; got != hash {
		t.Error("a policy edit rolls the agent")
	}
	if cfg := find[*corev1.ConfigMap](t, objs, ConfigMapName).Data[ConfigFileName]; !strings.Contains(cfg, "- shop") || !strings.Contains(cfg, "retries: 0") {
		t.Errorf("agent config lacks the new policy:\n%s", cfg)
	}
}

func TestAgentRBACIsLeastPrivilege(t *testing.T) {
	mi, mc := inputs()
	objs, _ := Render(mi, mc)
	cr := find[*rbacv1.ClusterRole](t, objs, ClusterRoleName("demo"))
	writes := map[string][]string{}
	for _, r := range cr.Rules {
		for _, res := range r.Resources {
			if res == "secrets" || res == "*" {
				t.Errorf("cluster-wide rule grants %s", res)
			}
		}
		for _, v := range r.Verbs {
			switch {
			case v == "*":
				t.Errorf("cluster-wide rule %v grants *", r.Resources)
			case v == "get" || v == "list" || v == "watch":
			case v == "create" && r.Resources[0] == "tokenreviews":
			default:
				// Every other write is limited to named objects.
				if len(r.ResourceNames) == 0 {
					t.Errorf("cluster-wide rule %v grants %s on objects of any name", r.Resources, v)
				}
				writes[r.Resources[0]] = append(writes[r.Resources[0]], v)
			}
		}
	}
	for res, want := range map[string][]string{
		"mutatingwebhookconfigurations": {"patch"},
		"configmaps":                    {"create", "patch"},
	} {
		if strings.Join(writes[res], ",") != strings.Join(want, ",") {
			t.Errorf("writes on %s = %v, want %v", res, writes[res], want)
		}
	}
	for _, r := range cr.Rules {
		switch r.Resources[0] {
		case "mutatingwebhookconfigurations":
			if len(r.ResourceNames) != 1 || r.ResourceNames[0] != WebhookConfigurationName {
				t.Errorf("webhook rule names %v", r.ResourceNames)
			}
		case "configmaps":
			if len(r.ResourceNames) != 1 || r.ResourceNames[0] != inject.DefaultRootConfigMap {
				t.Errorf("configmap rule names %v", r.ResourceNames)
			}
		}
	}
	role := find[*rbacv1.Role](t, objs, AgentName)
	if role.Namespace != Namespace {
		t.Errorf("agent Role in %s", role.Namespace)
	}
}

func TestRenderSidecarInjector(t *testing.T) {
	mi, mc := inputs()
	objs, _ := Render(mi, mc)
	mwc := find[*admissionregistrationv1.MutatingWebhookConfiguration](t, objs, WebhookConfigurationName)
	if mwc.Namespace != "" || mwc.Kind != "MutatingWebhookConfiguration" || mwc.APIVersion != "admissionregistration.k8s.io/v1" {
		t.Errorf("webhook configuration %s/%s %s", mwc.Namespace, mwc.Name, mwc.GroupVersionKind())
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks", len(mwc.Webhooks))
	}
	wh := mwc.Webhooks[0]
	if wh.Name != "sidecar.mesh.fleetmesh.io" {
		t.Errorf("name %s", wh.Name)
	}
	svc := wh.ClientConfig.Service
	if svc == nil || svc.Namespace != "fleetmesh-system" || svc.Name != "fleetmesh-agent" || *svc.Port != 15017 || *svc.Path != "/inject" || wh.ClientConfig.URL != nil {
		t.Errorf("clientConfig %+v", wh.ClientConfig)
	}
	if len(wh.ClientConfig.CABundle) != 0 {
		t.Error("the operator must not render caBundle: the agent owns it")
	}
	if len(wh.Rules) != 1 || len(wh.Rules[0].Operations) != 1 || wh.Rules[0].Operations[0] != admissionregistrationv1.Create ||
		strings.Join(wh.Rules[0].Resources, ",") != "pods" || strings.Join(wh.Rules[0].APIGroups, ",") != "" || strings.Join(wh.Rules[0].APIVersions, ",") != "v1" {
		t.Errorf("rules %+v", wh.Rules)
	}
	if *wh.FailurePolicy != admissionregistrationv1.Ignore {
		t.Error("a down agent must never block pod creation: failurePolicy Ignore")
	}
	if *wh.SideEffects != admissionregistrationv1.SideEffectClassNone || *wh.TimeoutSeconds != 5 ||
		strings.Join(wh.AdmissionReviewVersions, ",") != "v1" || *wh.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("webhook %+v", wh)
	}
	if wh.NamespaceSelector.MatchLabels["mesh.fleetmesh.io/inject"] != "enabled" {
		t.Errorf("namespaceSelector %+v", wh.NamespaceSelector)
	}
	nsSel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	objSel, err := metav1.LabelSelectorAsSelector(wh.ObjectSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, pod map[string]string
		want    bool
	}{
		{map[string]string{"mesh.fleetmesh.io/inject": "enabled", "kubernetes.io/metadata.name": "shop"}, map[string]string{"app": "web"}, true},
		{map[string]string{"mesh.fleetmesh.io/inject": "enabled", "kubernetes.io/metadata.name": "shop"}, map[string]string{"mesh.fleetmesh.io/inject": "false"}, false},
		{map[string]string{"kubernetes.io/metadata.name": "shop"}, map[string]string{"app": "web"}, false},
		{map[string]string{"mesh.fleetmesh.io/inject": "enabled", "kubernetes.io/metadata.name": Namespace}, map[string]string{"app": "x"}, false},
	} {
		if got := nsSel.Matches(labels.Set(tc.ns)) && objSel.Matches(labels.Set(tc.pod)); got != tc.want {
			t.Errorf("namespace %v, pod %v: called = %v, want %v", tc.ns, tc.pod, got, tc.want)
		}
	}

	svcObj := find[*corev1.Service](t, objs, AgentName)
	found := false
	for _, p := range svcObj.Spec.Ports {
		if p.Port == 15017 && p.TargetPort.String() == "https-webhook" {
			found = true
		}
	}
	if !found {
		t.Errorf("the agent Service lacks the webhook port: %+v", svcObj.Spec.Ports)
	}
	c := find[*appsv1.Deployment](t, objs, AgentName).Spec.Template.Spec.Containers[0]
	found = false
	for _, p := range c.Ports {
		if p.Name == "https-webhook" && p.ContainerPort == 15017 {
			found = true
		}
	}
	if !found {
		t.Errorf("the agent container lacks the webhook port: %+v", c.Ports)
	}
	for _, want := range []string{"--injector-bind-address=$(POD_IP):15017", "--proxy-image=ghcr.io/fleetmesh/proxy:v0.1.0"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("agent args %v lack %s", c.Args, want)
		}
	}

	// The proxy follows the agent's version, from the spec's repository when it names one.
	mi.Spec.ControlPlane.ProxyImage = "registry.example.org/mesh/proxy"
	mi.Spec.ControlPlane.Version = "v0.2.0"
	objs, _ = Render(mi, mc)
	c = find[*appsv1.Deployment](t, objs, AgentName).Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--proxy-image=registry.example.org/mesh/proxy:v0.2.0") {
		t.Errorf("agent args %v", c.Args)
	}
}

func TestPruneAndUninstallCoverTheWebhookConfiguration(t *testing.T) {
	mi, mc := inputs()
	objs, _ := Render(mi, mc)
	kinds := map[string]bool{}
	for _, k := range PrunableKinds() {
		kinds[k.APIVersion+"/"+k.Kind] = true
	}
	for _, o := range objs {
		gvk := o.GetObjectKind().GroupVersionKind()
		if IsCRD(o) {
			continue
		}
		if !kinds[gvk.GroupVersion().String()+"/"+gvk.Kind] {
			t.Errorf("%s is rendered but neither pruned nor uninstalled", gvk)
		}
	}
	if k := UninstallKinds(); !slices.ContainsFunc(k, func(tm metav1.TypeMeta) bool { return tm.Kind == "MutatingWebhookConfiguration" }) {
		t.Error("uninstall must remove the webhook configuration")
	}
}

func TestStale(t *testing.T) {
	mi, mc := inputs()
	objs, _ := Render(mi, mc)
	installed := []Key{
		{Kind: "Deployment", Namespace: Namespace, Name: AgentName},
		{Kind: "ConfigMap", Namespace: Namespace, Name: "fleetmesh-agent-old"},
		{Kind: "ClusterRole", Name: "fleetmesh-agent-renamed"},
	}
	got := Stale(installed, objs)
	want := []Key{{Kind: "ClusterRole", Name: "fleetmesh-agent-renamed"}, {Kind: "ConfigMap", Namespace: Namespace, Name: "fleetmesh-agent-old"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Stale = %v, want %v", got, want)
	}
}

func TestWavesPutDependenciesFirst(t *testing.T) {
	mi, mc := inputs()
	objs, _ := Render(mi, mc)
	waves := Waves(objs)
	if len(waves) != 3 {
		t.Fatalf("want 3 waves (CRDs and namespace, the rest, custom resources and the Deployment), got %d", len(waves))
	}
	total := 0
	for i, w := range waves {
		total += len(w)
		for _, o := range w {
			kind := o.GetObjectKind().GroupVersionKind().Kind
			first := IsCRD(o) || kind == "Namespace"
			_, custom := DirectResources()[kind]
			last := custom || kind == "Deployment"
			if (i == 0) != first || (i == 2) != last {
				t.Errorf("%s %s in wave %d", kind, o.GetName(), i)
			}
		}
	}
	if total != len(objs) {
		t.Errorf("waves hold %d objects, rendered %d", total, len(objs))
	}
}
