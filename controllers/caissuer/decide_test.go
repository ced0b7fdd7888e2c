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

package caissuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// signer is an issuer's root CA, as cert-manager's CA issuer holds it.
type signer struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  []byte
}

func newSigner(t *testing.T, now time.Time) signer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return signer{key: key, cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// sign signs csr as an intermediate for td, with the name constraint when constrain is set.
func (s signer) sign(t *testing.T, csrPEM []byte, td spiffeid.TrustDomain, constrain bool, now time.Time) []byte {
	t.Helper()
	csr, err := trust.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(td.IDString())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(12 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{u}}
	if constrain {
		tmpl.PermittedDNSDomainsCritical, tmpl.PermittedURIDomains = true, []string{td.Name()}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, csr.PublicKey, s.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestDecide(t *testing.T) {
	now := time.Now()
	td := spiffeid.RequireTrustDomainFromString("member-1.fleet.mesh")
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "mesh"}}
	mi.Spec.Trust.CA = &meshv1alpha1.CASource{CertManager: &meshv1alpha1.CertManagerCA{IssuerRef: meshv1alpha1.IssuerReference{Name: "root"}}}
	mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "member-1"}, Spec: meshv1alpha1.MeshClusterSpec{TrustDomain: td.Name()}}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := trust.IntermediateCSR(td, key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherCSR, _ := trust.IntermediateCSR(spiffeid.RequireTrustDomainFromString("member-2.fleet.mesh"), key, rand.Reader)
	request := map[string]string{wire.CARequestKeyCSR: string(csr), wire.BundleKeyTrustDomain: td.Name()}
	digest := wire.CSRDigest(csr)
	root := newSigner(t, now)
	signed := func(chain []byte, conds ...cmapi.CertificateRequestCondition) *cmapi.CertificateRequest {
		cr := CertificateRequest(mi, mc, csr, digest)
		cr.CreationTimestamp = metav1.NewTime(now.Add(-time.Minute))
		cr.Status.Conditions, cr.Status.Certificate, cr.Status.CA = conds, chain, root.pem
		return cr
	}
	ready := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: "Issued"}
	denied := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionDenied, Status: cmmeta.ConditionTrue, Reason: "Policy"}

	tests := []struct {
		name   string
		mc     *meshv1alpha1.MeshCluster
		st     caState
		reason string
		act    caAction
	}{
		{"no CSR yet", mc, caState{}, meshv1alpha1.ReasonCSRPending, caReport},
		{"a CSR for another trust domain", mc, caState{Request: map[string]string{wire.CARequestKeyCSR: string(otherCSR), wire.BundleKeyTrustDomain: td.Name()}}, meshv1alpha1.ReasonCSRInvalid, caReport},
		{"a CSR published as another trust domain's", mc, caState{Request: map[string]string{wire.CARequestKeyCSR: string(csr), wire.BundleKeyTrustDomain: "member-2.fleet.mesh"}}, meshv1alpha1.ReasonCSRInvalid, caReport},
		{"a member trust domain that does not parse", &meshv1alpha1.MeshCluster{ObjectMeta: mc.ObjectMeta, Spec: meshv1alpha1.MeshClusterSpec{TrustDomain: "Not Valid"}}, caState{Request: request}, meshv1alpha1.ReasonCSRInvalid, caReport},
		{"delivered for this CSR already", mc, caState{Request: request, Issued: map[string]string{wire.CAKeyRequest: digest}}, meshv1alpha1.ReasonCAIssued, caReport},
		{"no CertificateRequest: create it", mc, caState{Request: request, Issued: map[string]string{wire.CAKeyRequest: "an older CSR"}}, meshv1alpha1.ReasonCAPending, caRequest},
		{"requested, not signed yet", mc, caState{Request: request, CR: signed(nil)}, meshv1alpha1.ReasonCAPending, caReport},
		{"denied: a person acts", mc, caState{Request: request, CR: signed(nil, denied)}, meshv1alpha1.ReasonCADenied, caReport},
		{"signed without the name constraint: refused", mc, caState{Request: request, CR: signed(root.sign(t, csr, td, false, now), ready)}, meshv1alpha1.ReasonCARefused, caReport},
		{"signed as asked: delivered", mc, caState{Request: request, CR: signed(root.sign(t, csr, td, true, now), ready)}, meshv1alpha1.ReasonCAIssued, caDeliver},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(mi, tt.mc, tt.st, now)
			if d.Condition.Reason != tt.reason || d.Action != tt.act || d.Condition.Message == "" {
				t.Fatalf("decision %s/%q action %d, want %s action %d", d.Condition.Reason, d.Condition.Message, d.Action, tt.reason, tt.act)
			}
			switch d.Action {
			case caRequest:
				if d.Request == nil || d.Request.Name != CertificateRequest(mi, mc, csr, digest).Name || d.Requeue == 0 {
					t.Errorf("request %+v requeue %s", d.Request, d.Requeue)
				}
			case caDeliver:
				if d.Deliver.Name != wire.CAIssuedConfigMap || d.Deliver.Data[wire.CAKeyRequest] != digest || d.Deliver.Data[wire.CAIssuedKeyRoots] != string(root.pem) {
					t.Errorf("delivered %+v", d.Deliver)
				}
			}
		})
	}
}
