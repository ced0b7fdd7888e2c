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

package v1alpha1_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/cmd/manager/app"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

var (
	testEnv     *envtest.Environment
	k8sClient   client.Client
	stopWebhook context.CancelFunc
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestAPIs(t *testing.T) {
	fleet.RunSuite(t, "API validation suite (real kube-apiserver)")
}

// The API server calls the operator's MeshInstallation webhook (config/webhook, served by
// app.SetupWebhook on envtest's local address and certificate) with failurePolicy Fail here, so
// a webhook that is not called fails every MeshInstallation spec instead of passing unseen.
var _ = BeforeSuite(func() {
	scheme := app.NewScheme()
	crds, err := fleet.ManagementCRDPaths() // Cluster API's too: the webhook reads Clusters
	Expect(err).NotTo(HaveOccurred())
	testEnv = fleet.NewEnvironment("", 0, scheme, crds...)
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "webhook", "manifests.yaml"))
	Expect(err).NotTo(HaveOccurred())
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	Expect(yaml.Unmarshal(data, vwc)).To(Succeed())
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	}
	testEnv.WebhookInstallOptions = envtest.WebhookInstallOptions{ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{vwc}}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "start kube-apiserver from KUBEBUILDER_ASSETS (make kube-binaries)")
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	wo := &testEnv.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		}),
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(app.SetupWebhook(mgr)).To(Succeed())
	var ctx context.Context
	ctx, stopWebhook = context.WithCancel(context.Background())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	addr := fmt.Sprintf("%s:%d", wo.LocalServingHost, wo.LocalServingPort)
	Eventually(func() error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only: is it serving
		if err == nil {
			_ = conn.Close()
		}
		return err
	}).WithTimeout(30 * time.Second).Should(Succeed())
})

var _ = AfterSuite(func() {
	if stopWebhook != nil {
		stopWebhook()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
