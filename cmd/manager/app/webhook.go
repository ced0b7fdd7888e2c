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

package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
	meshadmission "github.com/fleetmesh/fleetmesh/internal/admission"
	"github.com/fleetmesh/fleetmesh/internal/webhookcert"
)

// The validating webhook refuses what CEL cannot check in a MeshInstallation (internal/admission).
// failurePolicy Ignore: while the operator is not serving (not installed yet, starting, down),
// a MeshInstallation is still admitted (an Argo CD sync that applies it with the CRDs and the
// operator goes through), and trust federation's own check of the same rules reports a bad
// entry in status.federatedTrustDomains instead. Only meshinstallations of mesh.fleetmesh.io.
// +kubebuilder:webhookconfiguration:mutating=false,name=validating-webhook-configuration
// +kubebuilder:webhook:path=/validate-mesh-fleetmesh-io-v1alpha1-meshinstallation,mutating=false,failurePolicy=ignore,sideEffects=None,groups=mesh.fleetmesh.io,resources=meshinstallations,verbs=create;update,versions=v1alpha1,name=meshinstallations.mesh.fleetmesh.io,admissionReviewVersions=v1,timeoutSeconds=5,matchPolicy=Equivalent

// WebhookOptions configure the operator's admission webhook server.
type WebhookOptions struct {
	// Addr is where the webhook server (HTTPS) listens, host:port; empty: no webhook server.
	Addr string
	// CertDir holds tls.crt and tls.key, watched for renewals (OLM mounts its certificate at
	// controller-runtime's default, /tmp/k8s-webhook-server/serving-certs). Unused with CertSecret.
	CertDir string
	// CertSecret, in Namespace, makes the operator keep its own serving CA (webhookcert): in that
	// Secret, and as the caBundle of the ValidatingWebhookConfiguration Configuration.
	CertSecret, Namespace, Configuration string
}

// newWebhookServer is the webhook server o asks for (nil: none) and, with o.CertSecret, the
// keeper of its certificate, reading and writing through its own uncached client of cfg.
func newWebhookServer(cfg *rest.Config, scheme *runtime.Scheme, o WebhookOptions) (webhook.Server, *webhookcert.Keeper, error) {
	if o.Addr == "" {
		return nil, nil, nil
	}
	host, p, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("webhook bind address %q: %w", o.Addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, nil, fmt.Errorf("webhook bind address %q: port: %w", o.Addr, err)
	}
	// HTTP/1.1 only (kubebuilder's default): HTTP/2's rapid-reset and stream floods
	// (CVE-2023-44487, CVE-2023-39325) are not worth it for a few admission requests.
	tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	var keeper *webhookcert.Keeper
	if o.CertSecret != "" {
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			return nil, nil, fmt.Errorf("webhook certificate client: %w", err)
		}
		keeper, err = webhookcert.New(webhookcert.Options{
			Reader: c, Writer: c, Namespace: o.Namespace, Secret: o.CertSecret, Configuration: o.Configuration,
			Log: ctrl.Log.WithName("webhook-cert"),
		})
		if err != nil {
			return nil, nil, err
		}
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = keeper.GetCertificate })
	}
	return webhook.NewServer(webhook.Options{Host: host, Port: port, CertDir: o.CertDir, TLSOpts: tlsOpts}), keeper, nil
}

// setupWebhookServer registers the webhook, the keeper of its certificate (if any) and the
// server's readiness check: a replica is ready once it serves a certificate.
func setupWebhookServer(mgr ctrl.Manager, keeper *webhookcert.Keeper) error {
	if err := SetupWebhook(mgr); err != nil {
		return err
	}
	if keeper != nil {
		if err := mgr.Add(keeper); err != nil {
			return fmt.Errorf("add the webhook certificate keeper: %w", err)
		}
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return fmt.Errorf("add the webhook readiness check: %w", err)
	}
	return nil
}

// SetupWebhook registers the MeshInstallation validating webhook with mgr's webhook server.
func SetupWebhook(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &meshv1alpha1.MeshInstallation{}).
		WithValidator(&meshInstallationValidator{reader: mgr.GetAPIReader()}).
		Complete(); err != nil {
		return fmt.Errorf("set up the MeshInstallation webhook: %w", err)
	}
	return nil
}

// meshInstallationValidator is the webhook: it gathers what the rules need (the Clusters the
// installation would select and the other installations, read live: the webhook may answer
// before the caches sync) and refuses what meshadmission.Validate finds.
type meshInstallationValidator struct {
	reader client.Reader
}

var _ admission.Validator[*meshv1alpha1.MeshInstallation] = &meshInstallationValidator{}

func (v *meshInstallationValidator) ValidateCreate(ctx context.Context, mi *meshv1alpha1.MeshInstallation) (admission.Warnings, error) {
	return v.validate(ctx, mi, nil)
}

func (v *meshInstallationValidator) ValidateUpdate(ctx context.Context, old, mi *meshv1alpha1.MeshInstallation) (admission.Warnings, error) {
	return v.validate(ctx, mi, old)
}

func (v *meshInstallationValidator) ValidateDelete(context.Context, *meshv1alpha1.MeshInstallation) (admission.Warnings, error) {
	return nil, nil
}

// memberReadTimeout bounds the reads of Clusters and installations, well within the webhook's
// timeoutSeconds.
const memberReadTimeout = 3 * time.Second

func (v *meshInstallationValidator) validate(ctx context.Context, mi, old *meshv1alpha1.MeshInstallation) (admission.Warnings, error) {
	if !mi.DeletionTimestamp.IsZero() || len(meshadmission.NewFederatedTrustDomains(mi, old)) == 0 {
		return nil, nil // a deletion finishing, or nothing new to check
	}
	var warnings admission.Warnings
	members, err := v.memberTrustDomains(ctx, mi)
	if err != nil {
		warnings = append(warnings, "spec.trust.federatesWith was not checked against the members' trust domains ("+err.Error()+"); the operator reports such an entry in status.federatedTrustDomains")
	}
	if errs := meshadmission.Validate(mi, old, members); len(errs) > 0 {
		return warnings, apierrors.NewInvalid(meshv1alpha1.GroupVersion.WithKind("MeshInstallation").GroupKind(), mi.Name, errs)
	}
	return warnings, nil
}

func (v *meshInstallationValidator) memberTrustDomains(ctx context.Context, mi *meshv1alpha1.MeshInstallation) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, memberReadTimeout)
	defer cancel()
	clusters := &clusterv1.ClusterList{}
	if err := v.reader.List(ctx, clusters); err != nil {
		return nil, fmt.Errorf("list Clusters: %w", err)
	}
	all := &meshv1alpha1.MeshInstallationList{}
	if err := v.reader.List(ctx, all); err != nil {
		return nil, fmt.Errorf("list MeshInstallations: %w", err)
	}
	return meshadmission.MemberTrustDomains(mi, all.Items, clusters.Items)
}
