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
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

func inputs() (*meshv1alpha1.MeshInstallation, *meshv1alpha1.MeshCluster) {
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ControlPlane = meshv1alpha1.ControlPlaneSpec{Image: "ghcr.io/fleetmesh/agent", Version: "v0.1.0", Replicas: ptr.To(int32(2)), LogLevel: "info"}
	mi.Spec.Trust.SVIDTTL = &metav1.Duration{Duration: time.Hour}
	mi.Spec.Trust.CATTL = &metav1.Duration{Duration: 48 * time.Hour}
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
	if props[ClusterIDProperty] != "east.fleet" || props[ClusterSetProperty] != "demo" {
		t.Errorf("ClusterProperties = %v, want the cluster ID east.fleet and the clusterset demo", props)
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
	mi.Spec.Trust.SVIDTTL = &metav1.Duration{Duration: 2 * time.Hour}
	objs, _ = Render(mi, mc)
	if find[*appsv1.Deployment](t, objs, AgentName).Spec.Template.Annotations[ConfigHashAnnotation] == hash {
		t.Error("config hash did not change with the config")
	}
}

func TestAgentRBACIsLeastPrivilege(t *testing.T) {
	mi, mc := inputs()
	objs, _ := Render(mi, mc)
	cr := find[*rbacv1.ClusterRole](t, objs, ClusterRoleName("demo"))
	for _, r := range cr.Rules {
		for _, res := range r.Resources {
			if res == "secrets" || res == "*" {
				t.Errorf("cluster-wide rule grants %s", res)
			}
		}
		for _, v := range r.Verbs {
			if v == "*" || (v != "get" && v != "list" && v != "watch" && !(v == "create" && r.Resources[0] == "tokenreviews")) {
				t.Errorf("cluster-wide rule %v grants %s", r.Resources, v)
			}
		}
	}
	role := find[*rbacv1.Role](t, objs, AgentName)
	if role.Namespace != Namespace {
		t.Errorf("agent Role in %s", role.Namespace)
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
