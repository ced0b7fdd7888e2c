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

// Package controllers holds one package per reconciled kind; this file carries the RBAC markers
// of the permissions the manager needs in the management cluster, from which config/rbac and
// the OLM bundle's CSV permissions are generated.
package controllers

// The fleetmesh API.
// +kubebuilder:rbac:groups=mesh.fleetmesh.io,resources=meshinstallations;meshclusters,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=mesh.fleetmesh.io,resources=meshinstallations/status;meshclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.fleetmesh.io,resources=meshinstallations/finalizers;meshclusters/finalizers,verbs=update

// Cluster API: the members, and their kubeconfig Secrets: get only, by name (<cluster>-kubeconfig),
// never listed, watched or cached (Cluster API's CA, etcd and service-account key Secrets carry
// the same label).
// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Events on every condition transition.
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// cert-manager: members' intermediates are signed through CertificateRequests.
// (get and create only: requests are read uncached, never listed or watched, and a person deletes
// a denied one.)
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=get;create
