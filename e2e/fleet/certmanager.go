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

package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CertManagerIssuer is the ClusterIssuer RunCertManager creates; CertManagerNamespace holds
// its root's Secret.
const (
	CertManagerIssuer    = "fleet-root"
	CertManagerNamespace = "cert-manager"
)

// RunCertManager runs cert-manager's own CA issuer (its issuers, clusterissuers,
// certificaterequests-issuer-ca and -approver controllers, bin/cert-manager-ca built by 'make
// cert-manager-ca') against the management API server, creates the ClusterIssuer
// CertManagerIssuer of type CA over a new root, and returns the root once the issuer is Ready.
// The process stops with the fleet.
func (f *Fleet) RunCertManager(ctx context.Context) (*x509.Certificate, error) {
	path, err := f.binary("cert-manager-ca")
	if err != nil {
		return nil, fmt.Errorf("%w (make cert-manager-ca)", err)
	}
	m := f.Management
	kubeconfig := filepath.Join(m.procs.dir, "cert-manager.kubeconfig")
	if err := os.WriteFile(kubeconfig, m.Kubeconfig, 0o600); err != nil {
		return nil, err
	}
	root, certPEM, keyPEM, err := newRoot()
	if err != nil {
		return nil, err
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: CertManagerNamespace}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: CertManagerIssuer + "-ca", Namespace: CertManagerNamespace},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
		},
		&cmapi.ClusterIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: CertManagerIssuer},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: CertManagerIssuer + "-ca"}}},
		},
	}
	for _, o := range objs {
		if err := m.Client.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	if err := m.procs.start("cert-manager-ca", path, []string{"--kubeconfig", kubeconfig, "--cluster-resource-namespace", CertManagerNamespace}, f.LogDir(m)); err != nil {
		return nil, err
	}
	err = m.procs.waitFor(ctx, time.Minute, func() (bool, error) {
		issuer := &cmapi.ClusterIssuer{}
		if err := m.Client.Get(ctx, client.ObjectKey{Name: CertManagerIssuer}, issuer); err != nil {
			return false, err
		}
		for _, c := range issuer.Status.Conditions {
			if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue {
				return true, nil
			}
		}
		return false, fmt.Errorf("ClusterIssuer %s is not ready: %+v", CertManagerIssuer, issuer.Status.Conditions)
	})
	if err != nil {
		return nil, err
	}
	return root, nil
}

// newRoot is a self-signed ECDSA P-256 root CA, as a platform team's PKI would hand cert-manager.
func newRoot() (*x509.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{Organization: []string{"fleetmesh e2e"}, CommonName: "fleet root CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
