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

package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	capikubeconfig "sigs.k8s.io/cluster-api/util/kubeconfig"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/membership"
)

func kubeconfigSecret(name, value string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name + "-kubeconfig"}, Data: map[string][]byte{"value": []byte(value)}}
}

// The cluster cache's connection to a member is rebuilt once for a changed Secret: the filter
// turns the member away once and wakes the cache to connect it again; the member's clients are
// refused meanwhile when the decision says so, and the next read of the Secret ends it all.
func TestMemberConnectionsReconnectOnce(t *testing.T) {
	ctx := context.Background()
	key := client.ObjectKey{Namespace: "fleet", Name: "member-1"}
	m := NewMemberConnections()
	secrets := fake.NewClientBuilder().WithObjects(kubeconfigSecret("member-1", "old"), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "member-1-ca"}}).Build()
	reader := recordingSecretReader{Reader: secrets, m: m}
	read := func() {
		t.Helper()
		if err := reader.Get(ctx, client.ObjectKey{Namespace: "fleet", Name: "member-1-kubeconfig"}, &corev1.Secret{}); err != nil {
			t.Fatal(err)
		}
	}
	woken := func() int {
		n := len(m.events)
		for range n {
			<-m.events
		}
		return n
	}

	if _, ok := m.Built(key); ok {
		t.Fatal("Built before the cache read the Secret")
	}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: "fleet", Name: "member-1-ca"}, &corev1.Secret{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Built(key); ok {
		t.Fatal("another Secret than the kubeconfig one was recorded")
	}
	read()
	if d, ok := m.Built(key); !ok || d != membership.KubeconfigDigest([]byte("old")) {
		t.Fatalf("Built = %q, %v; want the digest of what the cache read", d, ok)
	}
	m.Reconnect(key, membership.KubeconfigDigest([]byte("old")), membership.KubeconfigDecision{Refuse: true})
	if m.Nudge(key) || woken() != 0 {
		t.Fatal("a reconnect for the Secret the connection was built from")
	}

	newDigest := membership.KubeconfigDigest([]byte("new"))
	refused := membership.KubeconfigDecision{Refuse: true, Reason: "ClusterIdentityChanged", Message: "another cluster"}
	m.Reconnect(key, newDigest, refused)
	if n := woken(); n != 1 {
		t.Fatalf("%d wake-ups of the cluster cache, want 1", n)
	}
	if d, ok := m.Pending(key, newDigest); !ok || d != refused {
		t.Fatalf("Pending = %+v, %v; want the decision", d, ok)
	}
	guarded := m.Guard(nil) // the embedded nil cache panics if reached
	if _, err := guarded.GetClient(ctx, key); !errors.Is(err, ErrKubeconfigChanged) {
		t.Fatalf("GetClient while refused: %v, want ErrKubeconfigChanged", err)
	}
	if _, err := guarded.GetReader(ctx, key); err == nil {
		t.Fatal("GetReader while refused")
	}
	if m.admit(key) {
		t.Fatal("the filter admits a member to reconnect")
	}
	if n := woken(); n != 1 {
		t.Fatalf("turned away: %d wake-ups, want 1 (to connect again)", n)
	}
	if !m.admit(key) {
		t.Fatal("the filter turns a member away twice")
	}
	if !m.Nudge(key) || woken() != 1 {
		t.Fatal("no nudge while the reconnect is on its way")
	}
	if d, ok := m.Refusing(key); !ok || d != refused {
		t.Fatalf("Refusing while disconnected for the reconnect = %+v, %v; want the decision (the status keeps it)", d, ok)
	}
	m.Settle(key) // too late: already disconnected
	if _, ok := m.Pending(key, newDigest); !ok {
		t.Fatal("settled after the disconnect: nothing would connect the member again")
	}

	if err := secrets.Update(ctx, kubeconfigSecret("member-1", "new")); err != nil {
		t.Fatal(err)
	}
	read() // the cache connects again
	if err := m.Refusal(key); err != nil {
		t.Fatalf("refused after the reconnect: %v", err)
	}
	if _, ok := m.Refusing(key); ok {
		t.Fatal("Refusing after the reconnect")
	}
	if _, ok := m.Pending(key, newDigest); ok || m.Nudge(key) {
		t.Fatal("a reconnect still pending after it")
	}
	if d, _ := m.Built(key); d != newDigest {
		t.Fatal("the new connection's digest is not recorded")
	}

	// Put right before the filter turned the member away: nothing happens.
	m.Reconnect(key, membership.KubeconfigDigest([]byte("other")), refused)
	m.Settle(key)
	if !m.admit(key) || m.Refusal(key) != nil || m.Nudge(key) {
		t.Fatal("a settled reconnect still turns the member away or refuses it")
	}

	var none *MemberConnections
	none.Reconnect(key, newDigest, refused)
	none.Settle(key)
	if _, ok := none.Built(key); ok || none.Nudge(key) || none.Refusal(key) != nil {
		t.Fatal("nil MemberConnections knows something")
	}
}

