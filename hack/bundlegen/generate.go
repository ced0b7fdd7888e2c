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
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/operator-framework/api/pkg/lib/version"
	"github.com/operator-framework/api/pkg/operators/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Bundle layout (registry+v1) and the annotation keys OLM and opm read.
const (
	mediaTypeKey      = "operators.operatorframework.io.bundle.mediatype.v1"
	manifestsKey      = "operators.operatorframework.io.bundle.manifests.v1"
	metadataKey       = "operators.operatorframework.io.bundle.metadata.v1"
	packageKey        = "operators.operatorframework.io.bundle.package.v1"
	channelsKey       = "operators.operatorframework.io.bundle.channels.v1"
	defaultChannelKey = "operators.operatorframework.io.bundle.channel.default.v1"
	testMediaTypeKey  = "operators.operatorframework.io.test.mediatype.v1"
	testConfigKey     = "operators.operatorframework.io.test.config.v1"

	registryV1 = "registry+v1"
	scorecardV = "scorecard+v1"

	manifestsDir = "manifests"
	metadataDir  = "metadata"
	scorecardDir = "tests/scorecard"
)

type generateOptions struct {
	Manifests      string // `kustomize build config/manifests`, "-" for stdin
	APIs           string // Go package of the API types (descriptor markers)
	Samples        string // directory of sample CRs (alm-examples)
	Icon           string // SVG file
	Out            string // bundle directory
	Dockerfile     string // bundle.Dockerfile to write
	Version        string // v0.1.0
	ManagerImage   string
	AgentImage     string
	ProxyImage     string
	Package        string
	Channels       string // comma-separated
	DefaultChannel string
}

// bundleFiles is the generated bundle: relative path -> content.
type bundleFiles map[string][]byte

func generate(o generateOptions) (bundleFiles, []byte, error) {
	objs, err := readObjects(o.Manifests)
	if err != nil {
		return nil, nil, err
	}
	descs, err := readDescriptions(o.APIs)
	if err != nil {
		return nil, nil, fmt.Errorf("read descriptor markers from %s: %w", o.APIs, err)
	}
	samples, err := readSamples(o.Samples)
	if err != nil {
		return nil, nil, err
	}
	var icon []byte
	if o.Icon != "" {
		if icon, err = os.ReadFile(o.Icon); err != nil {
			return nil, nil, err
		}
	}
	ver, err := semver.ParseTolerant(o.Version)
	if err != nil {
		return nil, nil, fmt.Errorf("version %q is not semver: %w", o.Version, err)
	}
	files, err := buildBundle(objs, descs, samples, icon, ver, o)
	if err != nil {
		return nil, nil, err
	}
	return files, dockerfile(annotations(o)), nil
}

// sorted holds the kustomize output by what the bundle does with it.
type sorted struct {
	csvBase      *unstructured.Unstructured
	crds         []*unstructured.Unstructured
	deployment   *unstructured.Unstructured
	serviceAccts map[string]*unstructured.Unstructured
	roles        map[string]*unstructured.Unstructured // "Role/name" and "ClusterRole/name"
	bindings     []*unstructured.Unstructured
	scorecard    *unstructured.Unstructured
	webhooks     []*unstructured.Unstructured // ValidatingWebhookConfigurations
	services     map[string]*unstructured.Unstructured
	extra        []*unstructured.Unstructured
}

