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

package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	"sigs.k8s.io/cluster-api/util/secret"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/fleetmesh/fleetmesh/internal/membership"
)

// ErrKubeconfigChanged: the member's kubeconfig Secret no longer holds what the cluster cache's
// connection was built from, and what it holds now must not be written through (another cluster,
// garbage, or an API server that does not answer); the connection is being rebuilt.
var ErrKubeconfigChanged = errors.New("member kubeconfig Secret changed")

// MemberConnections keeps the cluster cache's connection to each member built from what the
// member's kubeconfig Secret holds now.
//
// Cluster API's cluster cache reads a member's kubeconfig Secret only when it connects, and
// reconnects only when its health probe fails (Unauthorized, or five failures in a row): a Secret
// replaced by another cluster's credentials, or by garbage, while the old credentials still work,
// would go unnoticed until the operator restarts, and a Secret put right would not replace a wrong
// connection that works. The cache has no Disconnect; MemberConnections gets one from its hooks:
//   - it wraps the cache's SecretClient and records the digest of each kubeconfig the cache reads:
//     it reads one only to connect, so while connected the last one is the connection's (Built);
//   - the MeshCluster reconciler compares that with the Secret as it is (an uncached GET of its
//     name) and, when they differ, asks for a reconnect (Reconnect);
//   - the cache's ClusterFilter then turns the member away once, which disconnects it and drops
//     its accessor, and a Cluster event sent to the cache's own controller (a channel source added
//     to it) connects it again, from the Secret as it is now.
//
// Until then, Guard refuses the member's clients when the decision says so. The zero of its
// pointer (nil) knows nothing and refuses nothing.
type MemberConnections struct {
	mu      sync.Mutex
	members map[client.ObjectKey]*memberConnection
	// events wake the cluster cache's controller for a Cluster.
	events chan event.GenericEvent
}

type memberConnection struct {
	// built is the digest (membership.KubeconfigDigest) of the kubeconfig the cache read last;
	// read tells that it has read one.
	built string
	read  bool
	// pending: a reconnect is asked for, the Secret now having digest want. turnAway: the
	// ClusterFilter is still to disconnect the member; once it has, the cache connects again on
	// the next event, which reads the Secret and ends the reconnect.
	pending, turnAway bool
	want              string
	decision          membership.KubeconfigDecision
}

// reconnectEvents bounds the wake-ups queued for the cluster cache's controller; one dropped when
// it is full is sent again on the MeshCluster's next reconcile (Nudge).
const reconnectEvents = 256

// NewMemberConnections is ready for SetupClusterCache.
func NewMemberConnections() *MemberConnections {
	return &MemberConnections{members: map[client.ObjectKey]*memberConnection{}, events: make(chan event.GenericEvent, reconnectEvents)}
}

// SetupClusterCache is clustercache.SetupWithManager with m's hooks: opts.SecretClient records what
// it reads, opts.ClusterFilter (if any) is followed by m's, and the cache's controller also
// reconciles the Clusters m wakes.
func (m *MemberConnections) SetupClusterCache(ctx context.Context, mgr manager.Manager, opts clustercache.Options, copts controller.Options) (clustercache.ClusterCache, error) {
	opts.SecretClient = recordingSecretReader{Reader: opts.SecretClient, m: m}
	filter := opts.ClusterFilter
	opts.ClusterFilter = func(c *clusterv1.Cluster) bool {
		return (filter == nil || filter(c)) && m.admit(client.ObjectKeyFromObject(c))
	}
	capture := &capturingManager{Manager: mgr}
	cc, err := clustercache.SetupWithManager(ctx, capture, opts, copts)
	if err != nil {
		return nil, err
	}
	var watchers []clustercache.SourceWatcher[reconcile.Request]
	for _, r := range capture.added {
		if w, ok := r.(clustercache.SourceWatcher[reconcile.Request]); ok {
			watchers = append(watchers, w)
		}
	}
	if len(watchers) != 1 {
		return nil, fmt.Errorf("the cluster cache added %d controllers to the manager, want 1: cannot reconnect a member whose kubeconfig Secret changes", len(watchers))
	}
	if err := watchers[0].Watch(source.Channel(m.events, &handler.EnqueueRequestForObject{})); err != nil {
		return nil, fmt.Errorf("watch reconnect requests in the cluster cache's controller: %w", err)
	}
	return cc, nil
}

// capturingManager hands over what clustercache.SetupWithManager adds: its controller.
type capturingManager struct {
	manager.Manager
	added []manager.Runnable
}

func (c *capturingManager) Add(r manager.Runnable) error {
	c.added = append(c.added, r)
	return c.Manager.Add(r)
}

// recordingSecretReader is the cluster cache's SecretClient: it records each kubeconfig read.
type recordingSecretReader struct {
	client.Reader
	m *MemberConnections
}

var kubeconfigSuffix = "-" + string(secret.Kubeconfig)

func (r recordingSecretReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.Reader.Get(ctx, key, obj, opts...)
	if s, ok := obj.(*corev1.Secret); ok && strings.HasSuffix(key.Name, kubeconfigSuffix) {
		var data []byte
		if err == nil {
			data = s.Data[secret.KubeconfigDataName]
		}
		r.m.connecting(client.ObjectKey{Namespace: key.Namespace, Name: strings.TrimSuffix(key.Name, kubeconfigSuffix)}, membership.KubeconfigDigest(data))
	}
	return err
}

