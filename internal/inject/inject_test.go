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

package inject

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	jsonpatchv5 "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func testConfig() Config {
	return Config{
		ProxyImage:      "ghcr.io/fleetmesh/proxy:v0.1.0",
		XDSAddress:      "10.244.1.130:15010",
		IdentityAddress: "10.244.1.130:15012",
		TrustDomain:     "east.fleet.demo",
		ClusterID:       "east.fleet",
	}
}

// appPod is an ordinary workload: one container with probes on a named and a numbered port,
// an app init container, labels and annotations of its own.
func appPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop",
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"team": "shop"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web",
			InitContainers:     []corev1.Container{{Name: "migrate", Image: "web:1"}},
			Containers: []corev1.Container{{
				Name: "web", Image: "web:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("admin")}}},
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
				StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/started", Port: intstr.FromString("admin")}}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

func TestInjectAddsTheSidecarFieldByField(t *testing.T) {
	cfg := testConfig()
	pod := appPod()
	before := pod.DeepCopy()
	got, skipped := Inject(pod, cfg)
	if skipped != "" {
		t.Fatalf("skipped: %s", skipped)
	}
	if !apiequality.Semantic.DeepEqual(pod, before) {
		t.Error("Inject changed its input")
	}
	if !reflect.DeepEqual(got.Labels, before.Labels) {
		t.Errorf("labels changed: %v", got.Labels)
	}
	if got.Annotations[InjectedAnnotation] != cfg.ProxyImage || got.Annotations["team"] != "shop" {
		t.Errorf("annotations %v", got.Annotations)
	}
	// The app's probes (HTTP and TCP alike) go to the proxy, which runs them against the app;
	// everything else about the app containers is left as it is.
	web := got.Spec.Containers[0]
	for name, p := range map[string]*corev1.Probe{"readyz": web.ReadinessProbe, "startupz": web.StartupProbe, "livez": web.LivenessProbe} {
		if p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != AdminPort || p.HTTPGet.Path != AppProbePrefix+"web/"+name || p.TCPSocket != nil {
			t.Errorf("%s probe not rewritten to the proxy: %+v", name, p.ProbeHandler)
		}
	}
	unprobed := web.DeepCopy()
	unprobed.ReadinessProbe, unprobed.StartupProbe, unprobed.LivenessProbe = before.Spec.Containers[0].ReadinessProbe, before.Spec.Containers[0].StartupProbe, before.Spec.Containers[0].LivenessProbe
	if !apiequality.Semantic.DeepEqual(*unprobed, before.Spec.Containers[0]) {
		t.Error("the app containers must be left as they are but for their probes")
	}

	// Order: capture rules, then the proxy (so the app's own init containers already have it).
	var names []string
	for _, c := range got.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{InitContainerName, ProxyContainerName, "migrate"}) {
		t.Fatalf("init containers %v", names)
	}

	ini := got.Spec.InitContainers[0]
	if ini.Image != cfg.ProxyImage {
		t.Errorf("init image %s", ini.Image)
	}
	// No application port is left uncaptured: the tcpSocket probe of 8080 goes through the proxy.
	wantInitArgs := []string{"init", "--proxy-uid=1337", "--outbound-port=15001", "--inbound-port=15006", "--dns-port=15053"}
	if !slices.Equal(ini.Args, wantInitArgs) {
		t.Errorf("init args\n got %q\nwant %q", ini.Args, wantInitArgs)
	}
	if ini.RestartPolicy != nil {
		t.Error("the init container must run to completion, not as a sidecar")
	}
	isc := ini.SecurityContext
	if isc == nil || *isc.RunAsUser != 0 || *isc.RunAsNonRoot || *isc.AllowPrivilegeEscalation || *isc.Privileged ||
		!slices.Equal(isc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) ||
		!slices.Equal(isc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("init security context %+v", isc)
	}

	px := got.Spec.InitContainers[1]
	if px.Image != cfg.ProxyImage {
		t.Errorf("proxy image %s", px.Image)
	}
	if px.RestartPolicy == nil || *px.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the proxy must be a native sidecar (restartPolicy Always)")
	}
	wantArgs := []string{"sidecar",
		"--xds-address=10.244.1.130:15010", "--identity-address=10.244.1.130:15012",
		"--trust-domain=east.fleet.demo", "--cluster-id=east.fleet",
		"--trust-file=/var/run/secrets/fleetmesh/root/roots.json", "--token-file=/var/run/secrets/fleetmesh/tokens/token",
		"--work-dir=/var/run/fleetmesh", "--admin-port=15021", "--metrics-port=15090"}
	if !slices.Equal(px.Args, wantArgs) {
		t.Errorf("proxy args\n got %q\nwant %q", px.Args, wantArgs)
	}
	env := map[string]string{}
	for _, e := range px.Env {
		if e.Name == AppProbersEnv {
			var probers AppProbers
			if err := json.Unmarshal([]byte(e.Value), &probers); err != nil {
				t.Errorf("%s: %v", AppProbersEnv, err)
			}
			want := AppProbers{AppProbePrefix + "web/readyz": {Port: 9090, Path: "/ready"}, AppProbePrefix + "web/startupz": {Port: 9090, Path: "/started"},
				AppProbePrefix + "web/livez": {Port: 8080, TCP: true}}
			if !reflect.DeepEqual(probers, want) {
				t.Errorf("%s = %v, want %v", AppProbersEnv, probers, want)
			}
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
			t.Errorf("env %s is not from the downward API", e.Name)
			continue
		}
		env[e.Name] = e.ValueFrom.FieldRef.FieldPath
	}
	wantEnv := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP",
		"SERVICE_ACCOUNT": "spec.serviceAccountName", "NODE_NAME": "spec.nodeName"}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("proxy env %v", env)
	}
	ports := map[int32]string{}
	for _, p := range px.Ports {
		ports[p.ContainerPort] = p.Name
	}
	if !reflect.DeepEqual(ports, map[int32]string{15001: "", 15006: "", 15021: "fm-health", 15090: "fm-metrics"}) {
		t.Errorf("proxy ports %v", ports)
	}
	for name, p := range map[string]*corev1.Probe{"startup": px.StartupProbe, "readiness": px.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz/ready" || p.HTTPGet.Port.IntValue() != 15021 {
			t.Errorf("%s probe %+v", name, p)
		}
	}
	if px.LivenessProbe != nil {
		t.Error("no liveness probe: a proxy waiting for its agent must not be restarted for it")
	}
	psc := px.SecurityContext
	if psc == nil || *psc.RunAsUser != 1337 || *psc.RunAsGroup != 1337 || !*psc.RunAsNonRoot || !*psc.ReadOnlyRootFilesystem ||
		*psc.AllowPrivilegeEscalation || len(psc.Capabilities.Add) != 0 || !slices.Equal(psc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("proxy security context %+v", psc)
	}
	if px.Resources.Requests.Cpu().IsZero() || px.Resources.Requests.Memory().IsZero() || len(px.Resources.Limits) != 0 {
		t.Errorf("proxy resources %v: want small requests and no limits", px.Resources)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range px.VolumeMounts {
		mounts[m.Name] = m
	}
	if m := mounts[TokenVolume]; m.MountPath != "/var/run/secrets/fleetmesh/tokens" || !m.ReadOnly {
		t.Errorf("token mount %+v", m)
	}
	if m := mounts[RootVolume]; m.MountPath != "/var/run/secrets/fleetmesh/root" || !m.ReadOnly {
		t.Errorf("root mount %+v", m)
	}
	if m := mounts[WorkVolume]; m.MountPath != "/var/run/fleetmesh" || m.ReadOnly {
		t.Errorf("work mount %+v", m)
	}

	vols := map[string]corev1.Volume{}
	for _, v := range got.Spec.Volumes {
		vols[v.Name] = v
	}
	if len(got.Spec.Volumes) != 4 || vols["data"].EmptyDir == nil {
		t.Fatalf("volumes %v: want the pod's own plus three", got.Spec.Volumes)
	}
	tok := vols[TokenVolume].Projected
	if tok == nil || len(tok.Sources) != 1 || tok.Sources[0].ServiceAccountToken == nil {
		t.Fatalf("token volume %+v", vols[TokenVolume])
	}
	if sat := tok.Sources[0].ServiceAccountToken; sat.Audience != "fleetmesh" || *sat.ExpirationSeconds != 3600 || sat.Path != "token" {
		t.Errorf("projected token %+v", sat)
	}
	root := vols[RootVolume].ConfigMap
	if root == nil || root.Name != "fleetmesh-root" || len(root.Items) != 1 || root.Items[0].Key != "roots.json" || root.Items[0].Path != "roots.json" {
		t.Errorf("root volume %+v", vols[RootVolume])
	}
	if w := vols[WorkVolume].EmptyDir; w == nil || w.Medium != corev1.StorageMediumMemory {
		t.Errorf("work volume %+v", vols[WorkVolume])
	}
}

