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

package identity

import (
	"context"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fleetmesh/fleetmesh/internal/trust"
)

func TestKubeTokenReviewer(t *testing.T) {
	cs := fake.NewClientset()
	var sent *authenticationv1.TokenReview
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sent = a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		out := sent.DeepCopy()
		switch sent.Spec.Token {
		case "good":
			out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"fleetmesh"},
				User: authenticationv1.UserInfo{Username: "system:serviceaccount:shop:web"}}
		case "broken":
			return true, nil, errors.New("etcd is on fire")
		default:
			out.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, out, nil
	})
	r := KubeTokenReviewer{Client: cs}

	got, err := r.Review(context.Background(), "good", []string{"fleetmesh"})
	if err != nil {
		t.Fatal(err)
	}
	if sent.Spec.Token != "good" || len(sent.Spec.Audiences) != 1 || sent.Spec.Audiences[0] != "fleetmesh" {
		t.Errorf("sent spec %+v", sent.Spec)
	}
	if !got.Authenticated || got.Username != "system:serviceaccount:shop:web" || got.Audiences[0] != "fleetmesh" {
		t.Errorf("result %+v", got)
	}
	got, err = r.Review(context.Background(), "other", []string{"fleetmesh"})
	if err != nil || got.Authenticated || got.Error != "invalid bearer token" {
		t.Errorf("refused token: %+v %v", got, err)
	}
	if _, err := r.Review(context.Background(), "broken", []string{"fleetmesh"}); err == nil || !strings.Contains(err.Error(), "on fire") {
		t.Errorf("API error: %v", err)
	}
}

func TestServiceAccountFromUsername(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want trust.Workload
		ok   bool
	}{
		{"system:serviceaccount:shop:web", trust.Workload{Namespace: "shop", ServiceAccount: "web"}, true},
		{"system:serviceaccount:kube-system:default", trust.Workload{Namespace: "kube-system", ServiceAccount: "default"}, true},
		{"system:serviceaccount:shop:web.v2", trust.Workload{Namespace: "shop", ServiceAccount: "web.v2"}, true},
		{"alice", trust.Workload{}, false},
		{"system:node:n1", trust.Workload{}, false},
		{"system:serviceaccount:shop", trust.Workload{}, false},
		{"system:serviceaccount:shop:web:extra", trust.Workload{}, false},
		{"system:serviceaccount::web", trust.Workload{}, false},
		{"system:serviceaccount:shop:", trust.Workload{}, false},
		{"system:serviceaccount:Shop:web", trust.Workload{}, false},
		{"system:serviceaccount:shop:../x", trust.Workload{}, false},
		{"system:serviceaccounts:shop:web", trust.Workload{}, false},
	} {
		got, err := ServiceAccountFromUsername(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: got %+v, %v", tc.in, got, err)
		}
	}
}

// FuzzServiceAccountFromUsername: the user name comes from the API server, but it is the only
// part of a token the project parses; whatever it accepts must be a valid SPIFFE path.
func FuzzServiceAccountFromUsername(f *testing.F) {
	f.Add("system:serviceaccount:shop:web")
	f.Add("system:serviceaccount:a:b:c")
	f.Add("system:serviceaccount:%2e%2e:web")
	f.Fuzz(func(t *testing.T, username string) {
		w, err := ServiceAccountFromUsername(username)
		if err != nil {
			return
		}
		if _, err := w.ID(tdA); err != nil {
			t.Fatalf("accepted %q but its ID is invalid: %v", username, err)
		}
	})
}
