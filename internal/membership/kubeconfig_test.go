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

package membership

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

func TestKubeconfigDigest(t *testing.T) {
	a, b := KubeconfigDigest([]byte("apiVersion: v1\nkind: Config\n")), KubeconfigDigest([]byte("apiVersion: v1\nkind: Config\n\n"))
	if a == "" || a == b || a != KubeconfigDigest([]byte("apiVersion: v1\nkind: Config\n")) {
		t.Errorf("digests %q and %q: want a stable digest that tells any change", a, b)
	}
	if strings.Contains(a, "Config") {
		t.Errorf("digest %q holds the kubeconfig", a)
	}
	if d := KubeconfigDigest(nil); d != "" {
		t.Errorf("no kubeconfig: digest %q, want none", d)
	}
}

// A changed kubeconfig Secret: a rotation of the member's own credentials goes on being written
// through; anything else leaves the member alone until the connection is rebuilt, and says why.
func TestDecideKubeconfigChange(t *testing.T) {
	const secretName = "fleet/member-1-kubeconfig"
	for name, tc := range map[string]struct {
		recorded, reached string
		problem           string
		reachErr          error
		refuse            bool
		reason            string
		says              []string
	}{
		"new credentials of the same cluster": {recorded: "uid-a", reached: "uid-a"},
		"a member that has not joined yet":    {reached: "uid-b"},
		"another cluster's credentials": {recorded: "uid-a", reached: "uid-b", refuse: true, reason: meshv1alpha1.ReasonIdentityChanged,
			says: []string{"Secret " + secretName, "kube-system namespace has UID uid-b", "joined as UID uid-a", "writes nothing there", "clear status.kubeSystemUID"}},
		"garbage": {recorded: "uid-a", problem: "the kubeconfig Secret " + secretName + ", key \"value\", does not parse as a kubeconfig",
			refuse: true, reason: meshv1alpha1.ReasonKubeconfigBad, says: []string{"Secret " + secretName, "does not parse", "fix it"}},
		"garbage before the join": {problem: "the kubeconfig Secret " + secretName + " does not exist",
			refuse: true, reason: meshv1alpha1.ReasonKubeconfigBad, says: []string{"does not exist"}},
		"an API server that does not answer the new credentials": {recorded: "uid-a", reachErr: errors.New("Unauthorized"),
			refuse: true, reason: meshv1alpha1.ReasonUnreachable, says: []string{"Secret " + secretName + " changed", "(Unauthorized)", "nothing is written into fleet/member-1"}},
	} {
		t.Run(name, func(t *testing.T) {
			mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "member-1"},
				Spec:   meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: "member-1"}},
				Status: meshv1alpha1.MeshClusterStatus{KubeSystemUID: tc.recorded}}
			d := DecideKubeconfigChange(KubeconfigChange{MeshCluster: mc, Problem: tc.problem, ReachedUID: tc.reached, ReachErr: tc.reachErr})
			if d.Refuse != tc.refuse || d.Reason != tc.reason {
				t.Fatalf("refuse %v, reason %q; want %v, %q", d.Refuse, d.Reason, tc.refuse, tc.reason)
			}
			if !d.Refuse && d.Message != "" {
				t.Errorf("message %q without a refusal", d.Message)
			}
			for _, want := range tc.says {
				if !strings.Contains(d.Message, want) {
					t.Errorf("message %q does not say %q", d.Message, want)
				}
			}
		})
	}
}
