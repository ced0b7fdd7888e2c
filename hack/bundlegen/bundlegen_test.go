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

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The repository root, relative to this package.
const root = "../.."

func TestParseMarker(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]markerValue
	}{
		{`type=spec,displayName="Size"`, map[string]markerValue{"type": {str: "spec"}, "displayName": {str: "Size"}}},
		{`type=[spec,status],xDescriptors={"a:b","c, d"}`, map[string]markerValue{
			"type":         {list: []markerValue{{str: "spec"}, {str: "status"}}},
			"xDescriptors": {list: []markerValue{{str: "a:b"}, {str: "c, d"}}},
		}},
		{`displayName="Mesh \"Installation\"",resources={{MeshCluster,v1alpha1,meshclusters},{Secret,v1}}`, map[string]markerValue{
			"displayName": {str: `Mesh "Installation"`},
			"resources": {list: []markerValue{
				{list: []markerValue{{str: "MeshCluster"}, {str: "v1alpha1"}, {str: "meshclusters"}}},
				{list: []markerValue{{str: "Secret"}, {str: "v1"}}},
			}},
		}},
	} {
		got, err := parseMarker(tc.in)
		if err != nil {
			t.Fatalf("parseMarker(%q): %v", tc.in, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseMarker(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{`type`, `displayName="unterminated`, `xDescriptors={"a" "b"}`} {
		if _, err := parseMarker(bad); err == nil {
			t.Errorf("parseMarker(%q) accepted a malformed marker", bad)
		}
	}
}

// TestDescriptorsFromAPITypes reads the real API types: every root kind has descriptors and
// nested fields get dotted paths.
func TestDescriptorsFromAPITypes(t *testing.T) {
	descs, err := readDescriptions(filepath.Join(root, "apis", "mesh", "v1alpha1"))
	if err != nil {
		t.Fatal(err)
	}
	mi, ok := descs["MeshInstallation"]
	if !ok {
		t.Fatalf("no MeshInstallation among %v", keys(descs))
	}
	paths := map[string]bool{}
	for _, d := range mi.Spec {
		paths[d.Path] = true
	}
	for _, want := range []string{"clusterSelector", "controlPlane", "controlPlane.version", "trust.trustDomainTemplate"} {
		if !paths[want] {
			t.Errorf("MeshInstallation spec descriptors lack %q: %v", want, paths)
		}
	}
	if mi.DisplayName != "Mesh Installation" || !strings.HasPrefix(mi.Description, "MeshInstallation turns") {
		t.Errorf("MeshInstallation display name %q, description %q", mi.DisplayName, mi.Description)
	}
	if _, ok := descs["MeshInstallationList"]; ok {
		t.Error("a List type was taken for a kind")
	}
}

// TestGenerateIsDeterministic: two runs over the same inputs give byte-identical bundles, and the
// committed bundle is what the current sources generate (what make bundle-check asserts through
// git, here without git).
func TestGenerateIsDeterministic(t *testing.T) {
	o := configOptions(t)
	a, dfA, err := generate(o)
	if err != nil {
		t.Fatal(err)
	}
	b, dfB, err := generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) || !bytes.Equal(dfA, dfB) {
		t.Fatal("two generations differ")
	}
	for rel, content := range a {
		committed, err := os.ReadFile(filepath.Join(root, "bundle", rel))
		if err != nil {
			t.Errorf("bundle/%s: %v (run make bundle)", rel, err)
			continue
		}
		if !bytes.Equal(committed, content) {
			t.Errorf("bundle/%s is stale (run make bundle)", rel)
		}
	}
}

// configOptions are make bundle's options, over `kustomize build config/manifests` (in a file).
func configOptions(t *testing.T) generateOptions {
	t.Helper()
	kustomize := filepath.Join(root, "bin", "kustomize")
	if _, err := os.Stat(kustomize); err != nil {
		t.Skip("bin/kustomize missing (make tools)")
	}
	out, err := exec.Command(kustomize, "build", filepath.Join(root, "config", "manifests")).Output()
	if err != nil {
		t.Fatalf("kustomize build config/manifests: %v", err)
	}
	manifests := filepath.Join(t.TempDir(), "manifests.yaml")
	if err := os.WriteFile(manifests, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return generateOptions{
		Manifests: manifests, APIs: filepath.Join(root, "apis", "mesh", "v1alpha1"),
		Samples: filepath.Join(root, "config", "samples"), Icon: filepath.Join(root, "config", "manifests", "icon.svg"),
		Version: "v0.1.0", ManagerImage: "ghcr.io/fleetmesh/manager:v0.1.0", AgentImage: "ghcr.io/fleetmesh/agent:v0.1.0",
		ProxyImage: "ghcr.io/fleetmesh/proxy:v0.1.0",
		Package:    "fleetmesh", Channels: "candidate", DefaultChannel: "candidate",
	}
}

// TestWebhookUnderOLM: config/default's webhook becomes the CSV's webhookdefinitions, served by
// the manager's Deployment on its webhook port, and the kustomize install's own certificate
// (its Secret, RBAC and flags) and the webhook Service stay out: OLM provides all of them.
func TestWebhookUnderOLM(t *testing.T) {
	o := configOptions(t)
	in, err := os.ReadFile(o.Manifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: ValidatingWebhookConfiguration", "fleetmesh-webhook-server-cert", "--webhook-cert-secret=", "app.kubernetes.io/component: webhook-cert"} {
		if !bytes.Contains(in, []byte(want)) {
			t.Fatalf("config/manifests has no %q: the test no longer sees what it checks", want)
		}
	}
	files, _, err := generate(o)
	if err != nil {
		t.Fatal(err)
	}
	for rel, content := range files {
		for _, banned := range []string{"webhook-cert", "--webhook-configuration", "fleetmesh-webhook-service", "kind: ValidatingWebhookConfiguration"} {
			if bytes.Contains(content, []byte(banned)) {
				t.Errorf("bundle/%s contains %q", rel, banned)
			}
		}
	}
	csv := map[string]any{}
	if err := yaml.Unmarshal(files[filepath.Join(manifestsDir, "fleetmesh.clusterserviceversion.yaml")], &csv); err != nil {
		t.Fatal(err)
	}
	defs, _, _ := unstructured.NestedSlice(csv, "spec", "webhookdefinitions")
	if len(defs) != 1 {
		t.Fatalf("webhookdefinitions: %v, want one", defs)
	}
	want := map[string]any{
		"type": "ValidatingAdmissionWebhook", "generateName": "meshinstallations.mesh.fleetmesh.io",
		"deploymentName": "fleetmesh-controller-manager", "containerPort": float64(443), "targetPort": float64(9443),
		"webhookPath": "/validate-mesh-fleetmesh-io-v1alpha1-meshinstallation", "failurePolicy": "Ignore", "sideEffects": "None",
	}
	for k, v := range want {
		if got := defs[0].(map[string]any)[k]; !reflect.DeepEqual(got, v) {
			t.Errorf("webhookdefinitions[0].%s = %#v, want %#v", k, got, v)
		}
	}
}

// copyBundle copies the committed bundle and its Dockerfile into a temp dir for mutation.
func copyBundle(t *testing.T) (dir, dockerfile string) {
	t.Helper()
	tmp := t.TempDir()
	dir = filepath.Join(tmp, "bundle")
	src := filepath.Join(root, "bundle")
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "README.md" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "bundle.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile = filepath.Join(tmp, "bundle.Dockerfile")
	if err := os.WriteFile(dockerfile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, dockerfile
}

const rbacFixture = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: manager-role}
rules: []
`

// rbacFromConfig is config/rbac as kustomize would render it, read straight from the files.
func rbacFromConfig(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{"role.yaml", "leader_election_role.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "config", "rbac", f))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	p := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func editCSV(t *testing.T, dir string, edit func(csv map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "manifests", "fleetmesh.clusterserviceversion.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	csv := map[string]any{}
	if err := yaml.Unmarshal(data, &csv); err != nil {
		t.Fatal(err)
	}
	edit(csv)
	out, err := yaml.Marshal(csv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func setExamples(t *testing.T, csv map[string]any, edit func([]map[string]any) []map[string]any) {
	t.Helper()
	ann, _, _ := unstructured.NestedStringMap(csv, "metadata", "annotations")
	var ex []map[string]any
	if err := json.Unmarshal([]byte(ann["alm-examples"]), &ex); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(edit(ex))
	ann["alm-examples"] = string(b)
	_ = unstructured.SetNestedStringMap(csv, ann, "metadata", "annotations")
}

func exampleOf(ex []map[string]any, kind string) map[string]any {
	for _, e := range ex {
		if e["kind"] == kind {
			return e
		}
	}
	return nil
}

// TestValidate: the committed bundle passes, and each kind of breakage is reported by the check
// meant to catch it.
func TestValidate(t *testing.T) {
	dir, df := copyBundle(t)
	findings, err := validate(validateOptions{Bundle: dir, RBAC: rbacFromConfig(t), Dockerfile: df, K8sVersion: "1.36"})
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) > 0 {
		t.Fatalf("committed bundle has findings:\n%v", findings)
	}

	for _, tc := range []struct {
		name   string
		rbac   string // "" = config/rbac
		mutate func(t *testing.T, dir, dockerfile string)
		want   string // substring of one finding
	}{
		{name: "RBAC the CSV lacks", rbac: "extra", want: "clusterPermissions lack grants of config/rbac ClusterRoles"},
		{name: "RBAC the CSV adds", rbac: "fixture", want: "clusterPermissions grant more than config/rbac ClusterRoles"},
		{name: "alm-examples not JSON", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				_ = unstructured.SetNestedField(csv, "[{", "metadata", "annotations", "alm-examples")
			})
		}, want: "alm-examples is not a JSON list"},
		{name: "example with an unknown field", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				setExamples(t, csv, func(ex []map[string]any) []map[string]any {
					_ = unstructured.SetNestedField(exampleOf(ex, "MeshInstallation"), "x", "spec", "clusterSelectr")
					return ex
				})
			})
		}, want: `unknown field "spec.clusterSelectr"`},
		{name: "example failing the schema", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				setExamples(t, csv, func(ex []map[string]any) []map[string]any {
					_ = unstructured.SetNestedField(exampleOf(ex, "MeshInstallation"), int64(50), "spec", "controlPlane", "replicas")
					return ex
				})
			})
		}, want: "spec.controlPlane.replicas"},
		{name: "owned kind without example", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				setExamples(t, csv, func(ex []map[string]any) []map[string]any { return []map[string]any{exampleOf(ex, "MeshInstallation")} })
			})
		}, want: "owned kind MeshCluster has no example"},
		{name: "CRD not owned", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				owned, _, _ := unstructured.NestedSlice(csv, "spec", "customresourcedefinitions", "owned")
				_ = unstructured.SetNestedSlice(csv, owned[1:], "spec", "customresourcedefinitions", "owned")
			})
		}, want: "not owned by the CSV"},
		{name: "descriptor of a field that does not exist", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				owned, _, _ := unstructured.NestedSlice(csv, "spec", "customresourcedefinitions", "owned")
				first := owned[0].(map[string]any)
				sd := first["specDescriptors"].([]any)
				sd[0].(map[string]any)["path"] = "renamedField"
				_ = unstructured.SetNestedSlice(csv, owned, "spec", "customresourcedefinitions", "owned")
			})
		}, want: `spec descriptor "renamedField" names no field`},
		{name: "no minKubeVersion (operatorhub/v2)", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) { unstructured.RemoveNestedField(csv, "spec", "minKubeVersion") })
		}, want: "minKubeVersion is not informed"},
		{name: "invalid capability (standardcapabilities)", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				_ = unstructured.SetNestedField(csv, "Fully Automatic", "metadata", "annotations", "capabilities")
			})
		}, want: "not a valid capabilities level"},
		{name: "no resource requests (good-practices)", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) {
				deps, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", "deployments")
				c := deps[0].(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
				delete(c, "resources")
				_ = unstructured.SetNestedSlice(csv, deps, "spec", "install", "spec", "deployments")
			})
		}, want: "unable to find the resource requests"},
		{name: "channel off convention (good-practices)", mutate: func(t *testing.T, dir, df string) {
			p := filepath.Join(dir, "metadata", "annotations.yaml")
			data, _ := os.ReadFile(p)
			data = bytes.ReplaceAll(data, []byte(": candidate"), []byte(": alpha"))
			_ = os.WriteFile(p, data, 0o644)
			d, _ := os.ReadFile(df)
			_ = os.WriteFile(df, bytes.ReplaceAll(d, []byte("=candidate"), []byte("=alpha")), 0o644)
		}, want: "not following the recommended naming convention"},
		{name: "Dockerfile label differs", mutate: func(t *testing.T, _, df string) {
			d, _ := os.ReadFile(df)
			_ = os.WriteFile(df, bytes.ReplaceAll(d, []byte("package.v1=fleetmesh"), []byte("package.v1=other")), 0o644)
		}, want: "LABEL operators.operatorframework.io.bundle.package.v1"},
		{name: "CSV name off convention (csv)", mutate: func(t *testing.T, dir, _ string) {
			editCSV(t, dir, func(csv map[string]any) { _ = unstructured.SetNestedField(csv, "Fleetmesh_0.1", "metadata", "name") })
		}, want: "metadata.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, df := copyBundle(t)
			rbac := rbacFromConfig(t)
			switch tc.rbac {
			case "fixture":
				rbac = filepath.Join(t.TempDir(), "rbac.yaml")
				_ = os.WriteFile(rbac, []byte(rbacFixture), 0o644)
			case "extra":
				data, _ := os.ReadFile(rbacFromConfig(t))
				data = append(data, []byte("\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: more}\nrules:\n- apiGroups: [\"\"]\n  resources: [nodes]\n  verbs: [get]\n")...)
				rbac = filepath.Join(t.TempDir(), "rbac.yaml")
				_ = os.WriteFile(rbac, data, 0o644)
			}
			if tc.mutate != nil {
				tc.mutate(t, dir, df)
			}
			findings, err := validate(validateOptions{Bundle: dir, RBAC: rbac, Dockerfile: df, K8sVersion: "1.36"})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range findings {
				if strings.Contains(f.String(), tc.want) {
					return
				}
			}
			t.Errorf("no finding contains %q; got:\n%v", tc.want, findings)
		})
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
