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
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/identityclient"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// MeshClusterOf is the member's MeshCluster in the management cluster.
func (f *Fleet) MeshClusterOf(ctx context.Context, m *Cluster) (*meshv1alpha1.MeshCluster, error) {
	list := &meshv1alpha1.MeshClusterList{}
	if err := f.Management.Client.List(ctx, list); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].Spec.ClusterRef.Name == m.Name {
			return &list.Items[i], nil
		}
	}
	return nil, fmt.Errorf("no MeshCluster for %s", m.Name)
}

// TrustDomain is the member's SPIFFE trust domain.
func (f *Fleet) TrustDomain(ctx context.Context, m *Cluster) (spiffeid.TrustDomain, error) {
	mc, err := f.MeshClusterOf(ctx, m)
	if err != nil {
		return spiffeid.TrustDomain{}, err
	}
	return spiffeid.TrustDomainFromString(mc.Spec.TrustDomain)
}

// WorkloadToken is a TokenRequest token for audience of ServiceAccount ns/sa in m, which it
// creates if needed: what the kubelet projects into a pod.
func WorkloadToken(ctx context.Context, m *Cluster, ns, sa, audience string) (string, error) {
	err := m.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(m.Config)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// ResignedToken is a token of ServiceAccount ns/sa in m for audience, issued at iat and expiring
// at exp, signed with m's own service-account signing key: a TokenRequest token whose times are
// replaced (TokenRequest cannot issue an expired one; its shortest lifetime is 10 minutes).
// Everything else, issuer and the ServiceAccount's claims included, is what the API server
// issued; with times around now it is accepted like the original.
func (f *Fleet) ResignedToken(ctx context.Context, m *Cluster, ns, sa, audience string, iat, exp time.Time) (string, error) {
	tok, err := WorkloadToken(ctx, m, ns, sa, audience)
	if err != nil {
		return "", err
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("a TokenRequest token is not a JWS: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	claims := map[string]any{}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return "", err
	}
	claims["iat"], claims["nbf"], claims["exp"] = iat.Unix(), iat.Unix(), exp.Unix()
	if raw, err = json.Marshal(claims); err != nil {
		return "", err
	}
	keyPEM, err := os.ReadFile(filepath.Join(m.procs.dir, "pki", "sa-signer.key"))
	if err != nil {
		return "", fmt.Errorf("the member's service-account signing key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return "", errors.New("sa-signer.key holds no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return "", err
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw)
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey: // RS256
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:]); err != nil {
			return "", err
		}
	case *ecdsa.PrivateKey: // ES256: r and s, 32 bytes each
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return "", err
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	default:
		return "", fmt.Errorf("sa-signer.key is a %T, want RSA or ECDSA P-256", key)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// MemberRoots writes the member's published bundle into dir (what a workload mounts to
// authenticate its agent) and returns the file.
func MemberRoots(ctx context.Context, m *Cluster, dir string) (string, error) {
	cm := &corev1.ConfigMap{}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: wire.BundleConfigMap}, cm); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "roots.json")
	return path, os.WriteFile(path, []byte(cm.Data[wire.BundleKeyDocument]), 0o600)
}

// FetchSVID has the member's identity API sign an SVID for the holder of token, written into dir
// (identityclient's files) as a workload's client would.
func (f *Fleet) FetchSVID(ctx context.Context, m *Cluster, token, dir string) error {
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return err
	}
	addr, err := AgentAddress(ctx, m, install.IdentityPort)
	if err != nil {
		return err
	}
	td, err := f.TrustDomain(ctx, m)
	if err != nil {
		return err
	}
	roots, err := MemberRoots(ctx, m, dir)
	if err != nil {
		return err
	}
	_, err = identityclient.Fetch(ctx, identityclient.Options{
		Address: addr, TrustDomain: td, TokenFile: tokenFile, TrustFile: roots, Dir: dir, Timeout: 10 * time.Second,
	})
	return err
}

// LoadSVID reads what FetchSVID (or the identity client) wrote into dir: the SVID and the
// bundle map that came with it.
func LoadSVID(dir string) (*x509svid.SVID, *trust.BundleSet, error) {
	svid, err := x509svid.Load(filepath.Join(dir, identityclient.CertFile), filepath.Join(dir, identityclient.KeyFile))
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, identityclient.BundleMapFile))
	if err != nil {
		return nil, nil, err
	}
	set, err := trust.ParseBundleMap(data)
	return svid, set, err
}

// UnfederatedSVID is an SVID for ns/sa from a CA of a trust domain no member federates with,
// and that CA's bundle: the impostor of the refusal tests.
func UnfederatedSVID(ns, sa string) (*x509svid.SVID, *spiffebundle.Bundle, error) {
	td := spiffeid.RequireTrustDomainFromString("rogue.example.org")
	ca, err := newCA(td)
	if err != nil {
		return nil, nil, err
	}
	iss, err := trust.NewIssuer(ca, trust.IssuerOptions{SVIDTTL: time.Hour})
	if err != nil {
		return nil, nil, err
	}
	svid, err := iss.NewSVID(trust.Workload{Namespace: ns, ServiceAccount: sa})
	return svid, trust.NewBundle(td, ca.Roots(), 1, 0), err
}

// newCA is a new self-signed CA of td, valid for an hour.
func newCA(td spiffeid.TrustDomain) (*trust.CA, error) {
	key, err := trust.NewKey()
	if err != nil {
		return nil, err
	}
	return trust.SelfSign(td, key, time.Now(), time.Hour, nil)
}

// BundleDocument is the SPIFFE bundle document of a new CA of td: what an outside trust domain
// hands out for spec.trust.federatesWith.
func BundleDocument(td string) (string, error) {
	t, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return "", err
	}
	ca, err := newCA(t)
	if err != nil {
		return "", err
	}
	doc, err := trust.MarshalBundle(trust.NewBundle(t, ca.Roots(), 1, 0))
	return string(doc), err
}
