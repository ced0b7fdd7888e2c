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

package argocd_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/argocd"
)

const root = "../.."

func script(t *testing.T, kind string) string {
	t.Helper()
	s, err := argocd.LoadScript(root, kind)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fixture(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{}
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return obj
}

// cases: every fixture, what Argo CD should show for it, and a part of the message.
var cases = []struct {
	fixture, status, message string
}{
	{"meshinstallation-no-status", "Progressing", "Waiting for the fleetmesh operator to report status"},
	{"meshinstallation-healthy", "Healthy", "3/3 members ready"},
	{"meshinstallation-rolling-out", "Progressing", "RollingOut: 1/3 members ready; waiting for fleet/member-2 (RollingOut)"},
	{"meshinstallation-members-joining", "Progressing", "2 members without a MeshCluster yet"},
	{"meshinstallation-member-unreachable", "Degraded", "Unreachable: members unreachable: fleet/member-2"},
	{"meshinstallation-conflict", "Degraded", `Conflict: clusters selected but not joined: fleet/member-3 is owned by the older MeshInstallation "prod"`},
	{"meshinstallation-invalid-spec", "Degraded", "InvalidSpec: clusters fleet/member-1, other/member-1 all expand to trust domain"},
	{"meshinstallation-no-clusters", "Degraded", "NoClustersSelected: spec.clusterSelector matches no Cluster"},
	{"meshinstallation-stale-generation", "Progressing", "Waiting for the operator to observe generation 3 (status describes 2)"},
	{"meshinstallation-deleting", "Progressing", "Being deleted"},
	{"meshcluster-no-status", "Progressing", "Waiting for the fleetmesh operator to report status"},
	{"meshcluster-ready", "Healthy", "member is ready (agent v0.1.0)"},
	{"meshcluster-unreachable", "Degraded", "Unreachable: Connected: the API server of fleet/member-2 does not answer"},
	{"meshcluster-rolling-out", "Progressing", "RollingOut: ControlPlaneReady: agent rolling out"},
	{"meshcluster-version-mismatch", "Progressing", "AgentVersionMismatch: ControlPlaneReady: the agent reports version v0.1.0, want v0.2.0"},
	{"meshcluster-not-provisioned", "Progressing", "ClusterNotProvisioned"},
	{"meshcluster-apply-failed", "Progressing", "ApplyFailed: ControlPlaneReady: applying the control plane failed (retrying)"},
	{"meshcluster-stale-generation", "Progressing", "Waiting for the operator to observe generation 2 (status describes 1)"},
	{"meshcluster-deleting-unreachable", "Progressing", "Deleting: waiting for member fleet/member-2 to become reachable to uninstall"},
}

func TestHealthOfFixtures(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.fixture, func(t *testing.T) {
			obj := fixture(t, tc.fixture)
			status, message, err := argocd.Health(script(t, obj["kind"].(string)), obj)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status || !strings.Contains(message, tc.message) {
				t.Errorf("got %s %q, want %s with %q", status, message, tc.status, tc.message)
			}
		})
	}
}

// TestEveryFixtureHasACase: a fixture nobody asserts on proves nothing.
func TestEveryFixtureHasACase(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.fixture] = true
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); !covered[name] {
			t.Errorf("testdata/%s has no case in TestHealthOfFixtures", filepath.Base(f))
		}
	}
}

// knownReasons are the reasons the operator writes (apis/mesh/v1alpha1/conditions.go, plus the
// literals of internal/membership and the service-federation controller).
var knownReasons = map[string]bool{
	meshv1alpha1.ReasonReconciled: true, meshv1alpha1.ReasonMembersNotReady: true, meshv1alpha1.ReasonNoClusters: true,
	meshv1alpha1.ReasonConflict: true, meshv1alpha1.ReasonInvalidSpec: true, meshv1alpha1.ReasonClusterNotFound: true,
	meshv1alpha1.ReasonNotProvisioned: true, meshv1alpha1.ReasonConnected: true, meshv1alpha1.ReasonUnreachable: true,
	meshv1alpha1.ReasonApplyFailed: true, meshv1alpha1.ReasonRollingOut: true, meshv1alpha1.ReasonVersionMismatch: true,
	meshv1alpha1.ReasonAgentReady: true, meshv1alpha1.ReasonDeleting: true, meshv1alpha1.ReasonUninstallSkipped: true,
	"Pending": true, "Synced": true, "SyncFailed": true,
}

