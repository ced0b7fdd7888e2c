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
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"
)

// NewServingCertificate generates a key and signs, with the CA currently signing, a TLS server
// certificate for dnsNames and ips: what a client that knows a host name rather than a SPIFFE ID
// verifies against the member's roots (the API server calling the agent's admission webhook). It
// carries no URI SAN, so it is no SVID and no workload can present it as one; the CA's name
// constraints permit only URIs, so DNS and IP names are unconstrained by them. It lives as long
// as an SVID (capped by the CA's expiry): a CA rotation retires the old root only after every
// SVID it signed has expired, so the same holds for this certificate. The chain is the leaf,
// then the CA's intermediates.
func (i *Issuer) NewServingCertificate(dnsNames []string, ips []net.IP) (*tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("serving certificate: at least one DNS name or IP address is required")
	}
	ca := i.ca.Load()
	now := i.opts.Now()
	caCert := ca.chain[0]
	if !now.Before(caCert.NotAfter) {
		return nil, fmt.Errorf("serving certificate: the CA expired at %s", caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(i.opts.SVIDTTL)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("serving certificate key: %w", err)
	}
	serial, err := newSerial(i.opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	var subject pkix.Name
	if len(dnsNames) > 0 && len(dnsNames[0]) <= 64 { // ub-common-name
		subject.CommonName = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(orRand(i.opts.Rand), tmpl, caCert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign serving certificate for %v %v: %w", dnsNames, ips, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: parse: %w", err)
	}
	out := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, c := range ca.Intermediates() {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}