func TestInjectIsIdempotent(t *testing.T) {
	once, skipped := Inject(appPod(), testConfig())
	if skipped != "" {
		t.Fatal(skipped)
	}
	twice, skipped := Inject(once, testConfig())
	if skipped != SkippedAlreadyInjected {
		t.Errorf("second injection: %q", skipped)
	}
	if twice != once {
		t.Error("a skipped pod must come back untouched")
	}
	// The webhook's reinvocation sees the injected pod: its patch is empty.
	patch, err := Patch(once, twice)
	if err != nil || string(patch) != "[]" {
		t.Errorf("patch of an injected pod = %s, %v", patch, err)
	}
	// A pod whose annotation was removed but that still has the proxy is not injected again.
	edited := once.DeepCopy()
	delete(edited.Annotations, InjectedAnnotation)
	if _, skipped := Inject(edited, testConfig()); skipped != SkippedAlreadyInjected {
		t.Errorf("pod with the proxy container: %q", skipped)
	}
}

func TestInjectSkips(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*corev1.Pod)
		want string
	}{
		"opt-out label":         {func(p *corev1.Pod) { p.Labels[InjectLabel] = "false" }, SkippedOptOutLabel},
		"opt-out annotation":    {func(p *corev1.Pod) { p.Annotations[InjectLabel] = "false" }, SkippedOptOutAnnot},
		"host network":          {func(p *corev1.Pod) { p.Spec.HostNetwork = true }, SkippedHostNetwork},
		"fleetmesh's namespace": {func(p *corev1.Pod) { p.Namespace = "fleetmesh-system" }, SkippedControlPlane},
		"a fleetmesh pod":       {func(p *corev1.Pod) { p.Labels["app.kubernetes.io/part-of"] = "fleetmesh" }, SkippedControlPlane},
		"already annotated":     {func(p *corev1.Pod) { p.Annotations[InjectedAnnotation] = "other:v1" }, SkippedAlreadyInjected},
		"a container named like the proxy": {func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ProxyContainerName})
		}, SkippedAlreadyInjected},
		"a volume of the same name": {func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: WorkVolume})
		}, "the pod already has a volume named fleetmesh-work"},
	} {
		t.Run(name, func(t *testing.T) {
			pod := appPod()
			tc.edit(pod)
			got, skipped := Inject(pod, testConfig())
			if skipped != tc.want {
				t.Errorf("skipped = %q, want %q", skipped, tc.want)
			}
			if got != pod {
				t.Error("a skipped pod must come back untouched")
			}
		})
	}
	// Any other value of the label or annotation does not opt out.
	pod := appPod()
	pod.Labels[InjectLabel] = "true"
	pod.Annotations[InjectLabel] = "enabled"
	if _, skipped := Inject(pod, testConfig()); skipped != "" {
		t.Errorf("skipped: %s", skipped)
	}
}

