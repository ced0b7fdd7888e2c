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

package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/webhookcert"
)

func TestMain(m *testing.M) { fleet.Main(m) }

// The webhook certificate of a kustomize install, as config/default ships it and with only the
// RBAC it grants: the operator fills the empty Secret with a CA, serves a certificate from it
// that the caBundle it sets verifies for the webhook Service's name, and a restart or a second
// replica keeps that CA; re-applying the install keeps both; an emptied Secret gets a new CA.
func TestWebhookCertificateFromConfigDefault(t *testing.T) {
	ctx := context.Background()
	cfg, admin := fleet.TestAPIServer(t, NewScheme(), false)
	manifests, err := fleet.ConfigDefault()
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.ApplyYAML(ctx, admin, manifests); err != nil {
		t.Fatal(err)
	}
	secret, configuration, sa := certFlags(t, manifests)

	asOperator := rest.CopyConfig(cfg)
	asOperator.Impersonate = rest.ImpersonationConfig{UserName: sa}
	op, err := client.New(asOperator, client.Options{Scheme: NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.List(ctx, &corev1.SecretList{}, client.InNamespace(fleet.OperatorNamespace)); !apierrors.IsForbidden(err) {
		t.Errorf("the operator may list Secrets in its namespace (err %v): it must read only its own, by name", err)
	}
	keeper := func() *webhookcert.Keeper {
		k, err := webhookcert.New(webhookcert.Options{Reader: op, Writer: op, Namespace: fleet.OperatorNamespace, Secret: secret, Configuration: configuration})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Sync(ctx); err != nil {
			t.Fatalf("sync as %s with config/default's RBAC: %v", sa, err)
		}
		return k
	}
	caBundle := func() []byte {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := admin.Get(ctx, client.ObjectKey{Name: configuration}, vwc); err != nil {
			t.Fatal(err)
		}
		return vwc.Webhooks[0].ClientConfig.CABundle
	}
	stored := func() *corev1.Secret {
		s := &corev1.Secret{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: fleet.OperatorNamespace, Name: secret}, s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	first := keeper()
	ca := caBundle()
	if s := stored(); len(ca) == 0 || !bytes.Equal(s.Data[webhookcert.CACertKey], ca) || len(s.Data[webhookcert.CAKeyKey]) == 0 {
		t.Fatalf("caBundle %q, Secret keys %v: want the Secret's CA as the caBundle", ca, s.Data)
	}
	handshake(t, first, ca)

	rv := stored().ResourceVersion
	second := keeper()
	handshake(t, second, ca)
	if err := fleet.ApplyYAML(ctx, admin, manifests); err != nil {
		t.Fatal(err)
	}
	if got := stored(); got.ResourceVersion != rv || !bytes.Equal(caBundle(), ca) {
		t.Errorf("a second keeper or re-applying config/default changed the CA (Secret %s -> %s)", rv, got.ResourceVersion)
	}

	s := stored()
	s.Data = nil
	if err := admin.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	renewed := keeper()
	if bytes.Equal(caBundle(), ca) {
		t.Fatal("an emptied Secret kept the old CA")
	}
	handshake(t, renewed, caBundle())
}

// certFlags are config/default's --webhook-cert-secret and --webhook-configuration and the
// operator's ServiceAccount as a user name.
func certFlags(t *testing.T, manifests []byte) (secret, configuration, user string) {
	t.Helper()
	for _, doc := range strings.Split(string(manifests), "\n---\n") {
		dep := &appsv1.Deployment{}
		if err := yaml.Unmarshal([]byte(doc), dep); err != nil || dep.Kind != "Deployment" {
			continue
		}
		for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--webhook-cert-secret="); ok {
				secret = v
			}
			if v, ok := strings.CutPrefix(a, "--webhook-configuration="); ok {
				configuration = v
			}
		}
		user = "system:serviceaccount:" + dep.Namespace + ":" + dep.Spec.Template.Spec.ServiceAccountName
	}
	if secret == "" || configuration == "" {
		t.Fatalf("config/default's manager has no --webhook-cert-secret or --webhook-configuration (got %q, %q)", secret, configuration)
	}
	return secret, configuration, user
}

// handshake serves k's certificate and dials it as the API server calls the webhook: by the
// Service's DNS name, trusting only caBundle.
func handshake(t *testing.T, k *webhookcert.Keeper, caBundle []byte) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: k.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lis.Close() }()
	go func() {
		if c, err := lis.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caBundle) {
		t.Fatalf("caBundle holds no certificate: %q", caBundle)
	}
	conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "fleetmesh-webhook-service." + fleet.OperatorNamespace + ".svc", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("the API server's handshake with the webhook fails: %v", err)
	}
	_ = conn.Close()
}