func sortObjects(objs []*unstructured.Unstructured) (*sorted, error) {
	s := &sorted{serviceAccts: map[string]*unstructured.Unstructured{}, roles: map[string]*unstructured.Unstructured{},
		services: map[string]*unstructured.Unstructured{}}
	for _, u := range objs {
		if isSelfCert(u) {
			continue // OLM's certificate replaces it (webhooks.go)
		}
		switch u.GetKind() {
		case v1alpha1.ClusterServiceVersionKind:
			if s.csvBase != nil {
				return nil, fmt.Errorf("two ClusterServiceVersion bases: %s and %s", s.csvBase.GetName(), u.GetName())
			}
			s.csvBase = u
		case "CustomResourceDefinition":
			s.crds = append(s.crds, u)
		case "Deployment":
			if s.deployment != nil {
				return nil, fmt.Errorf("two Deployments (%s, %s): the CSV generator expects only the manager", s.deployment.GetName(), u.GetName())
			}
			s.deployment = u
		case "ServiceAccount":
			s.serviceAccts[u.GetName()] = u
		case "Role", "ClusterRole":
			s.roles[u.GetKind()+"/"+u.GetName()] = u
		case "RoleBinding", "ClusterRoleBinding":
			s.bindings = append(s.bindings, u)
		case "Namespace":
			// OLM installs into the namespace of the OperatorGroup; the bundle must not carry one.
		case "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			// A registry+v1 bundle cannot carry admission policies: OperatorHub users apply
			// config/admission by hand (docs/install-olm.md).
		case "Configuration":
			s.scorecard = u
		case "ValidatingWebhookConfiguration":
			s.webhooks = append(s.webhooks, u)
		case "Service":
			s.services[u.GetName()] = u
			s.extra = append(s.extra, u)
		default:
			s.extra = append(s.extra, u)
		}
	}
	switch {
	case s.csvBase == nil:
		return nil, fmt.Errorf("no ClusterServiceVersion base in the manifests (config/manifests/bases)")
	case s.deployment == nil:
		return nil, fmt.Errorf("no Deployment in the manifests (config/manager)")
	case len(s.crds) == 0:
		return nil, fmt.Errorf("no CustomResourceDefinition in the manifests (config/crd)")
	case s.scorecard == nil:
		return nil, fmt.Errorf("no scorecard Configuration in the manifests (config/scorecard)")
	}
	sort.Slice(s.crds, func(i, j int) bool { return s.crds[i].GetName() < s.crds[j].GetName() })
	return s, nil
}

