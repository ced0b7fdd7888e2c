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

// Package install renders the fleetmesh control plane of one member: every object the operator
// applies into the member, as pure data derived from the MeshInstallation and the MeshCluster.
package install

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/inject"
)

// Names of what is installed in every member.
const (
	Namespace      = "fleetmesh-system"
	AgentName      = "fleetmesh-agent"
	ConfigMapName  = "fleetmesh-agent-config"
	ConfigFileName = "agent.yaml"
	ConfigMountDir = "/etc/fleetmesh"

	// ProbePort serves /healthz, /readyz and /version.
	ProbePort = 8081
	// XDSPort serves ADS to data-plane clients.
	XDSPort = 15010
	// IdentityPort serves the workload identity API.
	IdentityPort = 15012
	// BundlePort serves the SPIFFE bundle endpoint.
	BundlePort = 8443
	// DNSPort is where the agent's pods answer the clusterset.local zone (UDP and TCP);
	// the agent Service offers it on the DNS port, 53, for the member's CoreDNS to forward to.
	DNSPort        = 5353
	DNSServicePort = 53
	// WebhookPort serves the sidecar injector (HTTPS, the member CA's certificate), on the agent
	// Service and the agent's pods alike.
	WebhookPort = 15017

	// WebhookConfigurationName is the MutatingWebhookConfiguration of the sidecar injector, and
	// WebhookName its one webhook. The operator applies it without a caBundle: the agent keeps
	// caBundle (its own field manager) equal to the member CA's roots.
	WebhookConfigurationName = "fleetmesh-sidecar-injector"
	WebhookName              = "sidecar.mesh.fleetmesh.io"
	// WebhookTimeoutSeconds bounds what a pod creation waits for the injector.
	WebhookTimeoutSeconds = 5

	// DefaultProxyImage is the sidecar proxy's repository when the spec names none; it is
	// tagged with the agent's version.
	DefaultProxyImage = "ghcr.io/fleetmesh/proxy"

	// ConfigHashAnnotation on the pod template rolls the agent when its config changes.
	ConfigHashAnnotation = "mesh.fleetmesh.io/config-hash"
)

// Labels every installed object carries, so the operator can find (and prune, and uninstall)
// exactly what it installed. The kwok-based test fleet also recognises fleetmesh's own pods by
// part-of; nothing here exists for tests.
func Labels(installation string) map[string]string {
	return map[string]string{
		meshv1alpha1.ManagedByLabel:    meshv1alpha1.ManagedByValue,
		"app.kubernetes.io/part-of":    "fleetmesh",
		meshv1alpha1.InstallationLabel: installation,
	}
}

// AgentConfig is the agent's configuration file, derived from the spec.
type AgentConfig struct {
	Mesh    string `json:"mesh"`
	Cluster string `json:"cluster"`
	// ClusterID is the member's MCS cluster ID: the source-cluster label of its endpoints.
	ClusterID   string                `json:"clusterID"`
	TrustDomain string                `json:"trustDomain"`
	Locality    meshv1alpha1.Locality `json:"locality,omitempty"`
	Network     string                `json:"network,omitempty"`
	SVIDTTL     string                `json:"svidTTL"`
	CATTL       string                `json:"caTTL"`
	// CASource is how the member's CA is made: CASelfSigned or CACertManager.
	CASource string `json:"caSource"`
	LogLevel string `json:"logLevel"`
	// Failover and Authorization are the data plane's policy, as the spec gives them.
	Failover      meshv1alpha1.FailoverSpec      `json:"failover,omitempty"`
	Authorization meshv1alpha1.AuthorizationSpec `json:"authorization,omitempty"`
}

// The CA sources of AgentConfig.CASource.
const (
	CASelfSigned  = "selfSigned"
	CACertManager = "certManager"
)

func caSource(mi *meshv1alpha1.MeshInstallation) string {
	if mi.Spec.Trust.CA != nil && mi.Spec.Trust.CA.CertManager != nil {
		return CACertManager
	}
	return CASelfSigned
}