// kubeconfigOf is a kubeconfig of what cfg reaches, with its credentials.
func kubeconfigOf(t *testing.T, cfg *rest.Config) []byte {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["member"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["member"] = &clientcmdapi.Context{Cluster: "member", AuthInfo: "admin"}
	kc.CurrentContext = "member"
	out, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// With a real cluster cache: its connection, which a changed Secret leaves alone while the old
// credentials work, is rebuilt from the new Secret on Reconnect, with no restart.
func TestSetupClusterCacheReconnectsWithTheSecretAsItIs(t *testing.T) {
	scheme := fleet.NewScheme(t, clientgoscheme.AddToScheme, clusterv1.AddToScheme)
	// The management cluster is member A too: one API server less to start.
	mgmtCfg, mgmt := fleet.TestAPIServer(t, scheme, true)
	cfgB, b := fleet.TestAPIServer(t, scheme, false)
	uidA, uidB := fleet.KubeSystemUID(t, mgmt), fleet.KubeSystemUID(t, b)
	ctrl.SetLogger(testr.New(t))
	start := time.Now()

	mgr, err := ctrl.NewManager(mgmtCfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}, GracefulShutdownTimeout: ptr.To(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMemberConnections()
	ctx, cancel := context.WithCancel(context.Background())
	cc, err := m.SetupClusterCache(ctx, mgr, clustercache.Options{SecretClient: mgr.GetAPIReader(),
		Client: clustercache.ClientOptions{UserAgent: "fleetmesh-test"}}, controller.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped }) // before the API servers stop

	key := client.ObjectKey{Namespace: "fleet", Name: "member-1"}
	if err := mgmt.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: key.Namespace}}); err != nil {
		t.Fatal(err)
	}
	cluster := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec: clusterv1.ClusterSpec{ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: "127.0.0.1", Port: 6443}}}
	if err := mgmt.Create(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	s := capikubeconfig.GenerateSecret(cluster, kubeconfigOf(t, mgmtCfg))
	if err := mgmt.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	cluster.Status.Initialization.InfrastructureProvisioned = ptr.To(true)
	if err := mgmt.Status().Update(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	reached := func() string {
		c, err := cc.GetClient(ctx, key)
		if err != nil {
			return err.Error()
		}
		uid, err := MemberIdentity(ctx, c)
		if err != nil {
			return err.Error()
		}
		return uid
	}
	eventually := func(what string, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := reached(); got != want; got = reached() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the cluster cache reaches %q, want %q", what, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	eventually("connect", uidA)
	t.Logf("connected %s after start", time.Since(start))

	s.Data["value"] = kubeconfigOf(t, cfgB)
	if err := mgmt.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got := reached(); got != uidA {
		t.Fatalf("the cluster cache reconnected on its own (reaches %q): nothing to test", got)
	}
	m.Reconnect(key, membership.KubeconfigDigest(s.Data["value"]), membership.KubeconfigDecision{})
	start = time.Now()
	eventually("reconnect", uidB)
	t.Logf("reconnected %s after the request", time.Since(start))
	if d, _ := m.Built(key); d != membership.KubeconfigDigest(s.Data["value"]) {
		t.Error("the new connection's digest is not recorded")
	}
}
