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
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/operators/v1alpha1"
	apivalidation "github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	crvalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	k8svalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

type validateOptions struct {
	Bundle     string // bundle directory
	RBAC       string // `kustomize build config/rbac`, "-" for stdin
	Dockerfile string // bundle.Dockerfile; "" skips the label check
	K8sVersion string // newest Kubernetes the bundle must install on (removed-API checks)
}

// finding is one complaint. Warnings count as failures: the point of the check is a bundle that
// operator-sdk's validators and OperatorHub would take without a remark.
type finding struct {
	Source  string // which validator
	Level   string // ERROR or WARNING
	Object  string
	Message string
}

func (f finding) String() string {
	if f.Object == "" {
		return fmt.Sprintf("%-7s [%s] %s", f.Level, f.Source, f.Message)
	}
	return fmt.Sprintf("%-7s [%s] %s: %s", f.Level, f.Source, f.Object, f.Message)
}

// supportedKinds are the kinds opm accepts in a registry+v1 bundle's manifests/ (operator-registry
// pkg/lib/bundle supportedObjects): anything else is refused when the bundle is added to a catalog.
var supportedKinds = map[string]bool{
	"ClusterServiceVersion": true, "CustomResourceDefinition": true, "Secret": true, "ClusterRole": true,
	"ClusterRoleBinding": true, "ConfigMap": true, "ServiceAccount": true, "Service": true, "Role": true,
	"RoleBinding": true, "PrometheusRule": true, "ServiceMonitor": true, "PodDisruptionBudget": true,
	"PriorityClass": true, "VerticalPodAutoscaler": true, "ConsoleYAMLSample": true, "ConsoleQuickStart": true,
	"ConsoleCLIDownload": true, "ConsoleLink": true, "NetworkPolicy": true,
}

func validate(o validateOptions) ([]finding, error) {
	var out []finding
	out = append(out, checkFormat(o)...)

	bundle, err := manifests.GetBundleFromDir(o.Bundle)
	if err != nil {
		return append(out, finding{"load", "ERROR", o.Bundle, err.Error()}), nil
	}
	if bundle.CSV == nil {
		return append(out, finding{"load", "ERROR", o.Bundle, "no ClusterServiceVersion in manifests/"}), nil
	}

	// What `operator-sdk bundle validate` runs by default (internal/registry.ValidateBundleContent).
	for _, u := range bundle.Objects {
		k := u.GetKind()
		if k == v1alpha1.ClusterServiceVersionKind || k == "CustomResourceDefinition" {
			continue
		}
		if !supportedKinds[k] {
			out = append(out, finding{"bundle-format", "ERROR", gvkString(u) + " " + u.GetName(), "kind not supported in a registry+v1 bundle"})
			continue
		}
		noop := func(string, bool) []string { return nil }
		if errs := k8svalidation.ValidateObjectMetaAccessor(u, false, noop, field.NewPath("metadata")); len(errs) > 0 {
			out = append(out, finding{"object-meta", "ERROR", gvkString(u) + " " + u.GetName(), errs.ToAggregate().Error()})
		}
	}
	out = append(out, results("bundle", apivalidation.BundleValidator.Validate(bundle))...)
	out = append(out, results("csv", apivalidation.ClusterServiceVersionValidator.Validate(bundle.CSV))...)
	var crds []any
	for _, c := range bundle.V1CRDs {
		crds = append(crds, c)
	}
	for _, c := range bundle.V1beta1CRDs {
		crds = append(crds, c)
	}
	out = append(out, results("crd", apivalidation.CustomResourceDefinitionValidator.Validate(crds...))...)

	// `--select-optional suite=operatorframework`: operator-sdk lists the deprecated "operatorhub"
	// validator there; run what its deprecation notice names as the equivalent instead, since
	// the deprecated one always warns about itself.
	objs := bundle.ObjectsToValidate()
	for _, u := range bundle.Objects {
		objs = append(objs, u)
	}
	objs = append(objs, map[string]string{"k8s-version": o.K8sVersion})
	optional := []struct {
		name string
		v    interfaces.Validator
	}{
		{"operatorhub/v2", apivalidation.OperatorHubV2Validator},
		{"standardcapabilities", apivalidation.StandardCapabilitiesValidator},
		{"standardcategories", apivalidation.StandardCategoriesValidator},
		{"good-practices", apivalidation.GoodPracticesValidator},
		{"alpha-deprecated-apis", apivalidation.AlphaDeprecatedAPIsValidator},
		{"object", apivalidation.ObjectValidator},
	}
	for _, v := range optional {
		out = append(out, results(v.name, v.v.Validate(objs...))...)
	}

	// What the operator-framework validators do not check.
	out = append(out, checkOwnedCRDs(bundle)...)
	out = append(out, checkExamples(bundle)...)
	out = append(out, checkInstall(bundle.CSV)...)
	if o.RBAC != "" {
		rbac, err := readObjects(o.RBAC)
		if err != nil {
			return nil, err
		}
		out = append(out, checkPermissions(bundle.CSV, rbac)...)
	}
	return out, nil
}