func TestProbePorts(t *testing.T) {
	probe := func(h corev1.ProbeHandler) *corev1.Probe { return &corev1.Probe{ProbeHandler: h} }
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			// A plain init container is not probed; an app's native sidecar is.
			{Name: "setup", StartupProbe: probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(1)}})},
			{Name: "logs", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
				ReadinessProbe: probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(7070)}})},
		},
		Containers: []corev1.Container{
			{Name: "a", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100}},
				ReadinessProbe: probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("metrics")}}),
				LivenessProbe:  probe(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 50051}}),
				StartupProbe:   probe(corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}})},
			{Name: "b",
				ReadinessProbe: probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("9100")}}),
				LivenessProbe:  probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("unknown")}})},
		},
	}}
	if got := ProbePorts(pod); !slices.Equal(got, []int32{7070, 9100, 50051}) {
		t.Errorf("ProbePorts = %v", got)
	}
	// Without probes the flag is left out rather than given an empty list.
	bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}, Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "a"}}}}
	got, _ := Inject(bare, testConfig())
	for _, a := range got.Spec.InitContainers[0].Args {
		if len(a) >= 24 && a[:24] == "--exclude-inbound-ports=" {
			t.Errorf("unexpected %s", a)
		}
	}
	// No annotations before: the annotation map is created.
	if got.Annotations[InjectedAnnotation] == "" {
		t.Error("annotation missing")
	}
}

