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

package meshcluster

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cluster-api/util/kubeconfig"
	"sigs.k8s.io/cluster-api/util/secret"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kubeconfigProblem says what is wrong with the member's kubeconfig Secret, or "" when it holds
// a usable kubeconfig (then the API server itself does not answer). It never quotes the Secret:
// a parser's error may carry its content.
func kubeconfigProblem(ctx context.Context, r client.Reader, cluster client.ObjectKey) string {
	name := fmt.Sprintf("%s/%s", cluster.Namespace, secret.Name(cluster.Name, secret.Kubeconfig))
	data, err := kubeconfig.FromSecret(ctx, r, cluster)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("the kubeconfig Secret %s does not exist", name)
	case err != nil:
		return fmt.Sprintf("the kubeconfig Secret %s cannot be read, or has no key %q", name, secret.KubeconfigDataName)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return fmt.Sprintf("the kubeconfig Secret %s, key %q, does not parse as a kubeconfig", name, secret.KubeconfigDataName)
	}
	if _, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig(); err != nil {
		return fmt.Sprintf("the kubeconfig Secret %s, key %q, is not a usable kubeconfig (its current context names no cluster with a server, or no user)", name, secret.KubeconfigDataName)
	}
	return ""
}
