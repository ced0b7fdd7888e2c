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

package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// handshake runs one mTLS exchange: a server with serverSVID trusting serverBundles and
// accepting callers from clientTD, a client with clientSVID trusting clientBundles and
// accepting only serverID. It returns the ID each side saw, or the first error.
func handshake(t *testing.T, serverSVID, clientSVID *x509svid.SVID, serverBundles, clientBundles *trust.BundleSet,
	clientTD spiffeid.TrustDomain, serverID spiffeid.ID) (seenByServer, seenByClient spiffeid.ID, err error) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(serverSVID, serverBundles, tlsconfig.AuthorizeMemberOf(clientTD)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lis.Close() }()
	type result struct {
		id  spiffeid.ID
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer func() { _ = c.Close() }()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		id, err := x509svid.IDFromCert(tc.ConnectionState().PeerCertificates[0])
		_, _ = tc.Write([]byte("ok"))
		done <- result{id: id, err: err}
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(),
		tlsconfig.MTLSClientConfig(clientSVID, clientBundles, tlsconfig.AuthorizeID(serverID)))
	var clientErr error
	if err != nil {
		clientErr = err
	} else {
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3: the client learns of the server refusing its certificate on first read.
		buf := make([]byte, 2)
		if _, err := io.ReadFull(conn, buf); err != nil {
			clientErr = err
		} else if seenByClient, err = x509svid.IDFromCert(conn.ConnectionState().PeerCertificates[0]); err != nil {
			clientErr = err
		}
	}
	r := <-done
	return r.id, seenByClient, errors.Join(clientErr, r.err)
}

// TestMTLSAcrossTrustDomains: a workload in member A and one in member B get SVIDs from their own
// agents' identity API; each verifies the other against the federated bundle set with go-spiffe
// authorizers. A set without the peer's trust domain fails the handshake.
func TestMTLSAcrossTrustDomains(t *testing.T) {
	a := startAgent(t, tdA)
	b := startAgent(t, tdB)
	federated := trust.NewBundleSet(trust.NewBundle(tdA, a.ca.Roots(), 1, time.Minute), trust.NewBundle(tdB, b.ca.Roots(), 1, time.Minute))
	a.setBundleSet(t, federated)
	b.setBundleSet(t, federated)
	a.reviewer.results["client-token"] = saReview("shop", "frontend")
	b.reviewer.results["server-token"] = saReview("shop", "backend")

	ck, sk := newKey(t), newKey(t)
	clientSVID, clientSet, err := issue(context.Background(), a.dial(t), "client-token", newCSR(t, ck), ck)
	if err != nil {
		t.Fatal(err)
	}
	serverSVID, serverSet, err := issue(context.Background(), b.dial(t), "server-token", newCSR(t, sk), sk)
	if err != nil {
		t.Fatal(err)
	}
	backend := mustID(t, "spiffe://beta.default.mesh/ns/shop/sa/backend")

	t.Run("federated both ways", func(t *testing.T) {
		bySrv, byCli, err := handshake(t, serverSVID, clientSVID, serverSet, clientSet, tdA, backend)
		if err != nil {
			t.Fatal(err)
		}
		if bySrv.String() != "spiffe://alpha.default.mesh/ns/shop/sa/frontend" || byCli != backend {
			t.Fatalf("server saw %s, client saw %s", bySrv, byCli)
		}
	})
	t.Run("server's set lacks the client's trust domain", func(t *testing.T) {
		onlyB := trust.NewBundleSet(trust.NewBundle(tdB, b.ca.Roots(), 1, 0))
		_, _, err := handshake(t, serverSVID, clientSVID, onlyB, clientSet, tdA, backend)
		if err == nil {
			t.Fatal("handshake succeeded without A's bundle on the server")
		}
		t.Logf("refused: %v", err)
	})
	t.Run("client's set lacks the server's trust domain", func(t *testing.T) {
		onlyA := trust.NewBundleSet(trust.NewBundle(tdA, a.ca.Roots(), 1, 0))
		_, _, err := handshake(t, serverSVID, clientSVID, serverSet, onlyA, tdA, backend)
		if err == nil {
			t.Fatal("handshake succeeded without B's bundle on the client")
		}
		t.Logf("refused: %v", err)
	})
	t.Run("a never-federated trust domain", func(t *testing.T) {
		c := startAgent(t, spiffeid.RequireTrustDomainFromString("gamma.default.mesh"))
		c.reviewer.results["t"] = saReview("shop", "frontend")
		k := newKey(t)
		stranger, _, err := issue(context.Background(), c.dial(t), "t", newCSR(t, k), k)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = handshake(t, serverSVID, stranger, serverSet, clientSet, stranger.ID.TrustDomain(), backend)
		if err == nil {
			t.Fatal("a never-federated trust domain got in")
		}
		t.Logf("refused: %v", err)
	})
}
