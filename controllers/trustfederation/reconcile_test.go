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
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/e2e/fleet"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/status"
	"github.com/fleetmesh/fleetmesh/internal/trust"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

func TestMain(m *testing.M) { fleet.Main(m) }

// trustFleet is a management API server with one MeshInstallation ("demo") and, per member, a
// Connected MeshCluster (namespace default, generation 2) whose member is an API server of its own.
type trustFleet struct {
	mgmt    client.Client
	members map[string]client.Client // by MeshCluster name
	r       *Reconciler
	req     ctrl.Request
}

func newTrustFleet(t *testing.T, names ...string) *trustFleet {
	t.Helper()
	ctx := context.Background()
	scheme := fleet.NewScheme(t, clientgoscheme.AddToScheme, clusterv1.AddToScheme, meshv1alpha1.AddToScheme)
	memberScheme := fleet.NewScheme(t, clientgoscheme.AddToScheme)
	_, mgmt := fleet.TestAPIServer(t, scheme, true)
	mi := &meshv1alpha1.MeshInstallation{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	mi.Spec.ClusterSelector.MatchLabels = map[string]meshv1alpha1.LabelValue{"mesh": "true"}
	if err := mgmt.Create(ctx, mi); err != nil {
		t.Fatal(err)
	}
	f := &trustFleet{mgmt: mgmt, members: map[string]client.Client{}, req: ctrl.Request{NamespacedName: client.ObjectKey{Name: "demo"}}}
	cache := fleet.MemberCache{Clients: map[client.ObjectKey]client.Client{}}
	for _, name := range names {
		_, c := fleet.TestAPIServer(t, memberScheme, false)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: install.Namespace}}); err != nil {
			t.Fatal(err)
		}
		f.members[name] = c
		cache.Clients[client.ObjectKey{Namespace: "default", Name: name}] = c
		mc := &meshv1alpha1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{meshv1alpha1.InstallationLabel: "demo"}},
			Spec: meshv1alpha1.MeshClusterSpec{ClusterRef: meshv1alpha1.ClusterReference{Name: name}, Installation: "demo", TrustDomain: name + ".default.demo"}}
		if err := controllerutil.SetControllerReference(mi, mc, scheme); err != nil {
			t.Fatal(err)
		}
		if err := mgmt.Create(ctx, mc); err != nil {
			t.Fatal(err)
		}
		// A spec change: observedGeneration must follow the generation, not just be 1.
		mc.Spec.Locality.Region = "eu"
		if err := mgmt.Update(ctx, mc); err != nil {
			t.Fatal(err)
		}
		if mc.Generation != 2 {
			t.Fatalf("MeshCluster %s has generation %d after a spec change, want 2", name, mc.Generation)
		}
		mc.Status.KubeSystemUID = fleet.KubeSystemUID(t, c)
		meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: meshv1alpha1.ConnectedCondition, Status: metav1.ConditionTrue, Reason: "Connected"})
		if err := mgmt.Status().Update(ctx, mc); err != nil {
			t.Fatal(err)
		}
	}
	f.r = &Reconciler{Client: mgmt, ClusterCache: cache, Recorder: events.NewFakeRecorder(200),
		Clock:     clocktesting.NewFakePassiveClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)),
		lastKnown: map[client.ObjectKey]*spiffebundle.Bundle{}, external: &trust.External{}, written: &status.Writer{Owner: fieldOwner}}
	return f
}

