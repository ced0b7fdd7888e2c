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
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// The injector's serving certificate is renewed at half-life and as soon as a CA rotation
// switches signing, so it always chains to a root the caBundle holds.
func TestInjectorServingCertificateRenewal(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("east.fleet.demo")
	now := time.Now()
	newCA := func() *trust.CA {
		key, err := trust.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		ca, err := trust.SelfSign(td, key, now, 48*time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	first := newCA()
	issuer, err := trust.NewIssuer(first, trust.IssuerOptions{SVIDTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	inj := &injector{opts: &InjectorOptions{DNSNames: []string{"fleetmesh-agent.fleetmesh-system.svc"}, IPs: []net.IP{net.ParseIP("10.244.1.130")}}, issuer: issuer}
	if err := inj.renewCertificate(now); err != nil {
		t.Fatal(err)
	}
	if inj.certDue(now.Add(29 * time.Minute)) {
		t.Error("due before half-life")
	}
	if !inj.certDue(now.Add(31 * time.Minute)) {
		t.Error("not due after half-life")
	}
	next := newCA()
	if err := issuer.SetCA(next); err != nil {
		t.Fatal(err)
	}
	if !inj.certDue(now) {
		t.Error("not due after the CA switched")
	}
	if err := inj.renewCertificate(now); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(next.Certificate())
	if _, err := inj.cert.Load().Leaf.Verify(x509.VerifyOptions{DNSName: "fleetmesh-agent.fleetmesh-system.svc", Roots: roots}); err != nil {
		t.Errorf("the renewed certificate does not chain to the new CA: %v", err)
	}
	if inj.certDue(now) {
		t.Error("due right after renewal")
	}
}