func results(source string, rs []apierrors.ManifestResult) []finding {
	var out []finding
	for _, r := range rs {
		for _, e := range r.Errors {
			out = append(out, finding{source, "ERROR", r.Name, e.Error()})
		}
		for _, w := range r.Warnings {
			out = append(out, finding{source, "WARNING", r.Name, w.Error()})
		}
	}
	return out
}

// checkFormat is what opm checks before it reads a bundle: the annotations, the directories they
// name, and (when given) that bundle.Dockerfile labels say the same as annotations.yaml.
func checkFormat(o validateOptions) []finding {
	var out []finding
	bad := func(obj, msg string, args ...any) {
		out = append(out, finding{"bundle-format", "ERROR", obj, fmt.Sprintf(msg, args...)})
	}
	annPath := filepath.Join(o.Bundle, metadataDir, "annotations.yaml")
	data, err := os.ReadFile(annPath)
	if err != nil {
		bad(annPath, "%v", err)
		return out
	}
	var af struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.UnmarshalStrict(data, &af); err != nil {
		bad(annPath, "not an annotations file: %v", err)
		return out
	}
	ann := af.Annotations
	for _, k := range []string{mediaTypeKey, manifestsKey, metadataKey, packageKey, channelsKey} {
		if strings.TrimSpace(ann[k]) == "" {
			bad(annPath, "annotation %s is missing", k)
		}
	}
	if v := ann[mediaTypeKey]; v != "" && v != registryV1 {
		bad(annPath, "%s is %q; this bundle is %s", mediaTypeKey, v, registryV1)
	}
	channels := strings.Split(ann[channelsKey], ",")
	if d := ann[defaultChannelKey]; d != "" && !contains(channels, d) {
		bad(annPath, "default channel %q is not one of the channels %q", d, ann[channelsKey])
	}
	for _, k := range []string{manifestsKey, metadataKey} {
		if v := ann[k]; v != "" {
			if st, err := os.Stat(filepath.Join(o.Bundle, v)); err != nil || !st.IsDir() {
				bad(annPath, "%s names %q, which is not a directory of the bundle", k, v)
			}
		}
	}
	if v := ann[testConfigKey]; v != "" {
		if _, err := os.Stat(filepath.Join(o.Bundle, v, "config.yaml")); err != nil {
			bad(annPath, "%s names %q, which has no config.yaml", testConfigKey, v)
		}
	}
	if o.Dockerfile == "" {
		return out
	}
	labels, err := dockerfileLabels(o.Dockerfile)
	if err != nil {
		bad(o.Dockerfile, "%v", err)
		return out
	}
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if labels[k] != ann[k] {
			bad(o.Dockerfile, "LABEL %s=%q, but annotations.yaml says %q", k, labels[k], ann[k])
		}
	}
	for k := range labels {
		if _, ok := ann[k]; !ok && strings.HasPrefix(k, "operators.operatorframework.io.") {
			bad(o.Dockerfile, "LABEL %s is not in annotations.yaml", k)
		}
	}
	return out
}