// publish is the member's agent publishing a bundle document under the trust domain it claims.
func publish(t *testing.T, c client.Client, claimed string, b *spiffebundle.Bundle) {
	t.Helper()
	doc, err := trust.MarshalBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: wire.BundleConfigMap}}
	err = c.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	cm.Data = map[string]string{wire.BundleKeyTrustDomain: claimed, wire.BundleKeyDocument: string(doc)}
	switch {
	case apierrors.IsNotFound(err):
		err = c.Create(ctx, cm)
	case err == nil:
		err = c.Update(ctx, cm)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// agentSays merges data into the member agent's status ConfigMap.
func agentSays(t *testing.T, c client.Client, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: wire.StatusConfigMap}}
	err := c.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	switch {
	case apierrors.IsNotFound(err):
		cm.Data = data
		err = c.Create(ctx, cm)
	case err == nil:
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		for k, v := range data {
			cm.Data[k] = v
		}
		err = c.Update(ctx, cm)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// federatedFor reads what the operator wrote into a member: the ConfigMap's data and the
// bundle map it carries, parsed.
func federatedFor(t *testing.T, c client.Client) (*trust.BundleSet, *corev1.ConfigMap) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: install.Namespace, Name: wire.FederatedConfigMap}, cm); err != nil {
		t.Fatalf("the member's federated bundles: %v", err)
	}
	set, err := trust.ParseBundleMap([]byte(cm.Data[wire.FederatedKeyBundleMap]))
	if err != nil {
		t.Fatalf("the member's %s does not parse: %v", wire.FederatedKeyBundleMap, err)
	}
	return set, cm
}

func (f *trustFleet) meshCluster(t *testing.T, name string) *meshv1alpha1.MeshCluster {
	t.Helper()
	mc := &meshv1alpha1.MeshCluster{}
	if err := f.mgmt.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, mc); err != nil {
		t.Fatal(err)
	}
	return mc
}

// condition checks one condition of a MeshCluster: status/reason, observedGeneration equal to
// the generation, and a message mentioning each of mentions. It returns the condition.
func (f *trustFleet) condition(t *testing.T, name, typ, want string, mentions ...string) *metav1.Condition {
	t.Helper()
	mc := f.meshCluster(t, name)
	c := meta.FindStatusCondition(mc.Status.Conditions, typ)
	if c == nil {
		t.Errorf("%s: no %s condition (have %v)", name, typ, mc.Status.Conditions)
		return nil
	}
	if got := string(c.Status) + "/" + c.Reason; got != want {
		t.Errorf("%s: %s = %s (%s), want %s", name, typ, got, c.Message, want)
	}
	if c.ObservedGeneration != mc.Generation {
		t.Errorf("%s: %s observedGeneration %d, generation %d", name, typ, c.ObservedGeneration, mc.Generation)
	}
	for _, m := range mentions {
		if !strings.Contains(c.Message, m) {
			t.Errorf("%s: %s message %q does not mention %q", name, typ, c.Message, m)
		}
	}
	return c
}

func trustDomains(s *trust.BundleSet) []string {
	var out []string
	for _, td := range s.TrustDomains() {
		out = append(out, td.Name())
	}
	return out
}

