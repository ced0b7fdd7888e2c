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