// Render returns every object of the member's control plane, in apply order (CRDs and the
// namespace first; the ClusterProperties, whose CRD is rendered here too, last). It does not
// mutate its inputs.
func Render(mi *meshv1alpha1.MeshInstallation, mc *meshv1alpha1.MeshCluster) ([]client.Object, error) {
	if mi == nil || mc == nil {
		return nil, fmt.Errorf("render: installation and member are required")
	}
	labels := Labels(mi.Name)
	crds, err := mcsCRDs(labels)
	if err != nil {
		return nil, err
	}
	cfg := AgentConfig{
		Mesh:          mi.Name,
		Cluster:       mc.Spec.ClusterRef.Name,
		ClusterID:     ClusterID(mc),
		Failover:      mi.Spec.Failover,
		Authorization: mi.Spec.Authorization,
		TrustDomain:   mc.Spec.TrustDomain,
		Locality:      mc.Spec.Locality,
		Network:       mc.Spec.Network,
		SVIDTTL:       mi.Spec.Trust.SVIDTTLOrDefault().String(),
		CATTL:         mi.Spec.Trust.CATTLOrDefault().String(),
		CASource:      caSource(mi),
		LogLevel:      string(mi.Spec.ControlPlane.LogLevel),
	}
	cfgYAML, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("render agent config: %w", err)
	}
	// The agent applies a changed data-plane policy (failover, authorization) live, from its
	// watch of this ConfigMap: only the rest of its configuration rolls it.
	rolling := cfg
	rolling.Failover, rolling.Authorization = meshv1alpha1.FailoverSpec{}, meshv1alpha1.AuthorizationSpec{}
	rollingYAML, err := yaml.Marshal(rolling)
	if err != nil {
		return nil, fmt.Errorf("render agent config: %w", err)
	}
	sum := sha256.Sum256(rollingYAML)

	objs := make([]client.Object, 0, 16)
	for _, c := range crds {
		objs = append(objs, c)
	}
	objs = append(objs, clusterPropertyCRD(labels))
	objs = append(objs,
		&corev1.Namespace{
			TypeMeta:   typeMeta("v1", "Namespace"),
			ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: merge(labels, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})},
		},
		&corev1.ServiceAccount{
			TypeMeta:   typeMeta("v1", "ServiceAccount"),
			ObjectMeta: meta(AgentName, labels),
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: meta(ConfigMapName, labels),
			Data:       map[string]string{ConfigFileName: string(cfgYAML)},
		},
		agentRole(labels), agentRoleBinding(labels),
		agentClusterRole(mi.Name, labels), agentClusterRoleBinding(mi.Name, labels),
		agentService(labels),
		sidecarInjector(labels),
		agentDeployment(mi, labels, hex.EncodeToString(sum[:8])),
	)
	if GatewayEnabled(mi) {
		objs = append(objs, gatewayObjects(mi, mc, labels)...)
	}
	objs = append(objs,
		clusterProperty(ClusterIDProperty, ClusterID(mc), labels),
		clusterProperty(ClusterSetProperty, mi.Name, labels),
	)
	return objs, nil
}

// ClusterRoleName is the agent's ClusterRole, named per installation so two meshes never share it.
func ClusterRoleName(installation string) string { return "fleetmesh-agent-" + installation }

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func meta(name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// agentRole is what the agent may do in its own namespace: keep its CA key Secret, publish its
// status, bundle and CSR, and read what the operator writes back.
func agentRole(labels map[string]string) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
		ObjectMeta: meta(AgentName, labels),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	}
}

func agentRoleBinding(labels map[string]string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: meta(AgentName, labels),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: AgentName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: AgentName, Namespace: Namespace}},
	}
}

// agentClusterRole is read-only across the member (services and endpoints for xDS, exports and
// imports) plus TokenReview for the identity API. No Secrets outside its namespace. For the
// sidecar injector, writes limited by name: the caBundle of the one webhook configuration, and
// the root ConfigMap in the namespaces labelled for injection (the agent writes it by
// server-side apply, a PATCH the API server authorises as "create" of that name when the object
// does not exist yet, so no ConfigMap of any other name can be created). list and watch by name
// are honoured for requests with a metadata.name field selector, as the agent's informers make.
func agentClusterRole(installation string, labels map[string]string) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: ClusterRoleName(installation), Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "namespaces"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports", "serviceimports"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
				ResourceNames: []string{WebhookConfigurationName}, Verbs: []string{"get", "list", "watch", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"},
				ResourceNames: []string{inject.DefaultRootConfigMap}, Verbs: []string{"get", "list", "watch", "create", "patch"}},
		},
	}
}

func agentClusterRoleBinding(installation string, labels map[string]string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: ClusterRoleName(installation), Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleName(installation)},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: AgentName, Namespace: Namespace}},
	}
}

func agentSelector() map[string]string {
	return map[string]string{"app.kubernetes.io/name": AgentName}
}

