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

package servicefederation

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/controllers"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/ssa"
	"github.com/fleetmesh/fleetmesh/internal/wire"
)

type member struct {
	mc     *meshv1alpha1.MeshCluster
	id     string
	reader client.Reader // nil when unreachable
	writer client.Client
}

func (r *Reconciler) connected(ctx context.Context, mc *meshv1alpha1.MeshCluster) member {
	m := member{mc: mc, id: install.ClusterID(mc)}
	if !mc.DeletionTimestamp.IsZero() || !meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1alpha1.ConnectedCondition) {
		return m
	}
	c, err := controllers.MemberClient(ctx, r.ClusterCache, mc)
	if err != nil {
		return m // not connected, or not this member (identity changed)
	}
	m.reader, m.writer = c, c
	return m
}

// gather reads one service in every member, from their caches: each reachable member's export,
// namespace and shown clusterset IP (what it exports is remembered), and each unreachable
// member's last known export while within the grace period (requeue: the shortest grace left).
func (r *Reconciler) gather(ctx context.Context, mi *meshv1alpha1.MeshInstallation, meshClusters []meshv1alpha1.MeshCluster, key mcs.Key, now time.Time) (in mcs.PlanInput, live []member, requeue time.Duration, errs []error) {
	sf := mi.Spec.ServiceFederation
	grace := sf.EndpointGracePeriodOrDefault()
	in = mcs.PlanInput{Key: key, Namespaces: sf.Namespaces, CreateNamespaces: sf.CreateNamespaces,
		Labels: map[string]string{meshv1alpha1.ManagedByLabel: meshv1alpha1.ManagedByValue, meshv1alpha1.InstallationLabel: mi.Name}}
	var away []member
	shown := false // a member's import already showed the clusterset IP (PlanService keeps the first)
	for i := range meshClusters {
		m := r.connected(ctx, &meshClusters[i])
		if m.reader == nil {
			away = append(away, m)
			continue
		}
		live = append(live, m)
		v := mcs.MemberView{ID: m.id, Reachable: true, Network: m.mc.Spec.Network}
		v.HasNamespace = m.reader.Get(ctx, client.ObjectKey{Name: key.Namespace}, &corev1.Namespace{}) == nil
		if !shown {
			si := &mcsv1beta1.ServiceImport{}
			if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, si); err == nil && len(si.Spec.IPs) > 0 {
				v.IP, shown = si.Spec.IPs[0], true
			}
		}
		e, ok, err := readExport(ctx, m, key)
		if err != nil {
			errs = append(errs, err)
		} else {
			r.mu.Lock()
			r.memory.Seen(m.id, key, e, ok)
			r.mu.Unlock()
			if ok {
				v.Export = &e
			}
		}
		in.Members = append(in.Members, v)
	}
	for _, m := range away {
		// Unreachable: its last known export stays, marked stale, for the grace period; after an
		// operator restart it is rebuilt from what the live members import of it.
		v := mcs.MemberView{ID: m.id, Network: m.mc.Spec.Network}
		r.mu.Lock()
		known := r.memory.Knows(m.id, key)
		r.mu.Unlock()
		var rebuilt *mcs.Export
		if !known {
			if e, ok := reconstruct(ctx, live, mi.Name, m, key); ok { // cache reads: not under the lock
				e.Network, e.Gateway = m.mc.Spec.Network, m.mc.Spec.GatewayAddress
				rebuilt = &e
			}
		}
		r.mu.Lock()
		if rebuilt != nil {
			r.memory.Restore(m.id, key, *rebuilt, awaySince(m.mc, now))
		}
		e, ok, left := r.memory.Recall(m.id, key, now, grace)
		r.mu.Unlock()
		if ok {
			v.Export = &e
			if requeue == 0 || left < requeue {
				requeue = left
			}
		}
		in.Members = append(in.Members, v)
	}
	return in, live, requeue, errs
}

