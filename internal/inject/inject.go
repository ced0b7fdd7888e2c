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

// Package inject adds fleetmesh's sidecar proxy to a pod: the init container that writes the
// pod's traffic-capture rules and the proxy itself as a native sidecar (an init container with
// restartPolicy Always), with the volumes they need. It is pure: the agent's mutating admission
// webhook (see Handler) calls it for every pod created in a namespace labelled
// mesh.fleetmesh.io/inject=enabled.
package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// Labels and annotations.
const (
	// InjectLabel on a namespace, value InjectEnabled, turns injection on for its pods. On a pod,
	// as a label or an annotation, value InjectDisabled, opts that pod out.
	InjectLabel    = "mesh.fleetmesh.io/inject"
	InjectEnabled  = "enabled"
	InjectDisabled = "false"
	// InjectedAnnotation marks an injected pod; its value is the proxy image.
	InjectedAnnotation = "mesh.fleetmesh.io/injected"
	// PartOfLabel=PartOfValue marks fleetmesh's own pods (its control plane), never injected.
	PartOfLabel = "app.kubernetes.io/part-of"
	PartOfValue = "fleetmesh"
)

// What is added to a pod.
const (
	InitContainerName  = "fleetmesh-init"
	ProxyContainerName = "fleetmesh-proxy"

	TokenVolume = "fleetmesh-token"
	RootVolume  = "fleetmesh-root"
	WorkVolume  = "fleetmesh-work"

	TokenDir  = "/var/run/secrets/fleetmesh/tokens"
	TokenFile = "token"
	RootDir   = "/var/run/secrets/fleetmesh/root"
	// RootKey is the key of the root ConfigMap and the file the proxy reads: the member's
	// trust bundle document (SPIFFE bundle format), which authenticates the agent.
	RootKey = "roots.json"
	WorkDir = "/var/run/fleetmesh"

	// DefaultRootConfigMap is the ConfigMap, in the pod's namespace, that holds RootKey; the
	// agent keeps one in every namespace labelled for injection.
	DefaultRootConfigMap = "fleetmesh-root"
	// DefaultControlPlaneNamespace is fleetmesh's own namespace, whose pods are never injected.
	DefaultControlPlaneNamespace = "fleetmesh-system"

	// TokenExpirationSeconds is the lifetime of the projected token the proxy presents to the
	// identity API; the kubelet refreshes it at 80%.
	TokenExpirationSeconds = 3600
)

// The proxy's user and ports (cmd/proxy uses the same numbers). ProxyUID's traffic is exempt
// from capture, so the proxy's own connections leave the pod unredirected.
const (
	ProxyUID     = 1337
	OutboundPort = 15001
	InboundPort  = 15006
	DNSPort      = 15053
	AdminPort    = 15021
	MetricsPort  = 15090
	// ReadyPath on AdminPort answers 200 once the proxy has its configuration and SVID.
	ReadyPath = "/healthz/ready"
)

// Config is what every injected proxy is given.
type Config struct {
	// ProxyImage is the image of both added containers (cmd/proxy: "init" and "sidecar").
	ProxyImage string
	// XDSAddress and IdentityAddress (host:port) are the member's agent: its ADS server and its
	// identity API.
	XDSAddress      string
	IdentityAddress string
	// TrustDomain is the member's SPIFFE trust domain, ClusterID its MCS cluster ID.
	TrustDomain string
	ClusterID   string
	// RootConfigMap defaults to DefaultRootConfigMap.
	RootConfigMap string
	// ControlPlaneNamespace defaults to DefaultControlPlaneNamespace.
	ControlPlaneNamespace string
}

// Validate reports a config that would inject a proxy unable to start.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, value string }{
		{"proxy image", c.ProxyImage}, {"xDS address", c.XDSAddress}, {"identity address", c.IdentityAddress},
		{"trust domain", c.TrustDomain}, {"cluster ID", c.ClusterID},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("inject: the %s is required", f.name))
		}
	}
	return errors.Join(errs...)
}

func (c Config) rootConfigMap() string {
	if c.RootConfigMap != "" {
		return c.RootConfigMap
	}
	return DefaultRootConfigMap
}