func agentService(labels map[string]string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: meta(AgentName, merge(labels, agentSelector())),
		Spec: corev1.ServiceSpec{
			Selector: agentSelector(),
			Ports: []corev1.ServicePort{
				{Name: "grpc-xds", Port: XDSPort, TargetPort: intstr.FromString("grpc-xds"), Protocol: corev1.ProtocolTCP},
				{Name: "grpc-identity", Port: IdentityPort, TargetPort: intstr.FromString("grpc-identity"), Protocol: corev1.ProtocolTCP},
				{Name: "https-bundle", Port: BundlePort, TargetPort: intstr.FromString("https-bundle"), Protocol: corev1.ProtocolTCP},
				{Name: "https-webhook", Port: WebhookPort, TargetPort: intstr.FromString("https-webhook"), Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: DNSServicePort, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: DNSServicePort, TargetPort: intstr.FromString("dns-tcp"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// sidecarInjector is the agent's mutating webhook: pods created in namespaces labelled
// mesh.fleetmesh.io/inject=enabled, except pods labelled mesh.fleetmesh.io/inject=false and
// fleetmesh's own namespace. failurePolicy Ignore: an agent that is down, not ready or slow
// never blocks a pod creation; such pods run without a sidecar (and the API server logs the
// failed call). reinvocationPolicy IfNeeded: a later webhook that adds containers gets the
// injector called again (which changes nothing on an injected pod).
func sidecarInjector(labels map[string]string) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   typeMeta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigurationName, Labels: labels},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: WebhookName,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Namespace: Namespace, Name: AgentName, Path: ptr.To(inject.Path), Port: ptr.To[int32](WebhookPort),
			}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy: ptr.To(admissionregistrationv1.Ignore),
			MatchPolicy:   ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{inject.InjectLabel: inject.InjectEnabled},
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{Namespace}},
				},
			},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: inject.InjectLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{inject.InjectDisabled}},
			}},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To[int32](WebhookTimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
		}},
	}
}

// ProxyImage is the sidecar proxy image the agent injects: the spec's repository (or
// DefaultProxyImage), tagged with the control plane's version.
func ProxyImage(cp meshv1alpha1.ControlPlaneSpec) string {
	repo := cp.ProxyImage
	if repo == "" {
		repo = DefaultProxyImage
	}
	return repo + ":" + cp.Version
}

// DefaultResources are the agent's resources when the spec sets none.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

func agentDeployment(mi *meshv1alpha1.MeshInstallation, labels map[string]string, configHash string) *appsv1.Deployment {
	cp := mi.Spec.ControlPlane
	resources := cp.Resources.Requirements()
	if len(resources.Requests) == 0 && len(resources.Limits) == 0 {
		resources = DefaultResources()
	}
	podLabels := merge(map[string]string{"app.kubernetes.io/part-of": "fleetmesh"}, agentSelector())
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("probes")}},
			PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3,
		}
	}
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: meta(AgentName, merge(labels, agentSelector())),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(ptr.Deref(cp.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: agentSelector()},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{ConfigHashAnnotation: configHash},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName:            AgentName,
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  "agent",
						Image: cp.Image + ":" + cp.Version,
						Args: []string{
							"--namespace=$(POD_NAMESPACE)",
							"--config=" + ConfigMountDir + "/" + ConfigFileName,
							"--health-probe-bind-address=$(POD_IP):" + fmt.Sprint(ProbePort),
							"--identity-bind-address=$(POD_IP):" + fmt.Sprint(IdentityPort),
							"--bundle-bind-address=$(POD_IP):" + fmt.Sprint(BundlePort),
							"--xds-bind-address=$(POD_IP):" + fmt.Sprint(XDSPort),
							"--injector-bind-address=$(POD_IP):" + fmt.Sprint(WebhookPort),
							"--dns-bind-address=$(POD_IP):" + fmt.Sprint(DNSPort),
							"--proxy-image=" + ProxyImage(cp),
							"--v=" + klogVerbosity(cp.LogLevel),
						},
						Env: []corev1.EnvVar{
							fieldEnv("POD_IP", "status.podIP"),
							fieldEnv("POD_NAMESPACE", "metadata.namespace"),
							fieldEnv("POD_NAME", "metadata.name"),
						},
						Ports: []corev1.ContainerPort{
							{Name: "probes", ContainerPort: ProbePort, Protocol: corev1.ProtocolTCP},
							{Name: "grpc-xds", ContainerPort: XDSPort, Protocol: corev1.ProtocolTCP},
							{Name: "grpc-identity", ContainerPort: IdentityPort, Protocol: corev1.ProtocolTCP},
							{Name: "https-bundle", ContainerPort: BundlePort, Protocol: corev1.ProtocolTCP},
							{Name: "https-webhook", ContainerPort: WebhookPort, Protocol: corev1.ProtocolTCP},
							{Name: "dns", ContainerPort: DNSPort, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: DNSPort, Protocol: corev1.ProtocolTCP},
						},
						LivenessProbe:  probe("/healthz"),
						ReadinessProbe: probe("/readyz"),
						Resources:      resources,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: ConfigMountDir, ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{
						Name:         "config",
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName}}},
					}},
				},
			},
		},
	}
}