// One Reconcile over two members' API servers writes into each member the other member's bundle
// (and never its own), with TrustFederated=False/Propagating until the agents confirm loading it,
// and CARotation from each agent's rotation phase; once both agents echo the digest of what they
// were given, the next Reconcile reports Federated, and the rotating member's CARotation sees that
// every member holds its bundle.
func TestReconcileGivesEachMemberTheOtherMembersBundle(t *testing.T) {
	f := newTrustFleet(t, "east", "west")
	ctx := context.Background()
	bundles := map[string]*spiffebundle.Bundle{"east": bundle(t, "east.default.demo"), "west": bundle(t, "west.default.demo")}
	other := map[string]string{"east": "west", "west": "east"}
	for name, b := range bundles {
		publish(t, f.members[name], name+".default.demo", b)
	}
	const deadline = "2026-06-08T12:00:00Z"
	agentSays(t, f.members["east"], map[string]string{wire.StatusKeyCARotation: string(trust.PhaseStable)})
	agentSays(t, f.members["west"], map[string]string{wire.StatusKeyCARotation: string(trust.PhasePublishing), wire.StatusKeyCARotationDeadline: deadline})

	res, err := f.r.Reconcile(ctx, f.req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != notFederatedRecheck {
		t.Errorf("requeue after %s while no agent has loaded its set, want %s", res.RequeueAfter, notFederatedRecheck)
	}
	for name, c := range f.members {
		want := bundles[other[name]]
		set, cm := federatedFor(t, c)
		if tds := trustDomains(set); !slices.Equal(tds, []string{other[name] + ".default.demo"}) {
			t.Fatalf("%s was given the bundles of %v, want only %s's", name, tds, other[name])
		}
		if got, _ := set.Get(want.TrustDomain()); !got.Equal(want) {
			t.Errorf("%s holds a bundle for %s that is not the one %s published", name, want.TrustDomain(), other[name])
		}
		doc, err := trust.MarshalBundle(want)
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data[other[name]+".default.demo.json"] != string(doc) {
			t.Errorf("%s: document %s.default.demo.json = %q, want the published bundle", name, other[name], cm.Data[other[name]+".default.demo.json"])
		}
		if _, own := cm.Data[name+".default.demo.json"]; own {
			t.Errorf("%s was given its own bundle back", name)
		}
		// No agent has confirmed loading anything: the other member holds sequence 0 of this one.
		if got := cm.Data[wire.FederatedKeyHeldSequence]; got != "0" {
			t.Errorf("%s: %s = %q before any agent loaded, want 0", name, wire.FederatedKeyHeldSequence, got)
		}
		if cm.Labels[meshv1alpha1.InstallationLabel] != "demo" {
			t.Errorf("%s: federated ConfigMap labels %v", name, cm.Labels)
		}
		f.condition(t, name, meshv1alpha1.TrustFederatedCondition, "False/"+meshv1alpha1.ReasonPropagating, "1 trust domains")
		mc := f.meshCluster(t, name)
		if mc.Status.Bundle == nil || mc.Status.Bundle.Fingerprint != trust.Fingerprint(bundles[name]) || mc.Status.Bundle.Sequence != 42 || mc.Status.Bundle.Expiry == nil {
			t.Errorf("%s: status.bundle %+v does not describe the bundle it published", name, mc.Status.Bundle)
		}
	}
	f.condition(t, "east", meshv1alpha1.CARotationCondition, "True/"+meshv1alpha1.ReasonNotRotating)
	f.condition(t, "west", meshv1alpha1.CARotationCondition, "True/"+meshv1alpha1.ReasonRotating, "waiting for east", deadline)

	// Each agent loads what it was given and says so.
	for _, c := range f.members {
		_, cm := federatedFor(t, c)
		agentSays(t, c, map[string]string{wire.StatusKeyFederated: wire.Digest([]byte(cm.Data[wire.FederatedKeyBundleMap]))})
	}
	res, err = f.r.Reconcile(ctx, f.req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != resync {
		t.Errorf("requeue after %s with every member federated, want %s", res.RequeueAfter, resync)
	}
	for name, c := range f.members {
		set, cm := federatedFor(t, c)
		if tds := trustDomains(set); !slices.Equal(tds, []string{other[name] + ".default.demo"}) {
			t.Errorf("%s now holds the bundles of %v, want only %s's", name, tds, other[name])
		}
		if got := cm.Data[wire.FederatedKeyHeldSequence]; got != "42" {
			t.Errorf("%s: %s = %q once the other agent loaded sequence 42, want 42", name, wire.FederatedKeyHeldSequence, got)
		}
		f.condition(t, name, meshv1alpha1.TrustFederatedCondition, "True/"+meshv1alpha1.ReasonFederated, other[name]+".default.demo")
	}
	f.condition(t, "west", meshv1alpha1.CARotationCondition, "True/"+meshv1alpha1.ReasonRotating, "every member holds it")

	// East's published bundle is deleted: east says so, and west keeps east's last known bundle.
	if err := f.members["east"].Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: wire.BundleConfigMap}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Reconcile(ctx, f.req); err != nil {
		t.Fatal(err)
	}
	f.condition(t, "east", meshv1alpha1.TrustFederatedCondition, "False/"+meshv1alpha1.ReasonBundleNotPublished, wire.BundleConfigMap, "last known bundle stays federated")
	if set, _ := federatedFor(t, f.members["west"]); !slices.Equal(trustDomains(set), []string{"east.default.demo"}) {
		t.Errorf("west holds %v after east's bundle ConfigMap went, want east's last known bundle", trustDomains(set))
	} else if got, _ := set.Get(spiffeid.RequireTrustDomainFromString("east.default.demo")); !got.Equal(bundles["east"]) {
		t.Error("west's bundle for east is not east's last known one")
	}
}

// A member whose agent has published no bundle yet: it is BundleNotPublished (and still gets the
// other member's bundle, being reachable), and the other member is BundlesMissing, naming it, and
// is given nothing for its trust domain. A bundle the agent publishes under another member's trust
// domain is refused (BundleInvalid) and reaches no one; its real bundle, once published, does.
func TestReconcileGivesNoBundleForAMemberThatPublishedNone(t *testing.T) {
	f := newTrustFleet(t, "east", "west")
	ctx := context.Background()
	east, west := bundle(t, "east.default.demo"), bundle(t, "west.default.demo")
	publish(t, f.members["east"], "east.default.demo", east)

	noWestBundle := func(when string) {
		t.Helper()
		set, cm := federatedFor(t, f.members["east"])
		if set.Len() != 0 {
			t.Errorf("%s: east was given the bundles of %v, want none", when, trustDomains(set))
		}
		for k := range cm.Data {
			if strings.HasSuffix(k, ".json") && k != wire.FederatedKeyBundleMap {
				t.Errorf("%s: east was given a bundle document %s", when, k)
			}
		}
		f.condition(t, "east", meshv1alpha1.TrustFederatedCondition, "False/"+meshv1alpha1.ReasonBundlesMissing, "default/west")
	}

	res, err := f.r.Reconcile(ctx, f.req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != notFederatedRecheck {
		t.Errorf("requeue after %s with a member not federated, want %s", res.RequeueAfter, notFederatedRecheck)
	}
	noWestBundle("west published nothing")
	f.condition(t, "west", meshv1alpha1.TrustFederatedCondition, "False/"+meshv1alpha1.ReasonBundleNotPublished, wire.BundleConfigMap)
	if mc := f.meshCluster(t, "west"); mc.Status.Bundle != nil {
		t.Errorf("west has status.bundle %+v without publishing one", mc.Status.Bundle)
	}
	// No agent status yet: the rotation state is unknown, not assumed.
	f.condition(t, "west", meshv1alpha1.CARotationCondition, "Unknown/"+meshv1alpha1.ReasonPending)
	if set, _ := federatedFor(t, f.members["west"]); !slices.Equal(trustDomains(set), []string{"east.default.demo"}) {
		t.Errorf("west holds %v, want east's bundle", trustDomains(set))
	} else if got, _ := set.Get(spiffeid.RequireTrustDomainFromString("east.default.demo")); !got.Equal(east) {
		t.Error("west holds a bundle for east that is not the one east published")
	}

	// West's agent speaks for east: refused, and it reaches no member.
	publish(t, f.members["west"], "east.default.demo", west)
	if _, err := f.r.Reconcile(ctx, f.req); err != nil {
		t.Fatal(err)
	}
	f.condition(t, "west", meshv1alpha1.TrustFederatedCondition, "False/"+meshv1alpha1.ReasonBundleInvalid, `"east.default.demo"`)
	noWestBundle("west published a bundle for east's trust domain")
	if set, _ := federatedFor(t, f.members["west"]); !slices.Equal(trustDomains(set), []string{"east.default.demo"}) {
		t.Errorf("west holds %v, want east's bundle only", trustDomains(set))
	} else if got, _ := set.Get(spiffeid.RequireTrustDomainFromString("east.default.demo")); !got.Equal(east) {
		t.Error("west's impostor bundle replaced east's real one in west's set")
	}

	// Its real bundle reaches east.
	publish(t, f.members["west"], "west.default.demo", west)
	if _, err := f.r.Reconcile(ctx, f.req); err != nil {
		t.Fatal(err)
	}
	set, _ := federatedFor(t, f.members["east"])
	if got, ok := set.Get(west.TrustDomain()); !ok || !got.Equal(west) || set.Len() != 1 {
		t.Errorf("east holds %v, want west's published bundle", trustDomains(set))
	}
	f.condition(t, "east", meshv1alpha1.TrustFederatedCondition, "False/"+meshv1alpha1.ReasonPropagating)
	f.condition(t, "west", meshv1alpha1.TrustFederatedCondition, "False/"+meshv1alpha1.ReasonPropagating)
}