func (c Config) controlPlaneNamespace() string {
	if c.ControlPlaneNamespace != "" {
		return c.ControlPlaneNamespace
	}
	return DefaultControlPlaneNamespace
}

// Reasons Inject gives for not injecting.
const (
	SkippedHostNetwork     = "the pod uses the host's network: capture rules would apply to the node"
	SkippedOptOutLabel     = "opted out by the label " + InjectLabel + "=" + InjectDisabled
	SkippedOptOutAnnot     = "opted out by the annotation " + InjectLabel + "=" + InjectDisabled
	SkippedControlPlane    = "a fleetmesh control-plane pod"
	SkippedAlreadyInjected = "already injected"
	// The API server refuses a projected ServiceAccount token in a pod without a ServiceAccount
	// (the ServiceAccount admission plugin, which runs before webhooks, normally sets "default").
	SkippedNoServiceAccount = "the pod has no ServiceAccount, which the proxy's identity is"
)

// Inject returns a copy of pod with the sidecar proxy added, or the reason it is not injected
// (and pod itself, untouched). It never changes labels. Injecting an injected pod changes nothing.
// The pod's namespace must be set (an admission request carries it beside the object).
func Inject(pod *corev1.Pod, cfg Config) (mutated *corev1.Pod, skipped string) {
	if reason := skipReason(pod, cfg); reason != "" {
		return pod, reason
	}
	out := pod.DeepCopy()
	spec := &out.Spec
	probers := rewriteProbes(spec.Containers)
	proxy := proxyContainer(cfg)
	if len(probers) > 0 {
		data, _ := json.Marshal(probers) // strings and numbers only: always marshals
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: AppProbersEnv, Value: string(data)})
	}
	spec.InitContainers = append([]corev1.Container{initContainer(out, cfg), proxy}, spec.InitContainers...)
	spec.Volumes = append(spec.Volumes, volumes(cfg)...)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[InjectedAnnotation] = cfg.ProxyImage
	return out, ""
}

func skipReason(pod *corev1.Pod, cfg Config) string {
	switch {
	case pod.Annotations[InjectedAnnotation] != "" || hasContainer(pod, ProxyContainerName) || hasContainer(pod, InitContainerName):
		return SkippedAlreadyInjected
	case pod.Labels[InjectLabel] == InjectDisabled:
		return SkippedOptOutLabel
	case pod.Annotations[InjectLabel] == InjectDisabled:
		return SkippedOptOutAnnot
	case pod.Namespace == cfg.controlPlaneNamespace() || pod.Labels[PartOfLabel] == PartOfValue:
		return SkippedControlPlane
	case pod.Spec.HostNetwork:
		return SkippedHostNetwork
	case pod.Spec.ServiceAccountName == "":
		return SkippedNoServiceAccount
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == TokenVolume || v.Name == RootVolume || v.Name == WorkVolume {
			return fmt.Sprintf("the pod already has a volume named %s", v.Name)
		}
	}
	return ""
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// AppProbersEnv, on the proxy container, holds the application's HTTP probes the proxy answers
// for (JSON AppProbers), as Istio's ISTIO_KUBE_APP_PROBERS. It and the probe types live in
// internal/wire, the agent's contract with the proxy, so that the proxy links no Kubernetes API.
const AppProbersEnv = wire.AppProbersEnv

// AppProbePrefix is the path prefix of rewritten probes on the proxy's AdminPort:
// /app-health/<container>/<readyz|livez|startupz>.
const AppProbePrefix = wire.AppProbePrefix

// AppProbe is an application's original probe: the proxy runs it against the application on
// the pod's loopback. An httpGet probe has Path and Scheme; a tcpSocket probe has TCP set (the
// probe passes when the port accepts a connection); a gRPC probe has GRPC set and Service (the
// standard gRPC health check).
type AppProbe = wire.AppProbe

// AppProbers maps a rewritten probe's path to the application's original probe.
type AppProbers = wire.AppProbers

// rewriteProbes points the app containers' httpGet, tcpSocket and gRPC probes at the proxy's
// AdminPort, as Istio's probe rewrite does: the kubelet's plaintext probes then never need the
// application's port to bypass the capture (which would let any plaintext caller past mTLS),
// and the proxy runs each probe against the application locally.
func rewriteProbes(containers []corev1.Container) AppProbers {
	out := AppProbers{}
	for i := range containers {
		c := &containers[i]
		for kind, p := range map[string]*corev1.Probe{"readyz": c.ReadinessProbe, "livez": c.LivenessProbe, "startupz": c.StartupProbe} {
			var probe AppProbe
			switch {
			case p == nil:
				continue
			case p.HTTPGet != nil:
				probe = AppProbe{Port: resolvePort(*c, p.HTTPGet.Port), Path: p.HTTPGet.Path, Scheme: string(p.HTTPGet.Scheme)}
			case p.TCPSocket != nil:
				probe = AppProbe{Port: resolvePort(*c, p.TCPSocket.Port), TCP: true}
			case p.GRPC != nil:
				probe = AppProbe{Port: p.GRPC.Port, GRPC: true, Service: ptr.Deref(p.GRPC.Service, "")}
			default:
				continue // exec probes run inside the container
			}
			if probe.Port == 0 {
				continue // the kubelet fails it anyway
			}
			path := AppProbePrefix + c.Name + "/" + kind
			out[path] = probe
			p.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AdminPort), Scheme: corev1.URISchemeHTTP}
			p.TCPSocket, p.GRPC = nil, nil
		}
	}
	return out
}

