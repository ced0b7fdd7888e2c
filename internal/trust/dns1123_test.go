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

package trust

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The copies give Kubernetes' verdicts and messages, word for word.
func TestDNS1123CopiesMatchKubernetes(t *testing.T) {
	inputs := []string{
		"", "a", "web", "my-name", "123-abc", "-a", "a-", "A", "aB", "a_b", "a.b", "a..b", ".a", "a.", "a.b-c.d",
		"café", "a b", "a:b", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a",
		strings.Repeat("a", 254), strings.Repeat("A", 64), strings.Repeat("a.", 40) + "-",
	}
	for _, in := range inputs {
		if got, want := isDNS1123Label(in), validation.IsDNS1123Label(in); !slices.Equal(got, want) {
			t.Errorf("isDNS1123Label(%q) = %q, Kubernetes says %q", in, got, want)
		}
		if got, want := isDNS1123Subdomain(in), validation.IsDNS1123Subdomain(in); !slices.Equal(got, want) {
			t.Errorf("isDNS1123Subdomain(%q) = %q, Kubernetes says %q", in, got, want)
		}
	}
}
