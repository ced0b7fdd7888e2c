//go:build !fleetmesh_fuzz

// The fuzz run (make fuzz) builds with the fleetmesh_fuzz tag and leaves this file out: it is
// the only test of the package that links cert-manager and Kubernetes' API types, which a fuzz
// build would otherwise compile once more with coverage instrumentation (minutes on a fresh
// machine). go test runs it as usual.

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

package trust

import (
	"crypto/ecdsa"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// certManagerSign signs a member's intermediate CSR exactly as cert-manager's CA issuer does
// (pkg/controller/certificaterequests/ca: pki.CertificateTemplateFromCertificateRequest, then
// pki.SignCSRTemplate), from a CertificateRequest shaped as the operator must create it.
func certManagerSign(t *testing.T, td spiffeid.TrustDomain, root *x509.Certificate, rootKey *ecdsa.PrivateKey) *CA {
	t.Helper()
	key := mustKey(t)
	csrPEM, err := IntermediateCSR(td, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	cr := &cmapi.CertificateRequest{Spec: cmapi.CertificateRequestSpec{
		Request:  csrPEM,
		IsCA:     true,
		Usages:   []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageCRLSign},
		Duration: &metav1.Duration{Duration: 30 * 24 * time.Hour},
	}}
	tmpl, err := pki.CertificateTemplateFromCertificateRequest(cr)
	if err != nil {
		t.Fatalf("cert-manager refuses the CSR: %v", err)
	}
	bundle, err := pki.SignCSRTemplate([]*x509.Certificate{root}, rootKey, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	// cert-manager's template starts at time.Now(): accept the intermediate at the wall clock.
	ca, err := NewIntermediate(td, key, bundle.ChainPEM, bundle.CAPEM, time.Now())
	if err != nil {
		t.Fatalf("the intermediate cert-manager signed is refused: %v", err)
	}
	return ca
}

// TestNameConstraintsKeepTrustDomainsApart: with one issuer root, two intermediates
// constrained to A and B; a leaf for B's trust domain signed by A's intermediate is refused by
// Go's verifier and by go-spiffe, though B's bundle (the same root) is trusted.
func TestNameConstraintsKeepTrustDomainsApart(t *testing.T) {
	// cert-manager stamps validity from the wall clock, so this test lives at the wall clock.
	now := time.Now()
	root, rootKey := testIssuerRoot(t, now)
	caA := certManagerSign(t, tdA, root, rootKey)
	caB := certManagerSign(t, tdB, root, rootKey)
	if got := caA.Certificate().PermittedURIDomains; len(got) != 1 || got[0] != tdA.Name() {
		t.Fatalf("A's intermediate constraints %v", caA.Certificate().PermittedURIDomains)
	}
	set := NewBundleSet(NewBundle(tdA, caA.Roots(), 1, 0), NewBundle(tdB, caB.Roots(), 1, 0))
	verifyGo := func(leaf, inter *x509.Certificate) error {
		roots, inters := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(root)
		inters.AddCert(inter)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	bID := "spiffe://beta.default.mesh/ns/shop/sa/web"
	aID := "spiffe://alpha.default.mesh/ns/shop/sa/web"

	// Controls: each intermediate signs its own trust domain's IDs.
	for _, tc := range []struct {
		ca *CA
		id string
	}{{caA, aID}, {caB, bID}} {
		leaf := signLeafDirectly(t, tc.ca, tc.id, now)
		if err := verifyGo(leaf, tc.ca.Certificate()); err != nil {
			t.Errorf("%s by its own intermediate: %v", tc.id, err)
		}
		if _, _, err := x509svid.Verify([]*x509.Certificate{leaf, tc.ca.Certificate()}, set, x509svid.WithTime(now)); err != nil {
			t.Errorf("%s by its own intermediate (go-spiffe): %v", tc.id, err)
		}
	}

	// The attack: A's intermediate signs an ID in B's trust domain.
	forged := signLeafDirectly(t, caA, bID, now)
	err := verifyGo(forged, caA.Certificate())
	if err == nil || !strings.Contains(err.Error(), "not authorized to sign") {
		t.Errorf("Go verification of B's ID signed by A: %v, want a name constraint violation", err)
	}
	_, _, err = x509svid.Verify([]*x509.Certificate{forged, caA.Certificate()}, set, x509svid.WithTime(now))
	if err == nil || !strings.Contains(err.Error(), "not authorized to sign") {
		t.Errorf("go-spiffe verification of B's ID signed by A: %v, want a name constraint violation", err)
	}
	t.Logf("refused as expected: %v", err)
}

// TestSelfSignedRootIsConstrainedToo: a self-signed member root carries the same constraint,
// so a leaf it signs for another trust domain fails even against a bundle that (wrongly) lists
// that root under the other trust domain.
func TestSelfSignedRootIsConstrainedToo(t *testing.T) {
	caA := mustSelfSigned(t, tdA, time.Hour)
	forged := signLeafDirectly(t, caA, "spiffe://beta.default.mesh/ns/shop/sa/web", t0)
	confused := NewBundleSet(NewBundle(tdB, caA.Roots(), 1, 0))
	_, _, err := x509svid.Verify([]*x509.Certificate{forged}, confused, x509svid.WithTime(t0))
	if err == nil || !strings.Contains(err.Error(), "not authorized to sign") {
		t.Errorf("got %v, want a name constraint violation", err)
	}
}
