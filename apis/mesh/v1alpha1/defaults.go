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

import "time"

// Defaults the API server applies (see the kubebuilder:default markers); code that reads a spec
// which did not pass through an API server falls back to the same values.
const (
	DefaultSVIDTTL             = time.Hour
	DefaultCATTL               = 2160 * time.Hour
	DefaultEndpointGracePeriod = 2 * time.Minute
	DefaultOutlierInterval     = time.Second
	DefaultBaseEjectionTime    = 15 * time.Second
)

// SVIDTTLOrDefault is spec.trust.svidTTL.
func (t *TrustSpec) SVIDTTLOrDefault() time.Duration { return t.SVIDTTL.Or(DefaultSVIDTTL) }

// CATTLOrDefault is spec.trust.caTTL.
func (t *TrustSpec) CATTLOrDefault() time.Duration { return t.CATTL.Or(DefaultCATTL) }

// EndpointGracePeriodOrDefault is spec.serviceFederation.endpointGracePeriod.
func (s *ServiceFederationSpec) EndpointGracePeriodOrDefault() time.Duration {
	return s.EndpointGracePeriod.Or(DefaultEndpointGracePeriod)
}
