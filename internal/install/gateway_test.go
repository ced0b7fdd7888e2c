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
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// networking: Gateway adds the gateway's ServiceAccount, LoadBalancer Service and Deployment:
// unprivileged, no API token, the agent's bundle as its roots; Flat renders none of them, so
// switching back prunes them.
func TestRenderGateway(t *testing.T) {
	mi, mc := inputs()
	flat, err := Render(mi, mc)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(flat, func(o client.Object) bool { return o.GetName() == GatewayName }) {
		t.Fatal("Flat networking rendered a gateway")
	}
	mi.Spec.ServiceFederation.Networking = meshv1alpha1.NetworkingGateway
	objs, err := Render(mi, mc)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetName() == GatewayName && o.GetLabels()[meshv1alpha1.InstallationLabel] != "demo" {
			t.Errorf("%T %s lacks the installation label", o, o.GetName())
		}
	}
	stale := Stale(keysOf(objs), flat)
	if len(stale) != 3 {
		t.Errorf("going back to Flat prunes %v, want the gateway's three objects", stale)
	}

	sa := find[*corev1.ServiceAccount](t, objs, GatewayName)
	if ptr.Deref(sa.AutomountServiceAccountToken, true) {
		t.Error("the gateway's ServiceAccount mounts a token")
	}
	svc := find[*corev1.Service](t, objs, GatewayName)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != wire.GatewayPort {
		t.Errorf("gateway Service = %+v, want a LoadBalancer on %d", svc.Spec, wire.GatewayPort)
	}
	d := find[*appsv1.Deployment](t, objs, GatewayName)
	pod := d.Spec.Template.Spec
	if ptr.Deref(pod.AutomountServiceAccountToken, true) || !ptr.Deref(pod.SecurityContext.RunAsNonRoot, false) {
		t.Error("the gateway pod must run as non-root without an API token")
	}
	c := pod.Containers[0]
	if c.Image != "ghcr.io/fleetmesh/proxy:v0.1.0" {
		t.Errorf("image %s, want the proxy image at the control plane's version", c.Image)
	}
	for _, want := range []string{"gateway", "--xds-address=fleetmesh-agent.fleetmesh-system.svc:15010", "--trust-domain=east.fleet.demo",
		"--cluster-id=" + ClusterID(mc), "--trust-file=/var/run/secrets/fleetmesh/root/bundle.json", "--bind-address=$(POD_IP)", "--port=15443"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if c.SecurityContext.Capabilities == nil || !slices.Contains(c.SecurityContext.Capabilities.Drop, "ALL") || !ptr.Deref(c.SecurityContext.ReadOnlyRootFilesystem, false) {
		t.Error("the gateway container must drop every capability and have a read-only root")
	}
	if cm := pod.Volumes[0].ConfigMap; cm == nil || cm.Name != wire.BundleConfigMap {
		t.Errorf("roots volume %+v, want the agent's %s", pod.Volumes[0], wire.BundleConfigMap)
	}
}

func keysOf(objs []client.Object) []Key {
	keys := make([]Key, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, KeyOf(o))
	}
	return keys
}
