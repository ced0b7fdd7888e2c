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

package fleet

import (
	"context"
	"os"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

// StartSuite is the BeforeSuite of an e2e suite: it logs to the GinkgoWriter, sets Eventually's
// defaults for cross-cluster convergence, starts a full fleet of 3 members in two regions (in
// $FLEET_TEST_WORKDIR if set) and runs fleetmesh in it, all stopped by DeferCleanup.
func StartSuite(ctx context.Context) (*Fleet, map[string]*Kubelet) {
	ctrl.SetLogger(zap.New(zap.WriteTo(ginkgo.GinkgoWriter), zap.UseDevMode(true)))
	// Convergence across clusters takes seconds: each Eventually may still ask for longer.
	gomega.SetDefaultEventuallyTimeout(30 * time.Second)
	gomega.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	opts := Options{Members: 3, Regions: []string{"eu", "us"}, Full: true, WorkDir: os.Getenv("FLEET_TEST_WORKDIR")}
	if opts.WorkDir == "" {
		opts.WorkDir = ginkgo.GinkgoT().TempDir()
	}
	f, err := Start(ctx, opts)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ginkgo.DeferCleanup(func() { gomega.Expect(f.Stop()).To(gomega.Succeed()) })

	// Every cluster's kubelet runs fleetmesh's pods as processes: the operator in management
	// (deployed from config/default) and the agents the operator installs in members.
	kctx, cancel := context.WithCancel(ctx)
	ginkgo.DeferCleanup(cancel)
	kubelets, err := f.RunFleetmesh(kctx, ginkgo.GinkgoT().TempDir())
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	return f, kubelets
}

// StartMeshSuite is StartSuite followed by MeshUp: the BeforeSuite of a suite that needs the
// mesh running everywhere.
func StartMeshSuite(ctx context.Context, ns string, mutate func(*meshv1alpha1.MeshInstallation)) *Fleet {
	f, _ := StartSuite(ctx)
	f.MeshUp(ctx, ns, mutate)
	return f
}

// MeshUp is InstallMesh (mutate may change the MeshInstallation first), asserting it gets
// ready, and the namespace ns in every member.
func (f *Fleet) MeshUp(ctx context.Context, ns string, mutate func(*meshv1alpha1.MeshInstallation)) {
	_, err := f.InstallMesh(ctx, mutate, 2*time.Minute)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	for _, m := range f.Members {
		gomega.Expect(m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(gomega.Succeed())
	}
}