func buildBundle(objs []*unstructured.Unstructured, descs map[string]*kindDescription, samples []*unstructured.Unstructured, icon []byte, ver semver.Version, o generateOptions) (bundleFiles, error) {
	s, err := sortObjects(objs)
	if err != nil {
		return nil, err
	}
	csv := &v1alpha1.ClusterServiceVersion{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(s.csvBase.Object, csv); err != nil {
		return nil, fmt.Errorf("CSV base: %w", err)
	}
	csv.Name = fmt.Sprintf("%s.v%s", o.Package, ver)
	csv.Namespace = ""
	csv.Spec.Version = version.OperatorVersion{Version: ver}
	if len(icon) > 0 {
		csv.Spec.Icon = []v1alpha1.Icon{{Data: base64.StdEncoding.EncodeToString(icon), MediaType: "image/svg+xml"}}
	}

	dep := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(s.deployment.Object, dep); err != nil {
		return nil, fmt.Errorf("Deployment %s: %w", s.deployment.GetName(), err)
	}
	if err := setManagerImage(dep, o.ManagerImage); err != nil {
		return nil, err
	}
	dropSelfCertFlags(dep)
	webhooks, webhookServices, err := webhookDefinitions(s.webhooks, s.services, dep)
	if err != nil {
		return nil, err
	}
	csv.Spec.WebhookDefinitions = webhooks
	s.extra = slices.DeleteFunc(s.extra, func(u *unstructured.Unstructured) bool {
		return u.GetKind() == "Service" && webhookServices[u.GetName()]
	})
	perms, clusterPerms, err := permissions(s, dep)
	if err != nil {
		return nil, err
	}
	csv.Spec.InstallStrategy = v1alpha1.NamedInstallStrategy{
		StrategyName: v1alpha1.InstallStrategyNameDeployment,
		StrategySpec: v1alpha1.StrategyDetailsDeployment{
			DeploymentSpecs:    []v1alpha1.StrategyDeploymentSpec{{Name: dep.Name, Label: dep.Labels, Spec: dep.Spec}},
			Permissions:        perms,
			ClusterPermissions: clusterPerms,
		},
	}

	owned, err := ownedCRDs(s.crds, descs)
	if err != nil {
		return nil, err
	}
	csv.Spec.CustomResourceDefinitions.Owned = owned

	examples, err := almExamples(samples)
	if err != nil {
		return nil, err
	}
	ann := csv.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann["alm-examples"] = examples
	ann["containerImage"] = o.ManagerImage
	csv.SetAnnotations(ann)
	csv.Spec.RelatedImages = []v1alpha1.RelatedImage{{Name: "manager", Image: o.ManagerImage}}
	if o.AgentImage != "" {
		// The operator installs the agent into members: mirrors for disconnected installs need it too.
		csv.Spec.RelatedImages = append(csv.Spec.RelatedImages, v1alpha1.RelatedImage{Name: "agent", Image: o.AgentImage})
	}
	if o.ProxyImage != "" {
		// The agents inject the sidecar proxy into members' pods: mirrors need it as well.
		csv.Spec.RelatedImages = append(csv.Spec.RelatedImages, v1alpha1.RelatedImage{Name: "proxy", Image: o.ProxyImage})
	}

	files := bundleFiles{}
	csvMap, err := runtime.DefaultUnstructuredConverter.ToUnstructured(csv)
	if err != nil {
		return nil, err
	}
	delete(csvMap, "status")
	csvMap["apiVersion"], csvMap["kind"] = v1alpha1.SchemeGroupVersion.String(), v1alpha1.ClusterServiceVersionKind
	if files[filepath.Join(manifestsDir, o.Package+".clusterserviceversion.yaml")], err = marshalYAML(csvMap); err != nil {
		return nil, err
	}
	for _, crd := range s.crds {
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
		if files[filepath.Join(manifestsDir, group+"_"+plural+".yaml")], err = marshalYAML(crd.Object); err != nil {
			return nil, err
		}
	}
	for _, u := range s.extra {
		u = u.DeepCopy()
		u.SetNamespace("") // OLM places them in the install namespace
		gv := u.GroupVersionKind().GroupVersion()
		name := fmt.Sprintf("%s_%s_%s.yaml", u.GetName(), strings.ReplaceAll(gv.String(), "/", "_"), strings.ToLower(u.GetKind()))
		if files[filepath.Join(manifestsDir, name)], err = marshalYAML(u.Object); err != nil {
			return nil, err
		}
	}
	if files[filepath.Join(metadataDir, "annotations.yaml")], err = marshalYAML(map[string]any{"annotations": toAny(annotations(o))}); err != nil {
		return nil, err
	}
	sc := s.scorecard.DeepCopy()
	sc.SetNamespace("")
	if files[filepath.Join(scorecardDir, "config.yaml")], err = marshalYAML(sc.Object); err != nil {
		return nil, err
	}
	return files, nil
}

func setManagerImage(dep *appsv1.Deployment, image string) error {
	if image == "" {
		return nil
	}
	for i := range dep.Spec.Template.Spec.Containers {
		if dep.Spec.Template.Spec.Containers[i].Name == "manager" {
			dep.Spec.Template.Spec.Containers[i].Image = image
			return nil
		}
	}
	return fmt.Errorf("Deployment %s has no container named manager", dep.Name)
}

// permissions turns the RBAC bound to the Deployment's ServiceAccount into the CSV's
// permissions (namespaced Roles) and clusterPermissions (ClusterRoles). OLM creates the roles and
// bindings itself; a role bound to nobody, or a binding to someone else, is refused rather than
// silently dropped, since it would ship permissions nobody reviewed.
func permissions(s *sorted, dep *appsv1.Deployment) (perms, clusterPerms []v1alpha1.StrategyDeploymentPermissions, err error) {
	sa := dep.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		return nil, nil, fmt.Errorf("Deployment %s sets no serviceAccountName", dep.Name)
	}
	if _, ok := s.serviceAccts[sa]; !ok {
		return nil, nil, fmt.Errorf("Deployment %s runs as ServiceAccount %s, which the manifests do not define", dep.Name, sa)
	}
	for name := range s.serviceAccts {
		if name != sa {
			return nil, nil, fmt.Errorf("ServiceAccount %s is not the Deployment's (%s): the bundle would not create it", name, sa)
		}
	}
	var nsRules, clusterRules []rbacv1.PolicyRule
	used := map[string]bool{}
	sort.Slice(s.bindings, func(i, j int) bool {
		return s.bindings[i].GetKind()+"/"+s.bindings[i].GetName() < s.bindings[j].GetKind()+"/"+s.bindings[j].GetName()
	})
	for _, b := range s.bindings {
		var rb rbacv1.RoleBinding // a ClusterRoleBinding has the same roleRef and subjects
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(b.Object, &rb); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", b.GetKind(), b.GetName(), err)
		}
		for _, sub := range rb.Subjects {
			if sub.Kind != rbacv1.ServiceAccountKind || sub.Name != sa || (sub.Namespace != "" && sub.Namespace != dep.Namespace) {
				return nil, nil, fmt.Errorf("%s %s binds %s %s/%s, not the manager's ServiceAccount %s/%s", b.GetKind(), b.GetName(), sub.Kind, sub.Namespace, sub.Name, dep.Namespace, sa)
			}
		}
		key := rb.RoleRef.Kind + "/" + rb.RoleRef.Name
		role, ok := s.roles[key]
		if !ok {
			return nil, nil, fmt.Errorf("%s %s refers to %s, which the manifests do not define", b.GetKind(), b.GetName(), key)
		}
		used[key] = true
		var r rbacv1.ClusterRole
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(role.Object, &r); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", key, err)
		}
		if b.GetKind() == "ClusterRoleBinding" {
			clusterRules = append(clusterRules, r.Rules...)
		} else {
			nsRules = append(nsRules, r.Rules...)
		}
	}
	keys := make([]string, 0, len(s.roles))
	for k := range s.roles {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !used[k] {
			return nil, nil, fmt.Errorf("%s is bound to no ServiceAccount: bind it to the manager or drop it from config/rbac", k)
		}
	}
	if len(nsRules) > 0 {
		perms = []v1alpha1.StrategyDeploymentPermissions{{ServiceAccountName: sa, Rules: nsRules}}
	}
	if len(clusterRules) > 0 {
		clusterPerms = []v1alpha1.StrategyDeploymentPermissions{{ServiceAccountName: sa, Rules: clusterRules}}
	}
	return perms, clusterPerms, nil
}

