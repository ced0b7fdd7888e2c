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
	"os"
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
)

// The set-up every test package repeats, once.

// Main is a test package's TestMain: the tests run in the fleet's sandbox (own PID and network
// namespace, 10.244.0.0/16 routed to lo), as everything that starts an API server must.
func Main(m *testing.M) {
	sandbox.Enter()
	os.Exit(m.Run())
}

// RunSuite runs a package's ginkgo suite under gomega's fail handler.
func RunSuite(t *testing.T, description string) {
	gomega.RegisterFailHandler(ginkgo.Fail)
	ginkgo.RunSpecs(t, description)
}

// NewScheme is a scheme with every type the adds register.
func NewScheme(t testing.TB, adds ...func(*runtime.Scheme) error) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range adds {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestAPIServer starts an API server (envtest, from KUBEBUILDER_ASSETS) for one Go test, with
// the management cluster's CRDs when management is set, stops it when the test ends, and
// returns its config and a client of scheme.
func TestAPIServer(t testing.TB, scheme *runtime.Scheme, management bool) (*rest.Config, client.Client) {
	t.Helper()
	var crds []string
	if management {
		var err error
		if crds, err = ManagementCRDPaths(); err != nil {
			t.Fatal(err)
		}
	}
	env := NewEnvironment("", 0, scheme, crds...)
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver from KUBEBUILDER_ASSETS (make kube-binaries): %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c
}
