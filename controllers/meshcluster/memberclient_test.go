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

package meshcluster

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
)

func TestMain(m *testing.M) { fleet.Main(m) }

// The operator skips an apply when the member already holds the object as rendered. On a real
// API server, every rendered object must read back as held right after its apply (else the
// operator would re-apply it on every wake-up), and a hand edit must not.
func TestAppliedObjectsReadBackAsHeld(t *testing.T) {
	cfg, c := fleet.TestAPIServer(t, fleet.NewScheme(t, clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme), false)
	m := memberClient{Client: c, live: c, dyn: dynamic.NewForConfigOrDie(cfg)}

	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ControlPlane = meshv1alpha1.ControlPlaneSpec{Image: "ghcr.io/fleetmesh/agent", Version: "v0.1.0", Replicas: ptr.To(int32(2)), LogLevel: "info"}
	mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Namespace: "fleet"}}
	mc.Spec = meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "east"}, Installation: "demo", TrustDomain: "east.fleet.demo"}
	objs, err := install.Render(mi, mc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// As the reconciler does: apply all, again while a CRD just applied is not served yet.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, o := range objs {
			if err := m.apply(ctx, o); errors.Is(err, errCRDNotServed) {
				return false, nil
			} else if err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		u, err := ssa.Stamped(o)
		if err != nil {
			t.Fatal(err)
		}
		live, err := m.current(ctx, u)
		if err != nil {
			t.Fatalf("read %s %s back: %v", u.GetKind(), u.GetName(), err)
		}
		if !ssa.Contains(live, u.Object) {
			t.Errorf("%s %s reads back different from what was applied: it would be applied on every reconcile", u.GetKind(), u.GetName())
		}
	}

	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.ConfigMapName}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data[install.ConfigFileName] = "edited: by hand\n"
	if err := c.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetName() != install.ConfigMapName {
			continue
		}
		u, err := ssa.Stamped(o)
		if err != nil {
			t.Fatal(err)
		}
		live, err := m.current(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if ssa.Contains(live, u.Object) {
			t.Fatal("a hand-edited ConfigMap must read as drifted")
		}
		if err := m.apply(ctx, o); err != nil {
			t.Fatal(err)
		}
		if live, err = m.current(ctx, u); err != nil || !ssa.Contains(live, u.Object) {
			t.Fatalf("the apply must restore the ConfigMap (err %v)", err)
		}
	}
}
