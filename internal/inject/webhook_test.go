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
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jsonpatchv5 "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetmesh/fleetmesh/internal/trust"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

const webhookHost = "fleetmesh-agent.fleetmesh-system.svc"

// webhookServer serves a Handler over HTTPS with a certificate from a member CA, as the agent
// does, and returns a client that trusts exactly that CA's roots (the caBundle).
func webhookServer(t *testing.T, cfg func() Config, reg prometheus.Registerer) (*httptest.Server, *http.Client) {
	t.Helper()
	key, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := trust.SelfSign(spiffeid.RequireTrustDomainFromString("east.fleet.demo"), key, time.Now(), 48*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := iss.NewServingCertificate([]string{webhookHost}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerOptions{Config: cfg, Registerer: reg, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	for _, r := range ca.Roots() {
		roots.AddCert(r)
	}
	return srv, &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: webhookHost, MinVersion: tls.VersionTLS12},
	}}
}

func review(t *testing.T, c *http.Client, url string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req,
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Post(url+Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	out := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("not an AdmissionReview response: %+v", out)
	}
	if out.Response.UID != req.UID {
		t.Errorf("response UID %s for request %s", out.Response.UID, req.UID)
	}
	// The one pod refused is one whose capture annotations are invalid (its UID says so).
	if !out.Response.Allowed && !strings.HasPrefix(string(req.UID), "invalid-") {
		t.Errorf("the injector denied pod %s: %+v (it denies only invalid capture annotations)", req.UID, out.Response.Result)
	}
	return out.Response
}

func podRequest(t *testing.T, uid string, pod *corev1.Pod) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionRequest{
		UID: types.UID(uid), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: pod.Namespace,
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}
}

func TestHandlerAdmissionReviewOverHTTPS(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	srv, c := webhookServer(t, func() Config { return cfg }, reg)

	// A pod created through a namespaced URL without metadata.namespace: the request's counts.
	pod := appPod()
	req := podRequest(t, "1", pod)
	var stripped map[string]any
	_ = json.Unmarshal(req.Object.Raw, &stripped)
	delete(stripped["metadata"].(map[string]any), "namespace")
	req.Object.Raw, _ = json.Marshal(stripped)

	resp := review(t, c, srv.URL, req)
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || len(resp.Patch) == 0 {
		t.Fatalf("no JSON patch: %+v", resp)
	}
	if len(resp.Warnings) != 0 {
		t.Errorf("warnings %v", resp.Warnings)
	}
	p, err := jsonpatchv5.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(req.Object.Raw)
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatal(err)
	}
	want, _ := Inject(pod, cfg)
	want.Namespace = "" // the patch leaves metadata.namespace to the API server
	if !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("the patched pod is not the injected pod:\n%s", patched)
	}

	// Reinvocation (reinvocationPolicy IfNeeded) on the injected pod: allowed, no patch.
	again := review(t, c, srv.URL, podRequest(t, "2", want))
	if len(again.Patch) != 0 {
		t.Errorf("reinvocation patched again: %s", again.Patch)
	}

	// Opted out: allowed without a patch or a warning.
	out := appPod()
	out.Annotations[InjectLabel] = "false"
	if r := review(t, c, srv.URL, podRequest(t, "3", out)); len(r.Patch) != 0 || len(r.Warnings) != 0 {
		t.Errorf("opted-out pod: %+v", r)
	}

	// Not a pod CREATE: ignored.
	upd := podRequest(t, "4", appPod())
	upd.Operation = admissionv1.Update
	if r := review(t, c, srv.URL, upd); len(r.Patch) != 0 {
		t.Errorf("an UPDATE was patched: %s", r.Patch)
	}

	// The injector's own problems admit the pod uninjected, with a warning.
	broken := podRequest(t, "5", appPod())
	broken.Object.Raw = []byte(`{"spec": "not a pod spec"}`)
	if r := review(t, c, srv.URL, broken); len(r.Patch) != 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "not injected") {
		t.Errorf("undecodable pod: %+v", r)
	}
	// Capture annotations that do not parse: the pod is refused, the message naming the annotation.
	bad := appPod()
	bad.Annotations[wire.ExcludeOutboundPortsAnnotation] = "5432,postgres"
	if r := review(t, c, srv.URL, podRequest(t, "invalid-7", bad)); r.Allowed || len(r.Patch) != 0 || r.Result == nil ||
		!strings.Contains(r.Result.Message, `metadata.annotations[mesh.fleetmesh.io/exclude-outbound-ports]: "postgres" is not a port number (1-65535)`) {
		t.Errorf("pod with a bad capture annotation: %+v", r)
	}
	cfg.ProxyImage = ""
	if r := review(t, c, srv.URL, podRequest(t, "6", appPod())); len(r.Patch) != 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "proxy image") {
		t.Errorf("bad config: %+v", r)
	}

	for result, n := range map[string]float64{ResultInjected: 1, ResultSkipped: 2, ResultIgnored: 1, ResultError: 2, ResultDenied: 1} {
		if got := reviews(t, reg, result); got != n {
			t.Errorf("reviews %s = %v, want %v", result, got, n)
		}
	}
}

// reviews is the value of fleetmesh_injector_reviews_total{result=...} in reg.
func reviews(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fleetmesh_injector_reviews_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series for %s", result)
	return 0
}

func TestHandlerRefusesWhatIsNoReview(t *testing.T) {
	srv, c := webhookServer(t, testConfig, nil)
	resp, err := c.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %s", resp.Status)
	}
	for _, body := range []string{"not json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`} {
		resp, err := c.Post(srv.URL+Path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %s", body, resp.Status)
		}
	}
	// A client that does not trust the member's CA cannot talk to it, and neither can one that
	// expects another host name.
	other := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: c.Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "other.svc", MinVersion: tls.VersionTLS12}}}
	if _, err := other.Post(srv.URL+Path, "application/json", strings.NewReader("{}")); err == nil {
		t.Error("the serving certificate verified for a name it does not carry")
	}
}
