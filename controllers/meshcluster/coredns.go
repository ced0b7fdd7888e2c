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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/internal/install"
)

// pointCoreDNS puts the clusterset.local block (install.CorefileWith) into the member's
// CoreDNS Corefile, forwarding to the agent Service's cluster IP, and tells what it found. A
// member without kube-system/coredns (another DNS server) is left alone: docs/mcs.md says how to
// forward the zone by hand. The agent Service comes from the cluster cache (it holds every
// Service); the Corefile from the API server (the operator caches no ConfigMaps of kube-system).
func pointCoreDNS(ctx context.Context, c memberClient) (string, error) {
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: install.Namespace, Name: install.AgentName}, svc); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", nil
	}
	return editCorefile(ctx, c, func(corefile string) string { return install.CorefileWith(corefile, ip) })
}

// unpointCoreDNS takes the block out again (uninstall).
func unpointCoreDNS(ctx context.Context, c memberClient) error {
	_, err := editCorefile(ctx, c, install.CorefileWithout)
	return err
}

func editCorefile(ctx context.Context, c memberClient, edit func(string) string) (string, error) {
	cm := &corev1.ConfigMap{}
	if err := c.live.Get(ctx, client.ObjectKey{Namespace: install.CoreDNSNamespace, Name: install.CoreDNSConfigMap}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return "clusterset.local: no " + install.CoreDNSNamespace + "/" + install.CoreDNSConfigMap + " to point at the agent (docs/mcs.md)", nil
		}
		return "", err
	}
	corefile, ok := cm.Data[install.CorefileKey]
	if !ok {
		return "clusterset.local: " + install.CoreDNSNamespace + "/" + install.CoreDNSConfigMap + " has no " + install.CorefileKey + " (docs/mcs.md)", nil
	}
	if next := edit(corefile); next != corefile {
		cm.Data[install.CorefileKey] = next
		// An update with the read's resourceVersion: a concurrent edit by someone else wins, and
		// this reconcile retries from their version.
		if err := c.Update(ctx, cm); err != nil {
			return "", fmt.Errorf("edit the Corefile of %s/%s: %w", install.CoreDNSNamespace, install.CoreDNSConfigMap, err)
		}
	}
	return "clusterset.local: CoreDNS forwards it to the agent", nil
}