func dockerfileLabels(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	labels := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "LABEL ") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "LABEL ")), "=")
		if !ok {
			return nil, fmt.Errorf("LABEL without '=': %q", line)
		}
		labels[k] = strings.Trim(v, `"`)
	}
	return labels, sc.Err()
}

// checkOwnedCRDs: every CRD version in the bundle is owned with a display name, a description
// and descriptors, and every descriptor path exists in that version's schema (a renamed field
// would otherwise leave a descriptor pointing at nothing, which no validator notices).
func checkOwnedCRDs(b *manifests.Bundle) []finding {
	var out []finding
	bad := func(obj, msg string, args ...any) {
		out = append(out, finding{"fleetmesh/owned-crds", "ERROR", obj, fmt.Sprintf(msg, args...)})
	}
	owned := map[string]v1alpha1.CRDDescription{}
	for _, d := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		owned[d.Name+"/"+d.Version] = d
	}
	internal := map[string]bool{}
	if v := b.CSV.GetAnnotations()["operators.operatorframework.io/internal-objects"]; v != "" {
		var names []string
		if err := json.Unmarshal([]byte(v), &names); err != nil {
			bad(b.CSV.Name, "annotation operators.operatorframework.io/internal-objects is not a JSON list of CRD names: %v", err)
		}
		for _, n := range names {
			internal[n] = true
		}
	}
	crdNames := map[string]bool{}
	for _, crd := range b.V1CRDs {
		crdNames[crd.Name] = true
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			key := crd.Name + "/" + v.Name
			d, ok := owned[key]
			if !ok {
				bad(key, "CRD version is in the bundle but not owned by the CSV")
				continue
			}
			if d.Kind != crd.Spec.Names.Kind {
				bad(key, "CSV says kind %s, CRD says %s", d.Kind, crd.Spec.Names.Kind)
			}
			if strings.TrimSpace(d.DisplayName) == "" || strings.TrimSpace(d.Description) == "" {
				bad(key, "owned CRD needs a displayName and a description (the Go type's doc comment)")
			}
			if len(d.SpecDescriptors) == 0 || len(d.StatusDescriptors) == 0 {
				bad(key, "owned CRD needs spec and status descriptors")
			}
			if len(d.Resources) == 0 {
				bad(key, "owned CRD lists no resources (scorecard olm-crds-have-resources fails)")
			}
			var schema *apiextensionsv1.JSONSchemaProps
			if v.Schema != nil {
				schema = v.Schema.OpenAPIV3Schema
			}
			for _, sd := range d.SpecDescriptors {
				if !schemaHasPath(schema, "spec."+sd.Path) {
					bad(key, "spec descriptor %q names no field of the CRD schema", sd.Path)
				}
				if sd.Description == "" {
					bad(key, "spec descriptor %q has no description", sd.Path)
				}
			}
			for _, sd := range d.StatusDescriptors {
				if !schemaHasPath(schema, "status."+sd.Path) {
					bad(key, "status descriptor %q names no field of the CRD schema", sd.Path)
				}
				if sd.Description == "" {
					bad(key, "status descriptor %q has no description", sd.Path)
				}
			}
		}
	}
	for _, d := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		if !crdNames[d.Name] {
			bad(d.Name, "owned by the CSV but no CRD manifest in the bundle")
		}
	}
	for n := range internal {
		if !crdNames[n] {
			bad(n, "listed in operators.operatorframework.io/internal-objects but not a CRD of the bundle")
		}
	}
	return out
}

func schemaHasPath(s *apiextensionsv1.JSONSchemaProps, path string) bool {
	for _, seg := range strings.Split(path, ".") {
		if s == nil {
			return false
		}
		p, ok := s.Properties[seg]
		if !ok {
			return false
		}
		s = &p
	}
	return s != nil
}

