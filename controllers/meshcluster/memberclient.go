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

package meshcluster

import (
	"context"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
)

// errCRDNotServed: an object's CRD was applied a moment ago and is not served yet.
var errCRDNotServed = fmt.Errorf("a CRD just installed is not served yet")

// memberClient writes to one member. Kinds whose CRD fleetmesh installs in the same breath
// (ClusterProperty) go through a dynamic client that names their resource: the member client's
// lazy RESTMapper may cache the group before the CRD is served, and then not find the kind again.
// Reads of the kinds the operator watches (WatchedKinds) come from the cluster cache; every other
// read goes to the API server through live. (The cluster cache's client would start an informer
// for any kind it is asked about, CRDs included: a copy of every CRD of the member in memory.)
type memberClient struct {
	client.Client
	live client.Reader
	dyn  dynamic.Interface
	// listLive makes list read the API server even for cached kinds: uninstall must not miss
	// an object the cache has not seen yet.
	listLive bool
}

// apply server-side applies obj under the fleetmesh field manager, unless the member already
// holds it as rendered.
func (m memberClient) apply(ctx context.Context, obj client.Object) error {
	u, err := ssa.Stamped(obj)
	if err != nil {
		return err
	}
	// Most wake-ups change nothing the operator renders: reading the member's copy (from the
	// cache for the kinds it watches) is far cheaper than an apply the server computes and drops.
	if live, err := m.current(ctx, u); err == nil && ssa.Contains(live, u.Object) {
		return nil
	}
	gvr, direct := install.DirectResources()[u.GetKind()]
	if !direct {
		return ssa.Apply(ctx, m.Client, u)
	}
	_, err = m.dyn.Resource(gvr).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: ssa.FieldOwner, Force: true})
	if apierrors.IsNotFound(err) {
		return errCRDNotServed
	}
	if err != nil {
		return fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// current reads the member's copy of an object as unstructured content: from the cluster cache
// for the kinds the operator watches, from the API server otherwise.
func (m memberClient) current(ctx context.Context, u *unstructured.Unstructured) (map[string]any, error) {
	gvk := u.GroupVersionKind()
	if gvr, direct := install.DirectResources()[gvk.Kind]; direct {
		live, err := m.dyn.Resource(gvr).Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return live.Object, nil
	}
	if typed, ok := m.cachedObject(gvk); ok {
		if err := m.Get(ctx, client.ObjectKeyFromObject(u), typed); err != nil {
			return nil, err
		}
		return runtime.DefaultUnstructuredConverter.ToUnstructured(typed)
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(gvk)
	if err := m.live.Get(ctx, client.ObjectKeyFromObject(u), live); err != nil {
		return nil, err
	}
	return live.Object, nil
}

// cachedObject returns a new typed object of the kind if the member's cache holds that kind.
func (m memberClient) cachedObject(gvk schema.GroupVersionKind) (client.Object, bool) {
	o, err := m.Scheme().New(gvk)
	if err != nil {
		return nil, false
	}
	t := reflect.TypeOf(o)
	for _, kind := range WatchedKinds() {
		if reflect.TypeOf(kind) == t {
			return o.(client.Object), true
		}
	}
	return nil, false
}

// list returns the objects of one kind that carry the labels.
func (m memberClient) list(ctx context.Context, tm metav1.TypeMeta, sel map[string]string) ([]unstructured.Unstructured, error) {
	if gvr, direct := install.DirectResources()[tm.Kind]; direct {
		l, err := m.dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
		if apierrors.IsNotFound(err) {
			return nil, nil // the CRD is not installed: nothing of that kind exists
		}
		if err != nil {
			return nil, err
		}
		return l.Items, nil
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, err
	}
	if _, cached := m.cachedObject(gv.WithKind(tm.Kind)); cached && !m.listLive {
		return m.listCached(ctx, gv.WithKind(tm.Kind+"List"), sel)
	}
	l := &unstructured.UnstructuredList{}
	l.SetAPIVersion(tm.APIVersion)
	l.SetKind(tm.Kind + "List")
	if err := m.live.List(ctx, l, client.MatchingLabels(sel)); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// listCached lists a kind the member's cache holds, as unstructured objects.
func (m memberClient) listCached(ctx context.Context, listGVK schema.GroupVersionKind, sel map[string]string) ([]unstructured.Unstructured, error) {
	o, err := m.Scheme().New(listGVK)
	if err != nil {
		return nil, err
	}
	l, ok := o.(client.ObjectList)
	if !ok {
		return nil, fmt.Errorf("%s is not a list", listGVK)
	}
	if err := m.List(ctx, l, client.MatchingLabels(sel)); err != nil {
		return nil, err
	}
	items, err := apimeta.ExtractList(l)
	if err != nil {
		return nil, err
	}
	out := make([]unstructured.Unstructured, 0, len(items))
	for _, item := range items {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(item)
		if err != nil {
			return nil, err
		}
		out = append(out, unstructured.Unstructured{Object: content})
	}
	return out, nil
}

func (m memberClient) delete(ctx context.Context, u *unstructured.Unstructured) error {
	if gvr, direct := install.DirectResources()[u.GetKind()]; direct {
		return client.IgnoreNotFound(m.dyn.Resource(gvr).Namespace(u.GetNamespace()).Delete(ctx, u.GetName(), metav1.DeleteOptions{}))
	}
	return client.IgnoreNotFound(m.Delete(ctx, u, client.PropagationPolicy(metav1.DeletePropagationBackground)))
}

// memberClient pairs the cluster cache's client of a member with its uncached client and a
// dynamic client on the same credentials (client-go shares the transport of identical configs).
func (r *Reconciler) memberClient(ctx context.Context, key client.ObjectKey, c client.Client) (memberClient, error) {
	cfg, err := r.ClusterCache.GetRESTConfig(ctx, key)
	if err != nil {
		return memberClient{}, err
	}
	live, err := r.ClusterCache.GetUncachedClient(ctx, key)
	if err != nil {
		return memberClient{}, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return memberClient{}, fmt.Errorf("dynamic client of %s: %w", key, err)
	}
	return memberClient{Client: c, live: live, dyn: dyn}, nil
}