// ownedCRDs describes every served version of every CRD from the Go types' markers; a CRD
// without a Go type (or a marker-less kind) is an error, not an empty entry.
func ownedCRDs(crds []*unstructured.Unstructured, descs map[string]*kindDescription) ([]v1alpha1.CRDDescription, error) {
	var out []v1alpha1.CRDDescription
	for _, u := range crds {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, crd); err != nil {
			return nil, fmt.Errorf("CRD %s: %w", u.GetName(), err)
		}
		d, ok := descs[crd.Spec.Names.Kind]
		if !ok {
			return nil, fmt.Errorf("CRD %s: no Go type %s with +kubebuilder:object:root=true in the API package", crd.Name, crd.Spec.Names.Kind)
		}
		if len(d.Spec) == 0 || len(d.Status) == 0 {
			return nil, fmt.Errorf("kind %s: no spec or no status descriptors; add %s markers to its fields", d.Kind, csvMarker)
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			out = append(out, v1alpha1.CRDDescription{
				Name: crd.Name, Version: v.Name, Kind: crd.Spec.Names.Kind,
				DisplayName: d.DisplayName, Description: d.Description, Resources: d.Resources,
				SpecDescriptors: d.Spec, StatusDescriptors: d.Status,
			})
		}
	}
	return out, nil
}

func almExamples(samples []*unstructured.Unstructured) (string, error) {
	list := make([]map[string]any, 0, len(samples))
	for _, s := range samples {
		list = append(list, s.Object)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// annotationOrder is the order annotations.yaml and the Dockerfile labels are written in.
var annotationOrder = []string{mediaTypeKey, manifestsKey, metadataKey, packageKey, channelsKey, defaultChannelKey, testMediaTypeKey, testConfigKey}

func annotations(o generateOptions) map[string]string {
	return map[string]string{
		mediaTypeKey:      registryV1,
		manifestsKey:      manifestsDir + "/",
		metadataKey:       metadataDir + "/",
		packageKey:        o.Package,
		channelsKey:       o.Channels,
		defaultChannelKey: o.DefaultChannel,
		testMediaTypeKey:  scorecardV,
		testConfigKey:     scorecardDir + "/",
	}
}

func dockerfile(ann map[string]string) []byte {
	var b strings.Builder
	b.WriteString("# Generated by `make bundle` (hack/bundlegen): the OLM bundle image. Do not edit.\n")
	b.WriteString("FROM scratch\n\n")
	b.WriteString("# The same keys as bundle/metadata/annotations.yaml: OLM reads them from either.\n")
	for _, k := range annotationOrder {
		fmt.Fprintf(&b, "LABEL %s=%s\n", k, ann[k])
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "COPY bundle/%s /%s/\n", manifestsDir, manifestsDir)
	fmt.Fprintf(&b, "COPY bundle/%s /%s/\n", metadataDir, metadataDir)
	fmt.Fprintf(&b, "COPY bundle/%s /%s/\n", scorecardDir, scorecardDir)
	return []byte(b.String())
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// writeBundle replaces the generated parts of dir (manifests, metadata, tests) with files, so a
// file that is no longer generated disappears; anything else in dir (README.md) is kept.
func writeBundle(dir string, files bundleFiles, dockerfilePath string, dockerfileContent []byte) error {
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), ".bundle-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for rel, content := range files {
		p := filepath.Join(tmp, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, top := range []string{manifestsDir, metadataDir, "tests"} {
		if err := os.RemoveAll(filepath.Join(dir, top)); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(tmp, top), filepath.Join(dir, top)); err != nil {
			return err
		}
	}
	if dockerfilePath != "" {
		return os.WriteFile(dockerfilePath, dockerfileContent, 0o644)
	}
	return nil
}
