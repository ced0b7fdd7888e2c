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

package xds

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/util/validation"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

// Defaults of FailoverSpec (its kubebuilder:default markers) that have no constant in the API
// package; the durations are meshv1alpha1.DefaultOutlierInterval and DefaultBaseEjectionTime.
const (
	DefaultConsecutiveErrors int32 = 2
	DefaultRetries           int32 = 2
)

// Outlier detection as gRPC-Go runs it (gRFC A50) knows only success-rate and
// failure-percentage ejection: consecutive_5xx and the other consecutive_* fields are Envoy's
// alone. So ConsecutiveErrors becomes a failure-percentage rule: a host that served at least
// ConsecutiveErrors calls in one Interval, more than FailurePercentageThreshold percent of them
// failed, is ejected at the end of that Interval. gRPC counts every non-OK status as a failure
// (application errors too), hence a high threshold. gRPC-Go applies the rule across all
// priorities of a cluster, so MaxEjectionPercent must let a whole member's endpoints go, or a
// failing local member would never be failed over.
const (
	FailurePercentageThreshold = 85
	MaxEjectionPercent         = 100
)

func (f Failover) withDefaults() (Failover, error) {
	if f.ConsecutiveErrors == 0 {
		f.ConsecutiveErrors = DefaultConsecutiveErrors
	}
	if f.Interval == 0 {
		f.Interval = meshv1alpha1.DefaultOutlierInterval
	}
	if f.BaseEjectionTime == 0 {
		f.BaseEjectionTime = meshv1alpha1.DefaultBaseEjectionTime
	}
	if f.ConsecutiveErrors < 0 || f.Interval < 0 || f.BaseEjectionTime < 0 || f.Retries < 0 {
		return f, fmt.Errorf("failover policy %+v: values must not be negative", f)
	}
	return f, nil
}

// outlierDetection is the Cluster's outlier_detection: the failure-percentage rule gRPC
// honours, and consecutive_5xx for Envoy clients.
func outlierDetection(f Failover) *clusterv3.OutlierDetection {
	n := wrapperspb.UInt32(uint32(f.ConsecutiveErrors))
	return &clusterv3.OutlierDetection{
		Consecutive_5Xx:                n,
		Interval:                       durationpb.New(f.Interval),
		BaseEjectionTime:               durationpb.New(f.BaseEjectionTime),
		MaxEjectionPercent:             wrapperspb.UInt32(MaxEjectionPercent),
		EnforcingSuccessRate:           wrapperspb.UInt32(0), // off: needs 5 hosts x 100 calls
		FailurePercentageThreshold:     wrapperspb.UInt32(FailurePercentageThreshold),
		EnforcingFailurePercentage:     wrapperspb.UInt32(100),
		FailurePercentageMinimumHosts:  wrapperspb.UInt32(1),
		FailurePercentageRequestVolume: n,
	}
}

// retryPolicy retries calls that failed with UNAVAILABLE before any response (gRPC never
// retries a call whose server already sent headers).
func retryPolicy(retries int32) *routev3.RetryPolicy {
	if retries == 0 {
		return nil
	}
	return &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(uint32(retries))}
}

// rbacRules allows callers whose SPIFFE ID (the certificate's URI SAN, which gRPC's
// authenticated principal_name matches first) is in an allowed trust domain and, if any are
// listed, an allowed namespace. With no allowed trust domains, the federated ones are allowed:
// never anyone. Matchers are those both gRPC-Go and Envoy implement: prefix, and an anchored
// safe_regex (gRPC searches the regex unanchored, Envoy matches it whole: ^...$ agrees in both).
func rbacRules(own spiffeid.TrustDomain, federated []string, authz Authorization) (*rbacv3.RBAC, error) {
	tdNames := authz.AllowedTrustDomains
	if len(tdNames) == 0 {
		tdNames = append(slices.Clone(federated), own.Name())
	}
	tds := make([]string, 0, len(tdNames))
	for _, n := range tdNames {
		td, err := spiffeid.TrustDomainFromString(n)
		if err != nil {
			return nil, fmt.Errorf("trust domain %q: %w", n, err)
		}
		tds = append(tds, td.Name())
	}
	slices.Sort(tds)
	tds = slices.Compact(tds)

	nss := slices.Clone(authz.AllowedNamespaces)
	for _, ns := range nss {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("allowed namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	slices.Sort(nss)
	nss = slices.Compact(nss)

	principals := make([]*rbacv3.Principal, 0, len(tds))
	for _, td := range tds {
		m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + td + "/"}}
		if len(nss) > 0 {
			// Namespace names are DNS labels and trust domains [a-z0-9._-]: only "." needs quoting.
			re := "^spiffe://" + regexp.QuoteMeta(td) + "/ns/(" + strings.Join(nss, "|") + ")/.*$"
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
		}
		principals = append(principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
			Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m},
		}})
	}
	return &rbacv3.RBAC{
		Action: rbacv3.RBAC_ALLOW,
		Policies: map[string]*rbacv3.Policy{"fleetmesh-peers": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  principals,
		}},
	}, nil
}
