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

package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/operator-framework/api/pkg/operators/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Under OLM, OLM issues the webhook's serving certificate, mounts it where the operator reads it
// by default (/tmp/k8s-webhook-server/serving-certs), creates the Service and the webhook
// configuration with the caBundle, and rotates the certificate. So the kustomize install's own
// certificate machinery (config/webhook-cert, labelled selfCertLabel) stays out of the bundle,
// and so do the manager's flags that turn it on.
const (
	selfCertLabel      = "app.kubernetes.io/component"
	selfCertLabelValue = "webhook-cert"
)

var selfCertFlags = []string{"--webhook-cert-secret", "--webhook-configuration"}

func isSelfCert(u *unstructured.Unstructured) bool {
	return u.GetLabels()[selfCertLabel] == selfCertLabelValue
}

// dropSelfCertFlags removes selfCertFlags from the manager container's arguments.
func dropSelfCertFlags(dep *appsv1.Deployment) {
	for i := range dep.Spec.Template.Spec.Containers {
		c := &dep.Spec.Template.Spec.Containers[i]
		c.Args = slices.DeleteFunc(c.Args, func(a string) bool {
			return slices.ContainsFunc(selfCertFlags, func(f string) bool { return a == f || strings.HasPrefix(a, f+"=") })
		})
	}
}

// webhookDefinitions turns the ValidatingWebhookConfigurations into the CSV's webhookdefinitions,
// served by dep through the Service each names (its port and target port, resolved to the
// container's port number), and returns the names of those Services: OLM makes its own, so the
// bundle leaves them out.
func webhookDefinitions(configs []*unstructured.Unstructured, services map[string]*unstructured.Unstructured, dep *appsv1.Deployment) ([]v1alpha1.WebhookDescription, map[string]bool, error) {
	var out []v1alpha1.WebhookDescription
	used := map[string]bool{}
	for _, u := range configs {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, vwc); err != nil {
			return nil, nil, fmt.Errorf("ValidatingWebhookConfiguration %s: %w", u.GetName(), err)
		}
		for _, wh := range vwc.Webhooks {
			ref := wh.ClientConfig.Service
			if ref == nil {
				return nil, nil, fmt.Errorf("webhook %s of %s calls a URL: OLM serves webhooks only through the operator's Deployment", wh.Name, vwc.Name)
			}
			su, ok := services[ref.Name]
			if !ok {
				return nil, nil, fmt.Errorf("webhook %s of %s calls Service %s, which the manifests do not define", wh.Name, vwc.Name, ref.Name)
			}
			port, target, err := servicePort(su, ref.Port, dep)
			if err != nil {
				return nil, nil, fmt.Errorf("webhook %s of %s: %w", wh.Name, vwc.Name, err)
			}
			used[ref.Name] = true
			out = append(out, v1alpha1.WebhookDescription{
				GenerateName: wh.Name, Type: v1alpha1.ValidatingAdmissionWebhook, DeploymentName: dep.Name,
				ContainerPort: port, TargetPort: &target, WebhookPath: ref.Path,
				Rules: wh.Rules, FailurePolicy: wh.FailurePolicy, MatchPolicy: wh.MatchPolicy, ObjectSelector: wh.ObjectSelector,
				SideEffects: wh.SideEffects, TimeoutSeconds: wh.TimeoutSeconds, AdmissionReviewVersions: wh.AdmissionReviewVersions,
			})
		}
	}
	return out, used, nil
}

// servicePort is the Service's port the webhook calls (want; nil: 443, the API server's default)
// and its target, a named one resolved to the manager's container port of that name.
func servicePort(u *unstructured.Unstructured, want *int32, dep *appsv1.Deployment) (int32, intstr.IntOrString, error) {
	svc := &corev1.Service{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, svc); err != nil {
		return 0, intstr.IntOrString{}, fmt.Errorf("Service %s: %w", u.GetName(), err)
	}
	port := int32(443)
	if want != nil {
		port = *want
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != port {
			continue
		}
		if p.TargetPort.Type == intstr.Int {
			return port, p.TargetPort, nil
		}
		for _, c := range dep.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == p.TargetPort.StrVal {
					return port, intstr.FromInt32(cp.ContainerPort), nil
				}
			}
		}
		return 0, intstr.IntOrString{}, fmt.Errorf("Service %s targets port %q, which no container of Deployment %s names", svc.Name, p.TargetPort.StrVal, dep.Name)
	}
	return 0, intstr.IntOrString{}, fmt.Errorf("Service %s has no port %d", svc.Name, port)
}
