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

package trustfederation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func bundle(t *testing.T, name string) *spiffebundle.Bundle {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(name)
	key, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := trust.SelfSign(td, key, time.Now(), 48*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return trust.NewBundle(td, ca.Roots(), 42, time.Minute)
}

func TestVerdict(t *testing.T) {
	own, other := bundle(t, "a.mesh"), bundle(t, "b.mesh")
	set := trust.NewBundleSet(other)
	m, err := set.MarshalBundleMap()
	if err != nil {
		t.Fatal(err)
	}
	digest := wire.Digest(m)
	loaded := map[string]string{wire.StatusKeyFederated: digest}
	for _, tc := range []struct {
		name      string
		reachable bool
		own       *spiffebundle.Bundle
		gone      bool // the bundle ConfigMap is gone, own the last known
		readErr   error
		missing   []string
		agent     map[string]string
		writeErr  error
		want      metav1.ConditionStatus
		reason    string
		mentions  string
	}{
		{name: "federated", reachable: true, own: own, agent: loaded, want: metav1.ConditionTrue, reason: meshv1alpha1.ReasonFederated, mentions: "b.mesh"},
		{name: "unreachable", own: own, agent: loaded, want: metav1.ConditionUnknown, reason: meshv1alpha1.ReasonUnreachable, mentions: "last known bundle"},
		{name: "no bundle yet", reachable: true, agent: loaded, want: metav1.ConditionFalse, reason: meshv1alpha1.ReasonBundleNotPublished, mentions: "fleetmesh-bundle"},
		{name: "bundle ConfigMap gone", reachable: true, own: own, gone: true, agent: loaded, want: metav1.ConditionFalse, reason: meshv1alpha1.ReasonBundleNotPublished, mentions: "last known bundle stays federated"},
		{name: "bad bundle", reachable: true, readErr: errors.New("no X.509 authorities"), agent: loaded, want: metav1.ConditionFalse, reason: meshv1alpha1.ReasonBundleInvalid, mentions: "no X.509 authorities"},
		{name: "write failed", reachable: true, own: own, writeErr: errors.New("forbidden"), agent: loaded, want: metav1.ConditionFalse, reason: meshv1alpha1.ReasonApplyFailed, mentions: "forbidden"},
		{name: "member missing", reachable: true, own: own, missing: []string{"fleet/c"}, agent: loaded, want: metav1.ConditionFalse, reason: meshv1alpha1.ReasonBundlesMissing, mentions: "fleet/c"},
		{name: "agent behind", reachable: true, own: own, agent: map[string]string{wire.StatusKeyFederated: "old"}, want: metav1.ConditionFalse, reason: meshv1alpha1.ReasonPropagating, mentions: "1 trust domains"},
		{name: "agent refused", reachable: true, own: own, agent: map[string]string{wire.StatusKeyFederatedError: "names the member's own trust domain"}, want: metav1.ConditionFalse, reason: meshv1alpha1.ReasonBundlesRefused, mentions: "own trust domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, bs := Verdict(VerdictInput{Reachable: tc.reachable, Own: tc.own, Unpublished: tc.gone, ReadErr: tc.readErr, Set: set, Missing: tc.missing,
				Digest: digest, AgentStatus: tc.agent, WriteErr: tc.writeErr})
			if c.Type != meshv1alpha1.TrustFederatedCondition || c.Status != tc.want || c.Reason != tc.reason || !strings.Contains(c.Message, tc.mentions) {
				t.Fatalf("got %s=%s/%s %q, want %s/%s mentioning %q", c.Type, c.Status, c.Reason, c.Message, tc.want, tc.reason, tc.mentions)
			}
			if (tc.own != nil) != (bs != nil) {
				t.Fatalf("bundle status %+v for own bundle %v", bs, tc.own != nil)
			}
			if bs != nil && (bs.Fingerprint != trust.Fingerprint(own) || bs.Sequence != 42 || bs.Expiry == nil) {
				t.Fatalf("bundle status %+v does not describe the member's bundle", bs)
			}
		})
	}
}
