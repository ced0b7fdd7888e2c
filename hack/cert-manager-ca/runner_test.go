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

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
)

const (
	ns          = "default"
	trustDomain = "member-1.fleet.mesh"
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
)

// TestRunnerSignsIntermediateCA runs the runner against envtest and has the CA
// issuer sign a name-constrained intermediate CA, the way fleetmesh members
// get theirs. It builds the runner unless CERT_MANAGER_CA_BIN names a binary.
func TestRunnerSignsIntermediateCA(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset (e.g. KUBEBUILDER_ASSETS=/work/main/bin)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	// cert-manager's CRDs from the module cache: all six are plain CRDs. The
	// runner's informers list Issuers, ClusterIssuers and CertificateRequests;
	// the others are installed so every cert-manager type resolves.
	crdDir := filepath.Join(goOutput(t, "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager"), "deploy", "crds")
	env := &envtest.Environment{CRDDirectoryPaths: []string{crdDir}, ErrorIfCRDPathMissing: true}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	admin, err := env.AddUser(envtest.User{Name: "cert-manager-ca-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(admin.Config())
	cm := cmclient.NewForConfigOrDie(admin.Config())

	startRunner(ctx, t, runnerBinary(t, dir), kubeconfigPath)

	// Root CA in a kubernetes.io/tls Secret and a CA Issuer using it.
	root, rootKey := selfSignedRoot(t)
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	keyDER, err := x509.MarshalPKCS8PrivateKey(rootKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "root-ca"},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       rootPEM,
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuerCreated := time.Now()
	_, err = cm.CertmanagerV1().Issuers(ns).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "root"},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{
			CA: &cmapi.CAIssuer{SecretName: "root-ca"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "Issuer Ready", func(ctx context.Context) (bool, error) {
		iss, err := cm.CertmanagerV1().Issuers(ns).Get(ctx, "root", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return issuerReady(iss), nil
	})
	t.Logf("Issuer Ready %v after creation", time.Since(issuerCreated).Round(time.Millisecond))

	cases := []struct {
		name   string
		exts   []asn1.ObjectIdentifier // CA extensions encoded into the CSR
		usages []cmapi.KeyUsage
	}{
		// Only name constraints in the CSR: cert-manager derives key usage
		// and basic constraints from the CertificateRequest.
		{"nc-only", []asn1.ObjectIdentifier{oidNameConstraints},
			[]cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageCRLSign, cmapi.UsageDigitalSignature}},
		// The shape of internal/trust's IntermediateCSR: basic constraints,
		// key usage and name constraints. A CSR key usage extension must equal
		// the CertificateRequest's usages exactly, or signing fails.
		{"trust-shaped", []asn1.ObjectIdentifier{oidBasicConstraints, oidKeyUsage, oidNameConstraints},
			[]cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageCRLSign}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			csr := intermediateCSR(t, key, tc.exts)
			crCreated := time.Now()
			_, err = cm.CertmanagerV1().CertificateRequests(ns).Create(ctx, &cmapi.CertificateRequest{
				ObjectMeta: metav1.ObjectMeta{Name: "member-1-" + tc.name},
				Spec: cmapi.CertificateRequestSpec{
					Request:   csr,
					IsCA:      true,
					Usages:    tc.usages,
					Duration:  &metav1.Duration{Duration: 24 * time.Hour},
					IssuerRef: cmmeta.IssuerReference{Name: "root", Kind: cmapi.IssuerKind, Group: "cert-manager.io"},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var cr *cmapi.CertificateRequest
			poll(ctx, t, "CertificateRequest Approved and Ready", func(ctx context.Context) (bool, error) {
				cr, err = cm.CertmanagerV1().CertificateRequests(ns).Get(ctx, "member-1-"+tc.name, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				for _, c := range cr.Status.Conditions {
					if c.Type == cmapi.CertificateRequestConditionReady && c.Reason == cmapi.CertificateRequestReasonFailed ||
						c.Type == cmapi.CertificateRequestConditionDenied && c.Status == cmmeta.ConditionTrue {
						return false, fmt.Errorf("%s: %s", c.Reason, c.Message)
					}
				}
				return crCondition(cr, cmapi.CertificateRequestConditionApproved) &&
					crCondition(cr, cmapi.CertificateRequestConditionReady), nil
			})
			t.Logf("CertificateRequest Approved and Ready %v after creation", time.Since(crCreated).Round(time.Millisecond))
			checkIssued(t, cr, root, rootPEM, key)
		})
	}
}

// checkIssued verifies status.certificate is a CA for key, chaining to root
// with the requested validity and name constraints, and status.ca is root.
func checkIssued(t *testing.T, cr *cmapi.CertificateRequest, root *x509.Certificate, rootPEM []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	if !bytes.Equal(bytes.TrimSpace(cr.Status.CA), bytes.TrimSpace(rootPEM)) {
		t.Errorf("status.ca is not the root:\n%s", cr.Status.CA)
	}
	block, rest := pem.Decode(cr.Status.Certificate)
	if block == nil {
		t.Fatalf("status.certificate is not PEM: %q", cr.Status.Certificate)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Logf("status.certificate has more than one certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("certificate is not for the CSR's key")
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("not a CA: IsCA=%v BasicConstraintsValid=%v KeyUsage=%b", cert.IsCA, cert.BasicConstraintsValid, cert.KeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("does not chain to the root: %v", err)
	}
	if got := time.Until(cert.NotAfter); got < 23*time.Hour || got > 25*time.Hour {
		t.Errorf("NotAfter %v is not ~24h away", cert.NotAfter)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://"+trustDomain {
		t.Errorf("URIs = %v", cert.URIs)
	}
	if !slices.Equal(cert.PermittedURIDomains, []string{trustDomain}) || !cert.PermittedDNSDomainsCritical {
		t.Errorf("name constraints not carried: PermittedURIDomains=%v critical=%v",
			cert.PermittedURIDomains, cert.PermittedDNSDomainsCritical)
	}
	// The constraint bites: a leaf for another member's ID, signed by the
	// issued CA, does not verify.
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{{Scheme: "spiffe", Host: "member-2.fleet.mesh"}},
	}, cert, &leafKey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	inter := x509.NewCertPool()
	inter.AddCert(cert)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
		t.Errorf("leaf outside the name constraints: got %v, want CANotAuthorizedForThisName", err)
	}
	t.Logf("issued: subject=%q NotAfter=%s IsCA=%v KeyUsage=%b PermittedURIDomains=%v (critical=%v)",
		cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339), cert.IsCA, cert.KeyUsage,
		cert.PermittedURIDomains, cert.PermittedDNSDomainsCritical)
}

// runnerBinary returns $CERT_MANAGER_CA_BIN or builds the runner into dir.
func runnerBinary(t *testing.T, dir string) string {
	if bin := os.Getenv("CERT_MANAGER_CA_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "cert-manager-ca")
	start := time.Now()
	goOutput(t, "build", "-o", bin, ".")
	t.Logf("built runner in %v", time.Since(start).Round(time.Second))
	return bin
}

// startRunner starts the runner and waits for its ready line. It is stopped
// with SIGTERM at cleanup and must then exit 0; its stderr (the controller
// logs) is shown when the test fails.
func startRunner(ctx context.Context, t *testing.T, bin, kubeconfig string) {
	t.Helper()
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--cluster-resource-namespace", "cert-manager")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == readyLine {
				close(ready)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("runner did not exit cleanly on SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("runner did not exit within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("runner stderr:\n%s", stderr.String())
		}
	})
	select {
	case <-ready:
		t.Logf("runner ready %v after start", time.Since(start).Round(time.Millisecond))
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("runner exited before ready: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("runner not ready within 1m")
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

func selfSignedRoot(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{Organization: []string{"fleetmesh"}, CommonName: "fleetmesh test root"},
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// intermediateCSR returns a PEM CSR for key with the URI SAN of trustDomain
// and the CA extensions named by oids. Like internal/trust, the extensions
// are encoded by Go's certificate encoder (via a throwaway self-signed
// certificate) rather than hand-written ASN.1.
func intermediateCSR(t *testing.T, key *ecdsa.PrivateKey, oids []asn1.ObjectIdentifier) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(3600, 0),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true, // marks the whole name constraints extension critical
		PermittedURIDomains:         []string{trustDomain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	throwaway, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var exts []pkix.Extension
	for _, e := range throwaway.Extensions {
		if slices.ContainsFunc(oids, e.Id.Equal) {
			exts = append(exts, e)
		}
	}
	if len(exts) != len(oids) {
		t.Fatalf("encoded %d of %d extensions", len(exts), len(oids))
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{Organization: []string{"fleetmesh"}, CommonName: trustDomain},
		URIs:            []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
		ExtraExtensions: exts,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
}

func issuerReady(iss *cmapi.Issuer) bool {
	return slices.ContainsFunc(iss.Status.Conditions, func(c cmapi.IssuerCondition) bool {
		return c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue
	})
}

func crCondition(cr *cmapi.CertificateRequest, typ cmapi.CertificateRequestConditionType) bool {
	return slices.ContainsFunc(cr.Status.Conditions, func(c cmapi.CertificateRequestCondition) bool {
		return c.Type == typ && c.Status == cmmeta.ConditionTrue
	})
}

// poll calls cond every 200ms until it is true, fails, or 2 minutes pass.
func poll(ctx context.Context, t *testing.T, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// goOutput runs the go command in this module and returns its trimmed stdout.
func goOutput(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}
