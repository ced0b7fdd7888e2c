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
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ReviewResult is what the member's API server said about a token.
type ReviewResult struct {
	Authenticated bool
	// Username is the authenticated user, system:serviceaccount:<ns>:<sa> for a ServiceAccount.
	Username string
	// Audiences are those the token is valid for, among the ones asked about.
	Audiences []string
	// Error is the API server's reason for not authenticating.
	Error string
}

// TokenReviewer asks the member's API server about a token. An error means the question could
// not be answered (the API server is unreachable); a token that is refused is a result.
type TokenReviewer interface {
	Review(ctx context.Context, token string, audiences []string) (ReviewResult, error)
}

// KubeTokenReviewer reviews tokens with authentication.k8s.io/v1 TokenReview, which the agent's
// ClusterRole allows. The API server checks signature, expiry, audience and that the
// ServiceAccount (and the pod a token is bound to) still exists, so a token from another
// cluster, an expired one or one minted for another audience comes back unauthenticated.
type KubeTokenReviewer struct {
	Client kubernetes.Interface
}

// Review implements TokenReviewer.
func (r KubeTokenReviewer) Review(ctx context.Context, token string, audiences []string) (ReviewResult, error) {
	tr, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return ReviewResult{}, fmt.Errorf("create TokenReview: %w", err)
	}
	return ReviewResult{
		Authenticated: tr.Status.Authenticated,
		Username:      tr.Status.User.Username,
		Audiences:     tr.Status.Audiences,
		Error:         tr.Status.Error,
	}, nil
}
