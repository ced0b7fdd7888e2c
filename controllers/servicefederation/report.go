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
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/mcs"
	"github.com/fleetmesh/fleetmesh/internal/metrics"
	"github.com/fleetmesh/fleetmesh/internal/status"
)

// writeExportStatus sets Valid, Conflict and Ready on the member's ServiceExport.
func (r *Reconciler) writeExportStatus(ctx context.Context, m member, key mcs.Key, v mcs.Verdict, imported bool) error {
	se := &mcsv1beta1.ServiceExport{}
	if err := m.reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, se); err != nil {
		return client.IgnoreNotFound(err)
	}
	before := se.DeepCopy()
	set := func(t mcsv1beta1.ServiceExportConditionType, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		// The export lives in the member: its transitions are Events on the member's MeshCluster.
		status.SetAbout(&se.Status.Conditions, r.Recorder, m.mc, "ServiceExport "+key.String(),
			metav1.Condition{Type: string(t), Status: st, Reason: reason, Message: msg, ObservedGeneration: se.Generation})
	}
	set(mcsv1beta1.ServiceExportConditionValid, v.Valid, v.ValidReason, v.ValidMessage)
	set(mcsv1beta1.ServiceExportConditionConflict, v.Conflict, v.ConflictReason, v.ConflictMessage)
	switch {
	case !v.Valid:
		set(mcsv1beta1.ServiceExportConditionReady, false, string(mcsv1beta1.ServiceExportReasonPending), "not exported: the export is not valid")
	case imported:
		set(mcsv1beta1.ServiceExportConditionReady, true, string(mcsv1beta1.ServiceExportReasonReady), "imported by every member that has the namespace")
	default:
		set(mcsv1beta1.ServiceExportConditionReady, false, string(mcsv1beta1.ServiceExportReasonPending), "propagating to the members (retrying)")
	}
	if status.EqualAll(before.Status.Conditions, se.Status.Conditions) {
		return nil
	}
	if err := m.writer.Status().Patch(ctx, se, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("status of ServiceExport %s in %s: %w", key, m.id, err)
	}
	return nil
}

// reportMembers writes each member's export/import counts and ServicesSynced.
func (r *Reconciler) reportMembers(ctx context.Context, mi *meshv1alpha1.MeshInstallation, meshClusters []meshv1alpha1.MeshCluster, syncErr error) error {
	var errs []error
	members := map[string]bool{}
	for i := range meshClusters {
		members[install.ClusterID(&meshClusters[i])] = true
	}
	metrics.Retain(metrics.Imports, mi.Name, "cluster", members) // members that left
	for i := range meshClusters {
		m := r.connected(ctx, &meshClusters[i])
		if m.reader == nil {
			continue
		}
		exports := &mcsv1beta1.ServiceExportList{}
		imports := &mcsv1beta1.ServiceImportList{}
		// Counting only: no deep copies of the cached objects.
		if err := m.reader.List(ctx, exports, client.UnsafeDisableDeepCopy); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.reader.List(ctx, imports, client.MatchingLabels{meshv1alpha1.InstallationLabel: mi.Name}, client.UnsafeDisableDeepCopy); err != nil {
			errs = append(errs, err)
			continue
		}
		mc := m.mc.DeepCopy()
		before := mc.DeepCopy()
		mc.Status.ExportedServices = int32(len(exports.Items))
		mc.Status.ImportedServices = int32(len(imports.Items))
		metrics.Imports.WithLabelValues(mi.Name, m.id).Set(float64(len(imports.Items)))
		cond := metav1.Condition{Type: meshv1alpha1.ServicesSyncedCondition, Status: metav1.ConditionTrue, Reason: "Synced",
			Message: fmt.Sprintf("%d services exported here, %d imported", len(exports.Items), len(imports.Items)), ObservedGeneration: mc.Generation}
		if syncErr != nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "SyncFailed", "service federation is retrying: "+status.Truncate(syncErr.Error(), 900)
		}
		status.Set(&mc.Status.Conditions, r.Recorder, mc, cond)
		cacheHolds := status.EqualAll(before.Status.Conditions, mc.Status.Conditions) &&
			before.Status.ExportedServices == mc.Status.ExportedServices && before.Status.ImportedServices == mc.Status.ImportedServices
		// This controller owns only these fields of the status (see status.Apply), and is not
		// woken by its own writes of them: the cache alone must not decide to skip (status.Writer).
		err := r.written.Write(ctx, r.Client, mc, cacheHolds, &meshv1alpha1.MeshClusterStatus{
			Conditions:       status.Owned(mc.Status.Conditions, meshv1alpha1.ServicesSyncedCondition),
			ExportedServices: mc.Status.ExportedServices,
			ImportedServices: mc.Status.ImportedServices,
		}, "exportedServices", "importedServices")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
