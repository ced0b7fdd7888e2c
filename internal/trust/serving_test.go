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
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestNewServingCertificateVerifiesByHostName(t *testing.T) {
	names := []string{"fleetmesh-agent.fleetmesh-system.svc", "fleetmesh-agent.fleetmesh-system.svc.cluster.local"}
	ip := net.ParseIP("10.244.1.130")
	for name, ca := range map[string]*CA{
		"self-signed (name-constrained to URIs)": mustSelfSigned(t, tdA, 48*time.Hour),
		"intermediate under an issuer root":      mustIntermediate(t, tdA),
	} {
		t.Run(name, func(t *testing.T) {
			iss := mustIssuer(t, ca, time.Hour, fixed(t0))
			cert, err := iss.NewServingCertificate(names, []net.IP{ip})
			if err != nil {
				t.Fatal(err)
			}
			leaf := cert.Leaf
			if len(leaf.URIs) != 0 {
				t.Errorf("a serving certificate must not carry a URI SAN (it would be an SVID): %v", leaf.URIs)
			}
			if got := leaf.NotAfter.Sub(t0); got != time.Hour {
				t.Errorf("lifetime %s, want the SVID TTL", got)
			}
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("ext key usage %v, want server auth only", leaf.ExtKeyUsage)
			}
			roots := x509.NewCertPool()
			for _, r := range ca.Roots() {
				roots.AddCert(r)
			}
			inter := x509.NewCertPool()
			for _, der := range cert.Certificate[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inter.AddCert(c)
			}
			for _, host := range append(names, ip.String()) {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter, CurrentTime: t0}); err != nil {
					t.Errorf("verify for %s: %v", host, err)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example.org", Roots: roots, Intermediates: inter, CurrentTime: t0}); err == nil {
				t.Error("verified for a name it does not carry")
			}
		})
	}
}

func TestNewServingCertificateRefusals(t *testing.T) {
	ca := mustSelfSigned(t, tdA, 2*time.Hour)
	if _, err := mustIssuer(t, ca, time.Hour, fixed(t0)).NewServingCertificate(nil, nil); err == nil {
		t.Error("a certificate without names must be refused")
	}
	late := mustIssuer(t, ca, time.Hour, fixed(t0.Add(90*time.Minute)))
	cert, err := late.NewServingCertificate([]string{"a.svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Leaf.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("not capped at the CA's expiry: %s vs %s", cert.Leaf.NotAfter, ca.Certificate().NotAfter)
	}
	if _, err := mustIssuer(t, ca, time.Hour, fixed(t0.Add(3*time.Hour))).NewServingCertificate([]string{"a.svc"}, nil); err == nil {
		t.Error("signed with an expired CA")
	}
}