// checkExamples: alm-examples is a JSON list whose every object is of an owned kind, passes that
// version's OpenAPI schema and has no field the API server would silently prune. (CEL rules and
// defaults need a real API server: e2e/olm creates every example on one.)
func checkExamples(b *manifests.Bundle) []finding {
	var out []finding
	bad := func(obj, msg string, args ...any) {
		out = append(out, finding{"fleetmesh/alm-examples", "ERROR", obj, fmt.Sprintf(msg, args...)})
	}
	raw := b.CSV.GetAnnotations()["alm-examples"]
	var examples []map[string]any
	if err := json.Unmarshal([]byte(raw), &examples); err != nil {
		bad(b.CSV.Name, "alm-examples is not a JSON list of objects: %v", err)
		return out
	}
	if len(examples) == 0 {
		bad(b.CSV.Name, "alm-examples is empty")
	}
	type versionSchema struct {
		kind   string
		schema *apiextensionsv1.JSONSchemaProps
	}
	schemas := map[string]versionSchema{} // "group/version Kind"
	for _, crd := range b.V1CRDs {
		for _, v := range crd.Spec.Versions {
			if v.Served && v.Schema != nil {
				schemas[crd.Spec.Group+"/"+v.Name+" "+crd.Spec.Names.Kind] = versionSchema{crd.Spec.Names.Kind, v.Schema.OpenAPIV3Schema}
			}
		}
	}
	seenKinds := map[string]bool{}
	for i, ex := range examples {
		u := &unstructured.Unstructured{Object: ex}
		name := fmt.Sprintf("alm-examples[%d] %s %s", i, gvkString(u), u.GetName())
		if u.GetName() == "" {
			bad(name, "example has no metadata.name")
		}
		vs, ok := schemas[u.GetAPIVersion()+" "+u.GetKind()]
		if !ok {
			bad(name, "not a served version of a CRD in the bundle")
			continue
		}
		seenKinds[vs.kind] = true
		internal := &apiextensions.JSONSchemaProps{}
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(vs.schema, internal, nil); err != nil {
			bad(name, "convert schema: %v", err)
			continue
		}
		validator, _, err := crvalidation.NewSchemaValidator(internal)
		if err != nil {
			bad(name, "schema: %v", err)
			continue
		}
		for _, e := range crvalidation.ValidateCustomResource(nil, u.UnstructuredContent(), validator) {
			bad(name, "%v", e)
		}
		structural, err := structuralschema.NewStructural(internal)
		if err != nil {
			bad(name, "structural schema: %v", err)
			continue
		}
		copied := runtime.DeepCopyJSON(u.UnstructuredContent())
		for _, p := range pruning.PruneWithOptions(copied, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
			bad(name, "unknown field %q: the API server would drop it", p)
		}
	}
	for _, d := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		if !seenKinds[d.Kind] {
			bad(d.Name, "owned kind %s has no example in alm-examples (config/samples)", d.Kind)
		}
	}
	return out
}

// checkInstall: the manager image is the one the CSV advertises and mirrors.
func checkInstall(csv *v1alpha1.ClusterServiceVersion) []finding {
	var out []finding
	bad := func(msg string, args ...any) {
		out = append(out, finding{"fleetmesh/install", "ERROR", csv.Name, fmt.Sprintf(msg, args...)})
	}
	deps := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs
	if len(deps) != 1 {
		bad("want exactly one Deployment (the manager), got %d", len(deps))
		return out
	}
	related := map[string]bool{}
	for _, r := range csv.Spec.RelatedImages {
		related[r.Image] = true
	}
	for _, c := range deps[0].Spec.Template.Spec.Containers {
		if !related[c.Image] {
			bad("container %s image %s is not in spec.relatedImages", c.Name, c.Image)
		}
		if c.Name == "manager" && csv.GetAnnotations()["containerImage"] != c.Image {
			bad("annotation containerImage %q is not the manager's image %q", csv.GetAnnotations()["containerImage"], c.Image)
		}
	}
	return out
}

