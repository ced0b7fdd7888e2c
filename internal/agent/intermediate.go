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

package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// certManager mode: the agent generates its CA key in the member and publishes only a CSR; the
// operator has it signed by a cert-manager issuer in the management cluster and writes the
// certificate back. The key never leaves the member's CA Secret.
// (The ConfigMaps are the wire package's.)
const (
	caKeyPendingKey = "pending.key"
	caKeyPendingCSR = "pending.csr"
)

// errAwaitingIntermediate: the CSR is published and not answered yet.
var errAwaitingIntermediate = errors.New("waiting for the operator to bring back the signed intermediate CA")

// pendingCA is a key and its CSR waiting for the signed intermediate; stored in the CA Secret.
type pendingCA struct {
	keyPEM, csr []byte
}

func newPendingCA(td spiffeid.TrustDomain) (*pendingCA, error) {
	key, err := trust.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := trust.IntermediateCSR(td, key, nil)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &pendingCA{keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), csr: csr}, nil
}

func pendingFromSecret(data map[string][]byte) *pendingCA {
	if len(data[caKeyPendingKey]) == 0 {
		return nil
	}
	return &pendingCA{keyPEM: data[caKeyPendingKey], csr: data[caKeyPendingCSR]}
}

// issuedInput is the operator's answer (wire.CAIssuedConfigMap data), nil if there is none.
type issuedInput map[string]string

// signed returns the CA the answer holds for p, nil if the answer is for another CSR.
func (p *pendingCA) signed(td spiffeid.TrustDomain, issued issuedInput, now time.Time) (*trust.CA, error) {
	if issued == nil || issued[wire.CAKeyRequest] != wire.CSRDigest(p.csr) {
		return nil, nil
	}
	key, err := trust.ParseKeyPEM(p.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pending CA key: %w", err)
	}
	ca, err := trust.NewIntermediate(td, key, []byte(issued[wire.CAIssuedKeyChain]), []byte(issued[wire.CAIssuedKeyRoots]), now)
	if err != nil {
		return nil, fmt.Errorf("the intermediate in %s is refused: %w", wire.CAIssuedConfigMap, err)
	}
	return ca, nil
}

// publishCSR publishes p's CSR for the operator.
func publishCSR(ctx context.Context, c kubernetes.Interface, ns string, td spiffeid.TrustDomain, p *pendingCA) error {
	req := corev1ac.ConfigMap(wire.CARequestConfigMap, ns).
		WithLabels(map[string]string{"app.kubernetes.io/name": "fleetmesh-agent", "app.kubernetes.io/part-of": "fleetmesh"}).
		WithData(map[string]string{wire.BundleKeyTrustDomain: td.Name(), wire.CARequestKeyCSR: string(p.csr), wire.CAKeyRequest: wire.CSRDigest(p.csr)})
	if _, err := c.CoreV1().ConfigMaps(ns).Apply(ctx, req, metav1.ApplyOptions{FieldManager: "fleetmesh-agent", Force: true}); err != nil {
		return fmt.Errorf("publish the intermediate CSR in %s/%s: %w", ns, wire.CARequestConfigMap, err)
	}
	return nil
}

// issuedAnswer is the operator's current answer, nil if there is none.
func issuedAnswer(ctx context.Context, c kubernetes.Interface, ns string) (issuedInput, error) {
	issued, err := c.CoreV1().ConfigMaps(ns).Get(ctx, wire.CAIssuedConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", ns, wire.CAIssuedConfigMap, err)
	}
	return issuedInput(issued.Data), nil
}

// pendingSecret is a CA Secret holding only a key and its CSR, before the first intermediate.
func pendingSecret(td spiffeid.TrustDomain, ns string) (*corev1.Secret, error) {
	p, err := newPendingCA(td)
	if err != nil {
		return nil, err
	}
	return caSecret(ns, "", map[string][]byte{caTrustDomain: []byte(td.Name()), caKeyPendingKey: p.keyPEM, caKeyPendingCSR: p.csr}), nil
}

// awaitIntermediate publishes the first pending CSR and, once the operator has written the
// signed intermediate for it, stores the CA in the Secret (dropping the pending key) and
// returns it.
func awaitIntermediate(ctx context.Context, c kubernetes.Interface, ns string, td spiffeid.TrustDomain, s *corev1.Secret, now time.Time) (*caStore, error) {
	p := pendingFromSecret(s.Data)
	if err := publishCSR(ctx, c, ns, td, p); err != nil {
		return nil, err
	}
	issued, err := issuedAnswer(ctx, c, ns)
	if err != nil {
		return nil, err
	}
	ca, err := p.signed(td, issued, now)
	if err != nil {
		return nil, err
	}
	if ca == nil {
		return nil, errAwaitingIntermediate
	}
	store, err := newStore(td, caID(ca), ca, now)
	if err != nil {
		return nil, err
	}
	store.resourceVersion = s.ResourceVersion
	if err := store.save(ctx, c, ns); err != nil {
		return nil, err
	}
	return store, nil
}