// TestFixturesAreRealObjects: every fixture decodes into the Go API types without an unknown
// field, and names only condition types and reasons the operator writes, so the fixtures cannot
// drift into shapes the operator never produces.
func TestFixturesAreRealObjects(t *testing.T) {
	for _, tc := range cases {
		data, err := os.ReadFile(filepath.Join("testdata", tc.fixture+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var conds []metav1.Condition
		var allowed []string
		switch kind := fixture(t, tc.fixture)["kind"]; kind {
		case "MeshInstallation":
			var mi meshv1alpha1.MeshInstallation
			strictDecode(t, tc.fixture, data, &mi)
			conds = mi.Status.Conditions
			allowed = []string{meshv1alpha1.ReadyCondition, meshv1alpha1.ProgressingCondition, meshv1alpha1.DegradedCondition}
		case "MeshCluster":
			var mc meshv1alpha1.MeshCluster
			strictDecode(t, tc.fixture, data, &mc)
			conds = mc.Status.Conditions
			allowed = []string{meshv1alpha1.ReadyCondition, meshv1alpha1.ConnectedCondition, meshv1alpha1.ControlPlaneReadyCondition,
				meshv1alpha1.TrustFederatedCondition, meshv1alpha1.ServicesSyncedCondition}
		default:
			t.Fatalf("%s: kind %v", tc.fixture, kind)
		}
		for _, c := range conds {
			if !contains(allowed, c.Type) {
				t.Errorf("%s: condition type %q is not one the operator sets on this kind", tc.fixture, c.Type)
			}
			if !knownReasons[c.Reason] {
				t.Errorf("%s: reason %q is not one the operator writes", tc.fixture, c.Reason)
			}
		}
	}
}

func strictDecode(t *testing.T, name string, data []byte, into any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Errorf("%s does not decode into the API type: %v", name, err)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// TestTypedObject: objects the e2e suite reads with a typed client go through
// runtime.DefaultUnstructuredConverter (int64 numbers, not JSON floats) and must read the same.
func TestTypedObject(t *testing.T) {
	mc := &meshv1alpha1.MeshCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: meshv1alpha1.GroupVersion.String(), Kind: "MeshCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: "member-1", Namespace: "fleet", Generation: 4},
		Status: meshv1alpha1.MeshClusterStatus{
			ObservedGeneration: 4,
			Conditions: []metav1.Condition{{Type: meshv1alpha1.ReadyCondition, Status: metav1.ConditionTrue,
				Reason: meshv1alpha1.ReasonReconciled, Message: "member is ready", ObservedGeneration: 4}},
			ExportedServices: 2,
		},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(mc)
	if err != nil {
		t.Fatal(err)
	}
	status, message, err := argocd.Health(script(t, "MeshCluster"), obj)
	if err != nil || status != "Healthy" {
		t.Fatalf("got %s %q %v, want Healthy", status, message, err)
	}
	mc.Generation = 5
	mc.Spec.Locality.Region = "eu-west-1"
	obj, _ = runtime.DefaultUnstructuredConverter.ToUnstructured(mc)
	status, message, _ = argocd.Health(script(t, "MeshCluster"), obj)
	if status != "Progressing" || !strings.Contains(message, "generation 5 (status describes 4)") {
		t.Fatalf("got %s %q, want Progressing on a stale generation", status, message)
	}
}

// TestArgoCDSandbox: the interpreter has what Argo CD gives a script and nothing more; a script
// that relies on the string library, or returns a status Argo CD does not know, fails here as it
// would fail (or show Unknown) in Argo CD.
func TestArgoCDSandbox(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"name": "x"}}
	if _, _, err := argocd.Health(`return {status = string.upper("healthy")}`, obj); err == nil {
		t.Error("the string library is available; Argo CD does not open it")
	}
	if _, _, err := argocd.Health(`local t = {}; table.insert(t, 1); return {status = "Healthy", message = tostring(#t)}`, obj); err != nil {
		t.Errorf("base and table libraries: %v", err)
	}
	if _, _, err := argocd.Health(`return {status = "Fine"}`, obj); err == nil {
		t.Error("an unknown health status was accepted")
	}
	if _, _, err := argocd.Health(`while true do end`, obj); err == nil {
		t.Error("a script that never ends was not stopped")
	}
}

// TestConfigMapEmbedsScripts: the argocd-cm snippet users paste carries exactly the scripts
// tested here.
func TestConfigMapEmbedsScripts(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "config", "argocd", "argocd-cm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Metadata struct{ Name, Namespace string }
		Data     map[string]string
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Metadata.Name != "argocd-cm" {
		t.Errorf("ConfigMap name %q, Argo CD reads argocd-cm", cm.Metadata.Name)
	}
	kinds := make([]string, 0, len(argocd.ScriptFiles))
	for k := range argocd.ScriptFiles {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		key := "resource.customizations.health." + meshv1alpha1.GroupVersion.Group + "_" + kind
		if got, want := cm.Data[key], script(t, kind); got != want {
			t.Errorf("argocd-cm.yaml %s differs from config/argocd/%s: copy the script into it", key, argocd.ScriptFiles[kind])
		}
	}
	if len(cm.Data) != len(kinds) {
		t.Errorf("argocd-cm.yaml has %d keys, want %d", len(cm.Data), len(kinds))
	}
}
