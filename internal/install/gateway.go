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

package install

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/inject"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// The east-west gateway of a member (networking: Gateway): the proxy binary in its gateway role,
// a Deployment and a LoadBalancer Service in the control plane's namespace. It holds no keys and
// needs no Kubernetes API access: it follows the agent's xDS (authenticating the agent by the
// member's bundle, the agent's own BundleConfigMap) and passes mTLS through by SNI.
// Its user, roots directory and admin and metrics ports are the injected sidecar's (package
// inject): one uid to allow in pod security policies, the same probes.
const GatewayName = "fleetmesh-gateway"

// GatewayEnabled tells whether members of the installation run an east-west gateway.
func GatewayEnabled(mi *meshv1alpha1.MeshInstallation) bool {
	return mi.Spec.ServiceFederation.Networking == meshv1alpha1.NetworkingGateway
}

// AgentXDSAddress is the agent Service's xDS address, as a member's pods reach it.
func AgentXDSAddress() string {
	return AgentName + "." + Namespace + ".svc:" + strconv.Itoa(XDSPort)
}

func gatewaySelector() map[string]string {
	return map[string]string{"app.kubernetes.io/name": GatewayName}
}

// gatewayObjects are the gateway's ServiceAccount (no token mounted, no RBAC), Service and
// Deployment.
func gatewayObjects(mi *meshv1alpha1.MeshInstallation, mc *meshv1alpha1.MeshCluster, labels map[string]string) []client.Object {
	return []client.Object{
		&corev1.ServiceAccount{
			TypeMeta:                     typeMeta("v1", "ServiceAccount"),
			ObjectMeta:                   meta(GatewayName, labels),
			AutomountServiceAccountToken: ptr.To(false),
		},
		gatewayService(labels),
		gatewayDeployment(mi, mc, labels),
	}
}

// gatewayService is where other networks reach the gateway: a LoadBalancer, whose address (or
// whatever routes to it) is given on the member's Cluster (mesh.fleetmesh.io/gateway-address).
func gatewayService(labels map[string]string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: meta(GatewayName, merge(labels, gatewaySelector())),
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              gatewaySelector(),
			Ports: []corev1.ServicePort{{
				Name: "tls-passthrough", Port: wire.GatewayPort, TargetPort: intstr.FromString("tls-passthrough"), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

func gatewayDeployment(mi *meshv1alpha1.MeshInstallation, mc *meshv1alpha1.MeshCluster, labels map[string]string) *appsv1.Deployment {
	podLabels := merge(map[string]string{"app.kubernetes.io/part-of": "fleetmesh"}, gatewaySelector())
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: meta(GatewayName, merge(labels, gatewaySelector())),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: gatewaySelector()},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            GatewayName,
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](inject.ProxyUID),
						RunAsGroup:     ptr.To[int64](inject.ProxyUID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  "gateway",
						Image: ProxyImage(mi.Spec.ControlPlane),
						Args: []string{
							"gateway",
							"--xds-address=" + AgentXDSAddress(),
							"--trust-domain=" + mc.Spec.TrustDomain,
							"--cluster-id=" + ClusterID(mc),
							"--trust-file=" + inject.RootDir + "/" + wire.BundleKeyDocument,
							"--bind-address=$(POD_IP)",
							"--port=" + strconv.Itoa(wire.GatewayPort),
							"--admin-port=" + strconv.Itoa(inject.AdminPort),
							"--metrics-port=" + strconv.Itoa(inject.MetricsPort),
						},
						Env: []corev1.EnvVar{
							fieldEnv("POD_NAME", "metadata.name"),
							fieldEnv("POD_NAMESPACE", "metadata.namespace"),
							fieldEnv("POD_IP", "status.podIP"),
						},
						Ports: []corev1.ContainerPort{
							{Name: "tls-passthrough", ContainerPort: wire.GatewayPort, Protocol: corev1.ProtocolTCP},
							{Name: "fm-health", ContainerPort: inject.AdminPort, Protocol: corev1.ProtocolTCP},
							{Name: "fm-metrics", ContainerPort: inject.MetricsPort, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: inject.ReadyPath, Port: intstr.FromString("fm-health")}},
							PeriodSeconds: 5, TimeoutSeconds: 2, FailureThreshold: 3,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("fm-health")}},
							PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3,
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts:             []corev1.VolumeMount{{Name: "root", MountPath: inject.RootDir, ReadOnly: true}},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
					Volumes: []corev1.Volume{{
						Name: "root",
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: wire.BundleConfigMap},
							Items:                []corev1.KeyToPath{{Key: wire.BundleKeyDocument, Path: wire.BundleKeyDocument}},
						}},
					}},
				},
			},
		},
	}
}
