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

// Package olm_test checks the OLM bundle against a real kube-apiserver: the CRDs it ships install,
// and every alm-examples object passes their schema, CEL rules included (the offline validator
// in hack/bundlegen cannot run CEL).
package olm_test

import (
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
)

// bundleManifests is the committed bundle's manifests/ directory; envtest installs only the
// CustomResourceDefinitions among its files.
var bundleManifests = filepath.Join("..", "..", "bundle", "manifests")

var (
	testEnv   *envtest.Environment
	k8sClient client.Client
)

func TestMain(m *testing.M) { fleet.Main(m) }

func TestOLMBundle(t *testing.T) {
	fleet.RunSuite(t, "OLM bundle suite (real kube-apiserver)")
}

var _ = BeforeSuite(func() {
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	testEnv = fleet.NewEnvironment("", 0, scheme, bundleManifests)
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "start kube-apiserver from KUBEBUILDER_ASSETS (make kube-binaries)")
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
