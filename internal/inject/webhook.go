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
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Path is where Handler is served (the webhook configuration's clientConfig.service.path).
const Path = "/inject"

// MaxReviewSize bounds an AdmissionReview: the API server's own limit on a request is 3 MiB,
// and a review carries the object once more beside its metadata.
const MaxReviewSize = 8 << 20

// Patch is the RFC 6902 JSON patch that turns original into mutated. Both go through the same
// Go types, so the patch holds exactly what Inject changed and never removes a field the API
// server sent that these types would drop.
func Patch(original, mutated *corev1.Pod) ([]byte, error) {
	from, err := json.Marshal(original)
	if err != nil {
		return nil, fmt.Errorf("patch: encode the pod: %w", err)
	}
	to, err := json.Marshal(mutated)
	if err != nil {
		return nil, fmt.Errorf("patch: encode the injected pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(from, to)
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	return json.Marshal(ops)
}

// Results of a review: the result label of fleetmesh_injector_reviews_total.
const (
	ResultInjected = "injected"
	ResultSkipped  = "skipped"
	ResultIgnored  = "ignored" // not a pod CREATE: nothing to do
	ResultError    = "error"   // allowed uninjected, with a warning
	ResultDenied   = "denied"  // refused: its capture annotations are invalid
)

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	// Config returns the current injection config (it changes only across restarts today, but
	// the agent owns it); it is called once per review.
	Config func() Config
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Log        logr.Logger
}

// Handler answers admission.k8s.io/v1 AdmissionReviews of pod CREATEs with the JSON patch that
// injects the sidecar. Its own failures never block a pod: it then allows the pod unchanged,
// with a warning the creator sees (kubectl prints it), and counts the error.
type Handler struct {
	opts    HandlerOptions
	reviews *prometheus.CounterVec
}

// NewHandler checks opts and registers the metrics.
func NewHandler(opts HandlerOptions) (*Handler, error) {
	if opts.Config == nil {
		return nil, errors.New("inject: a config provider is required")
	}
	h := &Handler{opts: opts, reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetmesh_injector_reviews_total",
		Help: "Admission reviews the sidecar injector answered, by result (injected, skipped, ignored, error: allowed uninjected, denied: invalid capture annotations).",
	}, []string{"result"})}
	for _, r := range []string{ResultInjected, ResultSkipped, ResultIgnored, ResultError} {
		h.reviews.WithLabelValues(r)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(h.reviews); err != nil {
			return nil, fmt.Errorf("inject: register metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "an AdmissionReview must be POSTed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReviewSize+1))
	if err != nil || len(body) > MaxReviewSize {
		// Without the review there is no UID to answer for: the API server applies the
		// webhook's failurePolicy (Ignore), so the pod is still created.
		http.Error(w, "the AdmissionReview could not be read or is too large", http.StatusBadRequest)
		return
	}
	review := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(body, review); err != nil || review.Request == nil {
		http.Error(w, "the body is not an AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	resp := h.Review(review.Request)
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	}
	data, err := json.Marshal(out)
	if err != nil {
		http.Error(w, "encode the AdmissionReview", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// Review answers one admission request: allowed, with the injecting patch when there is one,
// unless the pod's capture annotations are invalid (CheckAnnotations): a pod that would be
// injected is then refused, the message naming the annotation.
func (h *Handler) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		h.reviews.WithLabelValues(ResultIgnored).Inc()
		return resp
	}
	log := h.opts.Log.WithValues("namespace", req.Namespace, "pod", podName(req))
	fail := func(err error) *admissionv1.AdmissionResponse {
		h.reviews.WithLabelValues(ResultError).Inc()
		log.Error(err, "pod admitted without the sidecar")
		resp.Warnings = []string{"fleetmesh: the sidecar proxy was not injected: " + err.Error()}
		return resp
	}
	cfg := h.opts.Config()
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return fail(fmt.Errorf("decode the pod: %w", err))
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace // pods created through a namespaced URL may leave it out
	}
	mutated, skipped := Inject(pod, cfg)
	if skipped == "" {
		if err := CheckAnnotations(pod); err != nil {
			h.reviews.WithLabelValues(ResultDenied).Inc()
			log.Info("pod refused", "error", err.Error())
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
				Message: "fleetmesh sidecar injection: " + err.Error()}
			return resp
		}
	}
	if skipped != "" {
		h.reviews.WithLabelValues(ResultSkipped).Inc()
		log.V(2).Info("not injected", "reason", skipped)
		return resp
	}
	patch, err := Patch(pod, mutated)
	if err != nil {
		return fail(err)
	}
	resp.Patch = patch
	resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
	h.reviews.WithLabelValues(ResultInjected).Inc()
	log.V(1).Info("injected the sidecar proxy", "image", cfg.ProxyImage)
	return resp
}

// podName names the pod for logs: pods of controllers have only a generateName at admission.
func podName(req *admissionv1.AdmissionRequest) string {
	if req.Name != "" {
		return req.Name
	}
	meta := struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}{}
	_ = json.Unmarshal(req.Object.Raw, &meta)
	return meta.Metadata.GenerateName + "*"
}