// connecting: the cache reads the Secret (digest) to connect to the member; any reconnect asked
// for is done.
func (m *MemberConnections) connecting(key client.ObjectKey, digest string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members[key] = &memberConnection{built: digest, read: true}
}

// admit is the ClusterFilter: false once for a member to reconnect, which disconnects it; the
// cluster cache is then woken to connect it again.
func (m *MemberConnections) admit(key client.ObjectKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.members[key]
	if c == nil || !c.pending || !c.turnAway {
		return true
	}
	c.turnAway = false
	m.wake(key)
	return false
}

// wake queues a reconcile of the Cluster in the cluster cache's controller, or drops it when the
// queue is full (Nudge sends it again).
func (m *MemberConnections) wake(key client.ObjectKey) {
	select {
	case m.events <- event.GenericEvent{Object: &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
	default:
	}
}

// Built is the digest of the kubeconfig the cluster cache's connection to the member was built
// from, while it is connected; ok is false when the cache has read none.
func (m *MemberConnections) Built(key client.ObjectKey) (digest string, ok bool) {
	if m == nil {
		return "", false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.members[key]; c != nil && c.read {
		return c.built, true
	}
	return "", false
}

// Pending is the decision of the reconnect asked for, if one is on its way for the Secret with
// this digest.
func (m *MemberConnections) Pending(key client.ObjectKey, digest string) (membership.KubeconfigDecision, bool) {
	if m == nil {
		return membership.KubeconfigDecision{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.members[key]; c != nil && c.pending && c.want == digest {
		return c.decision, true
	}
	return membership.KubeconfigDecision{}, false
}

// Refusing is the decision of the reconnect on its way, when it refuses the member's clients:
// what the member's status keeps saying while the cache is disconnected for it.
func (m *MemberConnections) Refusing(key client.ObjectKey) (membership.KubeconfigDecision, bool) {
	if m == nil {
		return membership.KubeconfigDecision{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.members[key]; c != nil && c.pending && c.decision.Refuse {
		return c.decision, true
	}
	return membership.KubeconfigDecision{}, false
}

// Reconnect has the member's connection rebuilt from its Secret, which now has the given digest;
// the decision says whether its clients are refused meanwhile.
func (m *MemberConnections) Reconnect(key client.ObjectKey, digest string, d membership.KubeconfigDecision) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.members[key]
	if c == nil {
		c = &memberConnection{}
		m.members[key] = c
	}
	if c.read && c.built == digest {
		return // the cache has already reconnected with it
	}
	c.pending, c.turnAway, c.want, c.decision = true, true, digest, d
	m.wake(key)
}

// Settle: the Secret holds what the connection was built from again, before the reconnect asked
// for has disconnected it: no reconnect, nothing refused.
func (m *MemberConnections) Settle(key client.ObjectKey) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.members[key]; c != nil && c.pending && c.turnAway {
		c.pending, c.turnAway, c.want, c.decision = false, false, "", membership.KubeconfigDecision{}
	}
}

// Nudge wakes the cluster cache again for a member with a reconnect on its way, and tells whether
// there is one: a wake-up may have been dropped.
func (m *MemberConnections) Nudge(key client.ObjectKey) bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.members[key]; c != nil && c.pending {
		m.wake(key)
		return true
	}
	return false
}

// Refusal is why the member's clients are refused, while its connection is rebuilt from a changed
// kubeconfig Secret that must not be written through; nil otherwise.
func (m *MemberConnections) Refusal(key client.ObjectKey) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.members[key]; c != nil && c.pending && c.decision.Refuse {
		return fmt.Errorf("%w: %s", ErrKubeconfigChanged, c.decision.Message)
	}
	return nil
}

// Guard is cc refusing the clients of a member whose connection is being rebuilt from a changed
// kubeconfig Secret that must not be written through (Refusal): what every reconciler but the
// MeshCluster one, which decides it, reaches members with.
func (m *MemberConnections) Guard(cc clustercache.ClusterCache) clustercache.ClusterCache {
	return guardedCache{ClusterCache: cc, m: m}
}

type guardedCache struct {
	clustercache.ClusterCache
	m *MemberConnections
}

func guarded[T any](m *MemberConnections, key client.ObjectKey, get func() (T, error)) (T, error) {
	if err := m.Refusal(key); err != nil {
		var zero T
		return zero, err
	}
	return get()
}

func (g guardedCache) GetClient(ctx context.Context, key client.ObjectKey) (client.Client, error) {
	return guarded(g.m, key, func() (client.Client, error) { return g.ClusterCache.GetClient(ctx, key) })
}

func (g guardedCache) GetReader(ctx context.Context, key client.ObjectKey) (client.Reader, error) {
	return guarded(g.m, key, func() (client.Reader, error) { return g.ClusterCache.GetReader(ctx, key) })
}

func (g guardedCache) GetUncachedClient(ctx context.Context, key client.ObjectKey) (client.Client, error) {
	return guarded(g.m, key, func() (client.Client, error) { return g.ClusterCache.GetUncachedClient(ctx, key) })
}

func (g guardedCache) GetRESTConfig(ctx context.Context, key client.ObjectKey) (*rest.Config, error) {
	return guarded(g.m, key, func() (*rest.Config, error) { return g.ClusterCache.GetRESTConfig(ctx, key) })
}