// ProbePorts are the ports the kubelet probes in the pod's own containers (the app containers
// and its native sidecars): httpGet, tcpSocket and gRPC probes, named ports resolved, sorted
// and without duplicates. The init container leaves them uncaptured, since the kubelet's
// probes come from the node in plaintext: so Inject computes them after rewriting the app
// containers' probes to AdminPort, and only the user's own native sidecars' probe ports remain
// (an application port here would be reachable in plaintext by anyone).
func ProbePorts(pod *corev1.Pod) []int32 {
	var ports []int32
	var containers []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			containers = append(containers, c)
		}
	}
	containers = append(containers, pod.Spec.Containers...)
	for _, c := range containers {
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if p == nil {
				continue
			}
			var port *intstr.IntOrString
			switch {
			case p.HTTPGet != nil:
				port = &p.HTTPGet.Port
			case p.TCPSocket != nil:
				port = &p.TCPSocket.Port
			case p.GRPC != nil:
				ports = append(ports, p.GRPC.Port)
			}
			if port == nil {
				continue
			}
			if n := resolvePort(c, *port); n > 0 && n != AdminPort {
				ports = append(ports, n)
			}
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// resolvePort is a probe's port number: the number itself, or the container port of that name
// (0 if there is none: the kubelet would fail the probe anyway).
func resolvePort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	if n, err := strconv.ParseInt(p.StrVal, 10, 32); err == nil {
		return int32(n)
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// CheckAnnotations refuses a pod whose capture annotations (wire.Exclude*Annotation) do not
// parse, naming the annotation and what it takes: the webhook denies such a pod rather than
// capture traffic its owner meant to leave out.
func CheckAnnotations(pod *corev1.Pod) error {
	var errs []error
	for _, name := range []string{wire.ExcludeInboundPortsAnnotation, wire.ExcludeOutboundPortsAnnotation} {
		if _, err := wire.ParsePortList(pod.Annotations[name]); err != nil {
			errs = append(errs, fmt.Errorf("metadata.annotations[%s]: %w: want comma-separated ports", name, err))
		}
	}
	if _, err := wire.ParsePrefixList(pod.Annotations[wire.ExcludeOutboundCIDRsAnnotation]); err != nil {
		errs = append(errs, fmt.Errorf("metadata.annotations[%s]: %w: want comma-separated CIDRs or addresses", wire.ExcludeOutboundCIDRsAnnotation, err))
	}
	return errors.Join(errs...)
}

func initContainer(pod *corev1.Pod, cfg Config) corev1.Container {
	args := []string{
		"init",
		"--proxy-uid=" + strconv.Itoa(ProxyUID),
		"--outbound-port=" + strconv.Itoa(OutboundPort),
		"--inbound-port=" + strconv.Itoa(InboundPort),
		"--dns-port=" + strconv.Itoa(DNSPort),
	}
	inbound := ProbePorts(pod)
	excluded, _ := wire.ParsePortList(pod.Annotations[wire.ExcludeInboundPortsAnnotation]) // checked by CheckAnnotations
	for _, p := range excluded {
		inbound = append(inbound, int32(p))
	}
	slices.Sort(inbound)
	if inbound = slices.Compact(inbound); len(inbound) > 0 {
		s := make([]string, len(inbound))
		for i, p := range inbound {
			s[i] = strconv.Itoa(int(p))
		}
		args = append(args, "--exclude-inbound-ports="+strings.Join(s, ","))
	}
	// The outbound lists go to proxy init as the user wrote them (CheckAnnotations parsed them
	// as init will).
	for _, a := range []struct{ annotation, flag string }{
		{wire.ExcludeOutboundPortsAnnotation, "--exclude-outbound-ports="},
		{wire.ExcludeOutboundCIDRsAnnotation, "--exclude-outbound-cidrs="},
	} {
		if v := strings.TrimSpace(pod.Annotations[a.annotation]); v != "" {
			args = append(args, a.flag+strings.ReplaceAll(v, " ", ""))
		}
	}
	return corev1.Container{
		Name:  InitContainerName,
		Image: cfg.ProxyImage,
		Args:  args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func proxyContainer(cfg Config) corev1.Container {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	ready := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: ReadyPath, Port: intstr.FromInt32(AdminPort)}},
			PeriodSeconds:    period,
			TimeoutSeconds:   3,
			FailureThreshold: failures,
		}
	}
	return corev1.Container{
		Name:  ProxyContainerName,
		Image: cfg.ProxyImage,
		Args: []string{
			"sidecar",
			"--xds-address=" + cfg.XDSAddress,
			"--identity-address=" + cfg.IdentityAddress,
			"--trust-domain=" + cfg.TrustDomain,
			"--cluster-id=" + cfg.ClusterID,
			"--trust-file=" + RootDir + "/" + RootKey,
			"--token-file=" + TokenDir + "/" + TokenFile,
			"--work-dir=" + WorkDir,
			"--admin-port=" + strconv.Itoa(AdminPort),
			"--metrics-port=" + strconv.Itoa(MetricsPort),
		},
		// A native sidecar: started before the app containers (once its startup probe passes)
		// and stopped after them.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Env: []corev1.EnvVar{
			field("POD_NAME", "metadata.name"),
			field("POD_NAMESPACE", "metadata.namespace"),
			field("POD_IP", "status.podIP"),
			field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
			field("NODE_NAME", "spec.nodeName"),
		},
		Ports: []corev1.ContainerPort{
			{ContainerPort: OutboundPort, Protocol: corev1.ProtocolTCP},
			{ContainerPort: InboundPort, Protocol: corev1.ProtocolTCP},
			{Name: "fm-health", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
			{Name: "fm-metrics", ContainerPort: MetricsPort, Protocol: corev1.ProtocolTCP},
		},
		// Up to 10 minutes to get configuration and an SVID, probed every second so the app
		// starts as soon as the proxy is ready.
		StartupProbe:   ready(1, 600),
		ReadinessProbe: ready(15, 4),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](ProxyUID),
			RunAsGroup:               ptr.To[int64](ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
			{Name: RootVolume, MountPath: RootDir, ReadOnly: true},
			{Name: WorkVolume, MountPath: WorkDir},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func volumes(cfg Config) []corev1.Volume {
	return []corev1.Volume{
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: wire.IdentityAudience, ExpirationSeconds: ptr.To[int64](TokenExpirationSeconds), Path: TokenFile,
			}}},
		}}},
		{Name: RootVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cfg.rootConfigMap()},
			Items:                []corev1.KeyToPath{{Key: RootKey, Path: RootKey}},
		}}},
		{Name: WorkVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	}
}