func TestInjectHonoursTheRootConfigMapName(t *testing.T) {
	cfg := testConfig()
	cfg.RootConfigMap = "custom-root"
	got, _ := Inject(appPod(), cfg)
	for _, v := range got.Spec.Volumes {
		if v.Name == RootVolume && v.ConfigMap.Name != "custom-root" {
			t.Errorf("root ConfigMap %s", v.ConfigMap.Name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := testConfig().Validate(); err != nil {
		t.Error(err)
	}
	if err := (Config{ProxyImage: "x"}).Validate(); err == nil {
		t.Error("a config without addresses, trust domain and cluster ID must be refused")
	}
}

// TestPatchAppliesToTheRawPod applies the patch to the pod as the API server sent it, with a
// field these Go types do not know: the result is the injected pod, and the field survives.
func TestPatchAppliesToTheRawPod(t *testing.T) {
	pod := appPod()
	mutated, _ := Inject(pod, testConfig())
	patch, err := Patch(pod, mutated)
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]any{}
	data, _ := json.Marshal(pod)
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	raw["spec"].(map[string]any)["futureField"] = "kept"
	data, _ = json.Marshal(raw)
	p, err := jsonpatchv5.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(data)
	if err != nil {
		t.Fatal(err)
	}
	check := map[string]any{}
	if err := json.Unmarshal(patched, &check); err != nil {
		t.Fatal(err)
	}
	if check["spec"].(map[string]any)["futureField"] != "kept" {
		t.Error("the patch dropped a field it does not know")
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got, mutated) {
		t.Error("the patched pod is not the injected pod")
	}
}

// tcpSocket and gRPC probes go through the proxy as HTTP probes, so no application port is left
// out of the capture (where any plaintext caller could reach it).
func TestInjectRewritesTCPAndGRPCProbes(t *testing.T) {
	pod := appPod()
	c := &pod.Spec.Containers[0]
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 50051, Service: ptr.To("shop")}}}
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}}
	got, skipped := Inject(pod, testConfig())
	if skipped != "" {
		t.Fatal(skipped)
	}
	web := got.Spec.Containers[0]
	for _, p := range []*corev1.Probe{web.ReadinessProbe, web.LivenessProbe, web.StartupProbe} {
		if p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != AdminPort || p.GRPC != nil || p.TCPSocket != nil {
			t.Errorf("probe not rewritten: %+v", p.ProbeHandler)
		}
	}
	for _, a := range got.Spec.InitContainers[0].Args {
		if strings.HasPrefix(a, "--exclude-inbound-ports=") {
			t.Errorf("an application port is left uncaptured: %s", a)
		}
	}
	var probers AppProbers
	for _, e := range got.Spec.InitContainers[1].Env {
		if e.Name == AppProbersEnv {
			if err := json.Unmarshal([]byte(e.Value), &probers); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := AppProbers{AppProbePrefix + "web/readyz": {Port: 50051, GRPC: true, Service: "shop"},
		AppProbePrefix + "web/livez": {Port: 8080, TCP: true}, AppProbePrefix + "web/startupz": {Port: 8080, TCP: true}}
	if !reflect.DeepEqual(probers, want) {
		t.Errorf("%s = %v, want %v", AppProbersEnv, probers, want)
	}
}

// The capture annotations become proxy init's flags, the inbound ports joined with the probe
// ports; ones that do not parse are refused by name.
func TestInjectCaptureAnnotations(t *testing.T) {
	pod := appPod()
	pod.Spec.InitContainers = []corev1.Container{{Name: "logs", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(9100)}}}}}
	pod.Annotations[wire.ExcludeInboundPortsAnnotation] = "9100, 5432"
	pod.Annotations[wire.ExcludeOutboundPortsAnnotation] = "5432"
	pod.Annotations[wire.ExcludeOutboundCIDRsAnnotation] = "169.254.169.254, 10.0.0.0/8"
	if err := CheckAnnotations(pod); err != nil {
		t.Fatal(err)
	}
	got, skipped := Inject(pod, testConfig())
	if skipped != "" {
		t.Fatal(skipped)
	}
	args := got.Spec.InitContainers[0].Args
	for _, want := range []string{"--exclude-inbound-ports=5432,9100", "--exclude-outbound-ports=5432", "--exclude-outbound-cidrs=169.254.169.254,10.0.0.0/8"} {
		if !slices.Contains(args, want) {
			t.Errorf("init args %q lack %q", args, want)
		}
	}
	for annotation, value := range map[string]string{
		wire.ExcludeInboundPortsAnnotation:  "0",
		wire.ExcludeOutboundPortsAnnotation: "5432,70000",
		wire.ExcludeOutboundCIDRsAnnotation: "10.0.0.0/33",
	} {
		p := appPod()
		p.Annotations[annotation] = value
		if err := CheckAnnotations(p); err == nil || !strings.Contains(err.Error(), "metadata.annotations["+annotation+"]") {
			t.Errorf("%s=%q: error %v, want one naming the annotation", annotation, value, err)
		}
	}
}