// rbacTuple is one (apiGroup, resource, resourceName, verb) or (nonResourceURL, verb) grant:
// comparing sets of these ignores how rules happen to be grouped.
type rbacTuple struct{ group, resource, name, url, verb string }

func (t rbacTuple) String() string {
	if t.url != "" {
		return fmt.Sprintf("%s %s", t.verb, t.url)
	}
	s := fmt.Sprintf("%s %s", t.verb, t.resource)
	if t.group != "" {
		s += "." + t.group
	}
	if t.name != "" {
		s += "/" + t.name
	}
	return s
}

func tuples(rules []rbacv1.PolicyRule) map[rbacTuple]bool {
	out := map[rbacTuple]bool{}
	orEmpty := func(s []string) []string {
		if len(s) == 0 {
			return []string{""}
		}
		return s
	}
	for _, r := range rules {
		for _, v := range r.Verbs {
			for _, u := range r.NonResourceURLs {
				out[rbacTuple{url: u, verb: v}] = true
			}
			if len(r.Resources) == 0 {
				continue
			}
			for _, g := range orEmpty(r.APIGroups) {
				for _, res := range r.Resources {
					for _, n := range orEmpty(r.ResourceNames) {
						out[rbacTuple{group: g, resource: res, name: n, verb: v}] = true
					}
				}
			}
		}
	}
	return out
}

// checkPermissions: the CSV grants exactly what config/rbac grants (ClusterRoles as
// clusterPermissions, Roles as permissions) to the Deployment's ServiceAccount, no more, no less.
func checkPermissions(csv *v1alpha1.ClusterServiceVersion, rbac []*unstructured.Unstructured) []finding {
	var out []finding
	bad := func(msg string, args ...any) {
		out = append(out, finding{"fleetmesh/permissions", "ERROR", csv.Name, fmt.Sprintf(msg, args...)})
	}
	var wantCluster, wantNS []rbacv1.PolicyRule
	for _, u := range rbac {
		if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
			continue
		}
		var r rbacv1.ClusterRole
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			bad("%s %s: %v", u.GetKind(), u.GetName(), err)
			continue
		}
		if u.GetKind() == "ClusterRole" {
			wantCluster = append(wantCluster, r.Rules...)
		} else {
			wantNS = append(wantNS, r.Rules...)
		}
	}
	strategy := csv.Spec.InstallStrategy.StrategySpec
	sa := ""
	if len(strategy.DeploymentSpecs) > 0 {
		sa = strategy.DeploymentSpecs[0].Spec.Template.Spec.ServiceAccountName
	}
	gather := func(what string, perms []v1alpha1.StrategyDeploymentPermissions) []rbacv1.PolicyRule {
		var rules []rbacv1.PolicyRule
		for _, p := range perms {
			if p.ServiceAccountName != sa {
				bad("%s for ServiceAccount %q, but the manager runs as %q", what, p.ServiceAccountName, sa)
			}
			rules = append(rules, p.Rules...)
		}
		return rules
	}
	compare := func(what, source string, want, got []rbacv1.PolicyRule) {
		w, g := tuples(want), tuples(got)
		var missing, extra []string
		for t := range w {
			if !g[t] {
				missing = append(missing, t.String())
			}
		}
		for t := range g {
			if !w[t] {
				extra = append(extra, t.String())
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		if len(missing) > 0 {
			bad("%s lack grants of %s (run make bundle): %s", what, source, strings.Join(missing, ", "))
		}
		if len(extra) > 0 {
			bad("%s grant more than %s (run make bundle): %s", what, source, strings.Join(extra, ", "))
		}
	}
	compare("clusterPermissions", "config/rbac ClusterRoles", wantCluster, gather("clusterPermissions", strategy.ClusterPermissions))
	compare("permissions", "config/rbac Roles", wantNS, gather("permissions", strategy.Permissions))
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if strings.TrimSpace(e) == s {
			return true
		}
	}
	return false
}
