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
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

func TestVerdict(t *testing.T) {
	c := func(typ cmapi.CertificateRequestConditionType, s cmmeta.ConditionStatus, reason string) cmapi.CertificateRequestCondition {
		return cmapi.CertificateRequestCondition{Type: typ, Status: s, Reason: reason, Message: "m"}
	}
	for name, tc := range map[string]struct {
		conds  []cmapi.CertificateRequestCondition
		cert   []byte
		status metav1.ConditionStatus
		reason string
	}{
		"new":                {nil, nil, metav1.ConditionFalse, meshv1alpha1.ReasonCAPending},
		"approved, unsigned": {[]cmapi.CertificateRequestCondition{c(cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue, "cert-manager.io"), c(cmapi.CertificateRequestConditionReady, cmmeta.ConditionFalse, "Pending")}, nil, metav1.ConditionFalse, meshv1alpha1.ReasonCAPending},
		"signed":             {[]cmapi.CertificateRequestCondition{c(cmapi.CertificateRequestConditionReady, cmmeta.ConditionTrue, "Issued")}, []byte("pem"), metav1.ConditionTrue, meshv1alpha1.ReasonCAIssued},
		"denied":             {[]cmapi.CertificateRequestCondition{c(cmapi.CertificateRequestConditionDenied, cmmeta.ConditionTrue, "Policy")}, nil, metav1.ConditionFalse, meshv1alpha1.ReasonCADenied},
		"invalid":            {[]cmapi.CertificateRequestCondition{c(cmapi.CertificateRequestConditionInvalidRequest, cmmeta.ConditionTrue, "Bad")}, nil, metav1.ConditionFalse, meshv1alpha1.ReasonCAFailed},
		"failed":             {[]cmapi.CertificateRequestCondition{c(cmapi.CertificateRequestConditionReady, cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed)}, nil, metav1.ConditionFalse, meshv1alpha1.ReasonCAFailed},
	} {
		cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "a-ca-x"}}
		cr.Status.Conditions, cr.Status.Certificate = tc.conds, tc.cert
		got := Verdict(cr)
		if got.Status != tc.status || got.Reason != tc.reason || got.Message == "" {
			t.Errorf("%s: got %s/%s %q, want %s/%s with a message", name, got.Status, got.Reason, got.Message, tc.status, tc.reason)
		}
	}
}

func TestCertificateRequest(t *testing.T) {
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "mesh"}}
	mi.Spec.Trust.CA = &meshv1alpha1.CASource{CertManager: &meshv1alpha1.CertManagerCA{IssuerRef: meshv1alpha1.IssuerReference{Name: "root", Kind: "Issuer", Namespace: "pki"}}}
	mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "member-1"}}
	cr := CertificateRequest(mi, mc, []byte("csr"), "0123456789abcdef")
	if cr.Namespace != "pki" || cr.Name != "member-1-ca-0123456789" {
		t.Errorf("a namespaced Issuer's request belongs in its namespace: got %s/%s", cr.Namespace, cr.Name)
	}
	if !cr.Spec.IsCA || cr.Spec.IssuerRef.Kind != "Issuer" || cr.Spec.Duration.Duration != mi.Spec.Trust.CATTLOrDefault() {
		t.Errorf("spec = %+v", cr.Spec)
	}
	mi.Spec.Trust.CA.CertManager.IssuerRef = meshv1alpha1.IssuerReference{Name: "root"}
	if cr := CertificateRequest(mi, mc, []byte("csr"), "0123456789abcdef"); cr.Namespace != "fleet" || cr.Spec.IssuerRef.Kind != "ClusterIssuer" {
		t.Errorf("a ClusterIssuer's request sits beside the MeshCluster: got %s, kind %s", cr.Namespace, cr.Spec.IssuerRef.Kind)
	}
}
