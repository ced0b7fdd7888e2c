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

package v1alpha1_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

// A stored duration no time.Duration holds decodes (zero, its text kept), is written back
// unchanged, falls back to the default, and is named by InvalidDurations; a valid one is as
// metav1.Duration's.
func TestDurationDecodesWhatItCannotHold(t *testing.T) {
	var spec meshv1alpha1.MeshInstallationSpec
	in := `{"clusterSelector":{},"trust":{"svidTTL":"90m","caTTL":"3000000h"},"failover":{"interval":"99999999999h"}}`
	if err := json.Unmarshal([]byte(in), &spec); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got := spec.Trust.SVIDTTL; got.Invalid() != "" || got.Duration != 90*time.Minute {
		t.Errorf("svidTTL = %+v, want 90m", got)
	}
	if got := spec.Trust.CATTL.Invalid(); got != "3000000h" {
		t.Errorf("caTTL.Invalid() = %q, want the stored text", got)
	}
	if got := spec.Trust.CATTLOrDefault(); got != meshv1alpha1.DefaultCATTL {
		t.Errorf("CATTLOrDefault() = %s, want the default %s", got, meshv1alpha1.DefaultCATTL)
	}
	invalid := spec.InvalidDurations()
	if len(invalid) != 2 || !strings.HasPrefix(invalid[0], `spec.trust.caTTL: "3000000h"`) || !strings.HasPrefix(invalid[1], `spec.failover.interval: "99999999999h"`) ||
		!strings.Contains(invalid[0], "at most 87600h") {
		t.Errorf("InvalidDurations() = %q, want caTTL and failover.interval named with what they accept", invalid)
	}
	out, err := json.Marshal(spec.Trust)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"svidTTL":"1h30m0s","caTTL":"3000000h"}`; string(out) != want {
		t.Errorf("encoded %s, want %s", out, want)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&spec.Trust)
	if err != nil {
		t.Fatal(err)
	}
	if u["caTTL"] != "3000000h" || u["svidTTL"] != "1h30m0s" {
		t.Errorf("unstructured %v", u)
	}
	var back meshv1alpha1.TrustSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, &back); err != nil || back.CATTL.Invalid() != "3000000h" || back.SVIDTTL.Duration != 90*time.Minute {
		t.Errorf("from unstructured: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"svidTTL":3600}`), &spec.Trust); err == nil {
		t.Error("a number decoded as a duration; want an error")
	}
	var valid meshv1alpha1.MeshInstallationSpec
	if err := json.Unmarshal([]byte(`{"clusterSelector":{},"trust":{"caTTL":"2160h"}}`), &valid); err != nil || len(valid.InvalidDurations()) != 0 {
		t.Errorf("valid spec: %v, %q", err, valid.InvalidDurations())
	}
}