// reconstruct rebuilds an unreachable member's export of key from the first live member that
// imports it with a slice of that member's own endpoints (mcs.Reconstruct): a member of
// another network holds only the member's gateway, which says nothing of its endpoints.
func reconstruct(ctx context.Context, live []member, installation string, away member, key mcs.Key) (mcs.Export, bool) {
	for _, m := range live {
		list := &discoveryv1.EndpointSliceList{}
		if err := m.reader.List(ctx, list, client.InNamespace(key.Namespace), client.MatchingLabels{
			mcsv1beta1.LabelServiceName: key.Name, mcsv1beta1.LabelSourceCluster: away.id,
			discoveryv1.LabelManagedBy: mcs.ManagedBy, meshv1alpha1.InstallationLabel: installation,
		}); err != nil {
			continue
		}
		i := slices.IndexFunc(list.Items, func(s discoveryv1.EndpointSlice) bool { return s.Labels[wire.NetworkLabel] == "" })
		if i < 0 {
			continue
		}
		si := &mcsv1beta1.ServiceImport{}
		if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, si); err != nil {
			continue
		}
		return mcs.Reconstruct(away.id, si, &list.Items[i],
			[]string{meshv1alpha1.ManagedByLabel, meshv1alpha1.InstallationLabel}, []string{ssa.AppliedHashAnnotation}), true
	}
	return mcs.Export{}, false
}

// awaySince is when a member's MeshCluster stopped being Connected (now if it says nothing).
func awaySince(mc *meshv1alpha1.MeshCluster, now time.Time) time.Time {
	if c := meta.FindStatusCondition(mc.Status.Conditions, meshv1alpha1.ConnectedCondition); c != nil && c.Status != metav1.ConditionTrue && !c.LastTransitionTime.IsZero() {
		return c.LastTransitionTime.Time
	}
	return now
}

// readExport builds a member's Export of a service from its cache.
func readExport(ctx context.Context, m member, key mcs.Key) (mcs.Export, bool, error) {
	se := &mcsv1beta1.ServiceExport{}
	if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, se); err != nil {
		if apierrors.IsNotFound(err) {
			return mcs.Export{}, false, nil
		}
		return mcs.Export{}, false, fmt.Errorf("get ServiceExport %s in %s: %w", key, m.id, err)
	}
	e := mcs.Export{
		Cluster: m.id, Key: key, Created: se.CreationTimestamp.Time,
		ExportedLabels: se.Spec.ExportedLabels, ExportedAnnotations: se.Spec.ExportedAnnotations,
		ExportTo: mcs.ParseExportTo(se.Annotations),
		Region:   m.mc.Spec.Locality.Region, Zone: m.mc.Spec.Locality.Zone,
		Network: m.mc.Spec.Network, Gateway: m.mc.Spec.GatewayAddress,
	}
	svc := &corev1.Service{}
	if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, svc); err == nil {
		e.Service = svc
	} else if !apierrors.IsNotFound(err) {
		return e, false, fmt.Errorf("get Service %s in %s: %w", key, m.id, err)
	}
	list := &discoveryv1.EndpointSliceList{}
	if err := m.reader.List(ctx, list, client.InNamespace(key.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: key.Name}); err != nil {
		return e, false, fmt.Errorf("list EndpointSlices of %s in %s: %w", key, m.id, err)
	}
	for _, s := range list.Items {
		if s.Labels[discoveryv1.LabelManagedBy] != mcs.ManagedBy {
			e.Slices = append(e.Slices, s)
		}
	}
	return e, true, nil
}

// seedAllocator is a new allocator of the installation's range holding the IP of every
// ServiceImport of the installation that the live members show.
func seedAllocator(ctx context.Context, mi *meshv1alpha1.MeshInstallation, live []member) (*mcs.Allocator, error) {
	a, err := mcs.NewAllocator(mi.Spec.ServiceFederation.ClusterSetIPRange)
	if err != nil {
		return nil, err
	}
	for _, m := range live {
		imports := &mcsv1beta1.ServiceImportList{}
		if err := m.reader.List(ctx, imports, client.MatchingLabels{meshv1alpha1.InstallationLabel: mi.Name}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("list the imports of member %s to seed the clusterset IP allocator: %w", m.id, err)
		}
		for i := range imports.Items {
			if si := &imports.Items[i]; len(si.Spec.IPs) > 0 {
				// An address out of range or already held (never so in a sound fleet) is left to
				// Allocate when its service is federated.
				a.Hold(mcs.Key{Namespace: si.Namespace, Name: si.Name}, si.Spec.IPs[0])
			}
		}
	}
	return a, nil
}