// fieldEnv is an environment variable from the downward API's field at path.
func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func klogVerbosity(l meshv1alpha1.LogLevel) string {
	switch l {
	case meshv1alpha1.LogLevelDebug:
		return "4"
	case meshv1alpha1.LogLevelWarn, meshv1alpha1.LogLevelError:
		return "0"
	default:
		return "2"
	}
}

// mcsCRDs are the Multi-Cluster Services CRDs exactly as the pinned mcs-api module ships them.
func mcsCRDs(labels map[string]string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	parsed, err := parsedMCSCRDs()
	if err != nil {
		return nil, err
	}
	out := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(parsed))
	for _, p := range parsed {
		crd := p.DeepCopy()
		crd.Labels = merge(crd.Labels, labels)
		out = append(out, crd)
	}
	return out, nil
}

// parsedMCSCRDs parses the embedded CRDs once: every reconcile of every member renders them, and
// parsing their YAML costs far more than copying the result.
var parsedMCSCRDs = sync.OnceValues(func() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, raw := range [][]byte{mcscrd.ServiceExportCRD, mcscrd.ServiceImportCRD} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(raw, crd); err != nil {
			return nil, fmt.Errorf("parse embedded MCS CRD: %w", err)
		}
		crd.TypeMeta = typeMeta("apiextensions.k8s.io/v1", "CustomResourceDefinition")
		out = append(out, crd)
	}
	return out, nil
})

// IsCRD reports whether an object is a CustomResourceDefinition: uninstall never deletes those,
// since deleting a CRD deletes every user object of its kind.
func IsCRD(obj client.Object) bool {
	_, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
	return ok || obj.GetObjectKind().GroupVersionKind().Kind == "CustomResourceDefinition"
}

// PrunableKinds lists, in deletion order, the kinds Render can produce that the operator may
// delete from a member (never CRDs). Namespaced kinds come before the namespace itself.
func PrunableKinds() []metav1.TypeMeta {
	kinds := []metav1.TypeMeta{
		// The webhook first: once the agent is going, pods must not wait for it.
		typeMeta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		typeMeta("apps/v1", "Deployment"),
		typeMeta("v1", "Service"),
		typeMeta("v1", "ConfigMap"),
		typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
		typeMeta("rbac.authorization.k8s.io/v1", "Role"),
		typeMeta("v1", "ServiceAccount"),
		typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
		typeMeta("v1", "Namespace"),
		typeMeta(ClusterPropertyGroup+"/v1alpha1", "ClusterProperty"),
	}
	return kinds
}

// UninstallKinds are PrunableKinds plus what service federation derived in the member
// (ServiceImports and MCS EndpointSlices carry the installation's labels too): a member that
// leaves keeps nothing of the mesh. Derived kinds come first, the namespace still last.
func UninstallKinds() []metav1.TypeMeta {
	return append([]metav1.TypeMeta{
		typeMeta("multicluster.x-k8s.io/v1beta1", "ServiceImport"),
		typeMeta("discovery.k8s.io/v1", "EndpointSlice"),
	}, PrunableKinds()...)
}

// Key identifies an object across kinds.
type Key struct {
	Kind      string
	Namespace string
	Name      string
}

// KeyOf returns an object's key.
func KeyOf(obj client.Object) Key {
	return Key{Kind: obj.GetObjectKind().GroupVersionKind().Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// Stale returns the keys of installed objects that are no longer rendered, in a stable order.
func Stale(installed []Key, rendered []client.Object) []Key {
	want := map[Key]bool{}
	for _, o := range rendered {
		want[KeyOf(o)] = true
	}
	var out []Key
	for _, k := range installed {
		if !want[k] {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Waves splits rendered objects into groups that may each be applied in parallel, in order:
// CRDs and namespaces first, then the objects that live in them or need nothing else, then
// the custom resources whose CRDs are rendered here (DirectResources) and the Deployments, so
// that their pods normally find the ServiceAccount and ConfigMap of the wave before in place (a
// caller that goes on past a failed wave only delays the pods: they wait for what they mount).
// Order within a wave is the rendered order.
func Waves(objs []client.Object) [][]client.Object {
	var first, middle, last []client.Object
	for _, o := range objs {
		kind := o.GetObjectKind().GroupVersionKind().Kind
		_, direct := DirectResources()[kind]
		switch {
		case IsCRD(o) || kind == "Namespace":
			first = append(first, o)
		case direct || kind == "Deployment":
			last = append(last, o)
		default:
			middle = append(middle, o)
		}
	}
	var waves [][]client.Object
	for _, w := range [][]client.Object{first, middle, last} {
		if len(w) > 0 {
			waves = append(waves, w)
		}
	}
	return waves
}
