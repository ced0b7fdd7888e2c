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

package v1alpha1

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a duration as Go writes it ("1h30m", units h, m, s, ms, us, ns), as
// metav1.Duration. Unlike metav1.Duration, reading one never fails: an object stored before
// admission bounded durations (or written to etcd around the API server) may hold a text no
// Go duration can hold, such as "3000000h"; it reads as invalid, the MeshInstallation shows
// Ready=False and Degraded=True (InvalidSpec) naming the field, code that needs the value
// uses the field's default, and every other MeshInstallation is listed, watched and
// reconciled as usual.
// +kubebuilder:validation:Type=string
type Duration struct {
	Duration time.Duration `json:"-"`
	// invalid is the text of a stored value that is not a time.Duration.
	invalid string
}

// Invalid is the stored text when it is not a duration, else "".
func (d *Duration) Invalid() string {
	if d == nil {
		return ""
	}
	return d.invalid
}

// Or is the duration, or def when it is unset (nil) or stored invalid (see Invalid).
func (d *Duration) Or(def time.Duration) time.Duration {
	if d == nil || d.invalid != "" {
		return def
	}
	return d.Duration
}

// UnmarshalJSON decodes a duration string; a string that is not one is kept (see Invalid).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"1h\": %w", err)
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		*d = Duration{invalid: s}
		return nil
	}
	*d = Duration{Duration: parsed}
	return nil
}

// MarshalJSON writes the duration back as it was read: its text when it is invalid.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.invalid != "" {
		return json.Marshal(d.invalid)
	}
	return json.Marshal(d.Duration.String())
}

// ToUnstructured is the duration's text, for the unstructured converter.
func (d Duration) ToUnstructured() any {
	if d.invalid != "" {
		return d.invalid
	}
	return d.Duration.String()
}

// InvalidDurations lists, one per field, the stored durations of the spec that no time.Duration
// holds, with the field's path and what it accepts; empty when every one decoded. Code reading
// such a field gets its default (the *OrDefault methods); the MeshInstallation reconciler
// refuses the spec until it is fixed.
func (s *MeshInstallationSpec) InvalidDurations() []string {
	fields := []struct {
		path, allowed string
		d             *Duration
	}{
		{"spec.trust.svidTTL", "from 1m to 8760h", s.Trust.SVIDTTL},
		{"spec.trust.caTTL", "at most 87600h and at least twice svidTTL", s.Trust.CATTL},
		{"spec.serviceFederation.endpointGracePeriod", "from 0s to 24h", s.ServiceFederation.EndpointGracePeriod},
		{"spec.failover.interval", "above 0s and at most 1h", s.Failover.Interval},
		{"spec.failover.baseEjectionTime", "above 0s and at most 1h", s.Failover.BaseEjectionTime},
	}
	var out []string
	for _, f := range fields {
		if text := f.d.Invalid(); text != "" {
			out = append(out, fmt.Sprintf("%s: %q is not a duration fleetmesh can hold (allowed: %s)", f.path, text, f.allowed))
		}
	}
	return out
}
