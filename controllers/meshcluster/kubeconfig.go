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
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cluster-api/util/secret"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/internal/membership"
	"github.com/fleetmesh/fleetmesh/internal/version"
)

// kubeconfigProbeTimeout bounds the one request made with a changed kubeconfig to learn which
// cluster it reaches.
const kubeconfigProbeTimeout = 5 * time.Second

// memberKubeconfig reads the member's kubeconfig Secret (an uncached GET of its name): its
// kubeconfig (key `value`), the REST config it makes, and what is wrong with it ("" when it is
// usable). err is a failed read other than a missing Secret. The problem never quotes the Secret:
// a parser's error may carry its content.
func memberKubeconfig(ctx context.Context, r client.Reader, cluster client.ObjectKey) (data []byte, cfg *rest.Config, problem string, err error) {
	key := client.ObjectKey{Namespace: cluster.Namespace, Name: secret.Name(cluster.Name, secret.Kubeconfig)}
	name := key.String()
	s := &corev1.Secret{}
	switch err := r.Get(ctx, key, s); {
	case apierrors.IsNotFound(err):
		return nil, nil, fmt.Sprintf("the kubeconfig Secret %s does not exist", name), nil
	case err != nil:
		return nil, nil, "", err
	}
	data = s.Data[secret.KubeconfigDataName]
	if len(data) == 0 {
		return nil, nil, fmt.Sprintf("the kubeconfig Secret %s has no key %q", name, secret.KubeconfigDataName), nil
	}
	loaded, err := clientcmd.Load(data)
	if err != nil {
		return data, nil, fmt.Sprintf("the kubeconfig Secret %s, key %q, does not parse as a kubeconfig", name, secret.KubeconfigDataName), nil
	}
	cfg, err = clientcmd.NewDefaultClientConfig(*loaded, nil).ClientConfig()
	if err != nil {
		return data, nil, fmt.Sprintf("the kubeconfig Secret %s, key %q, is not a usable kubeconfig (its current context names no cluster with a server, or no user)", name, secret.KubeconfigDataName), nil
	}
	if cfg.ExecProvider != nil || cfg.AuthProvider != nil {
		// The cluster cache refuses them too: the operator runs no credential plugin.
		return data, nil, fmt.Sprintf("the kubeconfig Secret %s, key %q, authenticates with an exec or auth-provider plugin, which fleetmesh does not run", name, secret.KubeconfigDataName), nil
	}
	return data, cfg, "", nil
}

// kubeconfigProblem says what is wrong with the member's kubeconfig Secret, or "" when it holds
// a usable kubeconfig (then the API server itself does not answer).
func kubeconfigProblem(ctx context.Context, r client.Reader, cluster client.ObjectKey) string {
	_, _, problem, err := memberKubeconfig(ctx, r, cluster)
	if err != nil {
		return fmt.Sprintf("the kubeconfig Secret %s/%s cannot be read", cluster.Namespace, secret.Name(cluster.Name, secret.Kubeconfig))
	}
	return problem
}

// checkKubeconfig compares the member's kubeconfig Secret with what the cluster cache's connection
// was built from. When the Secret changed, it has the connection rebuilt from it, after reading,
// with the new kubeconfig, which cluster it reaches; the decision says whether the member must be
// left alone meanwhile (membership.DecideKubeconfigChange). changed is false while they agree, or
// when the Secret cannot be read (the next reconcile looks again).
func (r *Reconciler) checkKubeconfig(ctx context.Context, mc *meshv1alpha1.MeshCluster, key client.ObjectKey) (d membership.KubeconfigDecision, changed bool) {
	built, known := r.Connections.Built(key)
	if !known {
		return d, false
	}
	data, cfg, problem, err := memberKubeconfig(ctx, r.SecretReader, key)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "read the member's kubeconfig Secret to compare it with the connection")
		return d, false
	}
	digest := membership.KubeconfigDigest(data)
	if digest == built {
		r.Connections.Settle(key)
		return d, false
	}
	if d, ok := r.Connections.Pending(key, digest); ok {
		r.Connections.Nudge(key)
		return d, true
	}
	change := membership.KubeconfigChange{MeshCluster: mc, Problem: problem}
	if problem == "" {
		change.ReachedUID, change.ReachErr = reachedIdentity(ctx, cfg)
	}
	d = membership.DecideKubeconfigChange(change)
	ctrl.LoggerFrom(ctx).Info("the member's kubeconfig Secret changed: reconnecting with it", "refused", d.Refuse, "reason", d.Reason)
	r.Connections.Reconnect(key, digest, d)
	return d, true
}

// reachedIdentity reads, with a throwaway client on cfg, the identity of the cluster cfg reaches.
func reachedIdentity(ctx context.Context, cfg *rest.Config) (string, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = kubeconfigProbeTimeout
	cfg.UserAgent = "fleetmesh-manager/" + version.Version
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", err
	}
	defer hc.CloseIdleConnections()
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Namespace"), meta.RESTScopeRoot)
	c, err := client.New(cfg, client.Options{HTTPClient: hc, Mapper: mapper})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, kubeconfigProbeTimeout)
	defer cancel()
	return controllers.MemberIdentity(ctx, c)
}
