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

// Package identity is the agent's workload identity API: a gRPC service over TLS that signs an
// X.509-SVID for exactly the ServiceAccount a token authenticates (by TokenReview against the
// member's own API server), Istio-style, and returns it with the federated bundle map.
package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/fleetmesh/fleetmesh/internal/agent/identity/identityv1"
	"github.com/fleetmesh/fleetmesh/internal/trust"
)

// Audience is the audience workloads' projected ServiceAccount tokens must carry, so a token
// minted for anything else (the API server, another service) cannot be replayed here.
const Audience = identityv1.Audience

// AgentWorkload is the agent's own identity; its serving SVID is for this workload.
var AgentWorkload = trust.Workload{Namespace: identityv1.AgentNamespace, ServiceAccount: identityv1.AgentServiceAccount}

// MaxRequestSize bounds a request: a CSR is a few hundred bytes, a token a few kilobytes.
const MaxRequestSize = 64 << 10

// reviewTimeout bounds one TokenReview even if the caller set no deadline.
const reviewTimeout = 10 * time.Second

// Refusal reasons: the reason label of fleetmesh_identity_requests_refused_total, next to the
// trust.CSRRefusal values. Keep them stable.
const (
	ReasonMissingToken      = "missing-token"
	ReasonMissingCSR        = "missing-csr"
	ReasonUnauthenticated   = "unauthenticated"
	ReasonWrongAudience     = "wrong-audience"
	ReasonNotServiceAccount = "not-serviceaccount"
	ReasonReviewFailed      = "review-failed"
	ReasonBundleUnavailable = "bundle-unavailable"
	ReasonSignFailed        = "sign-failed"
)

// Signer signs an SVID for an authenticated workload; *trust.Issuer is one.
type Signer interface {
	Sign(csr []byte, w trust.Workload) ([]*x509.Certificate, error)
}

// Options configure a Server.
type Options struct {
	Signer   Signer
	Reviewer TokenReviewer
	// BundleMap returns the current federated bundle map file (trust.BundleSet.MarshalBundleMap
	// of the member's own bundle plus every federated one), cached by the caller: it is called
	// once per request. Nil or empty means not ready yet, and requests are refused.
	BundleMap func() []byte
	// Audience defaults to Audience.
	Audience string
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Log        logr.Logger
}

// Server implements the identity API.
type Server struct {
	opts    Options
	issued  prometheus.Counter
	refused *prometheus.CounterVec
}

var _ identityv1.Server = (*Server)(nil)

// NewServer checks opts and registers the metrics.
func NewServer(opts Options) (*Server, error) {
	switch {
	case opts.Signer == nil:
		return nil, errors.New("identity: a signer is required")
	case opts.Reviewer == nil:
		return nil, errors.New("identity: a token reviewer is required")
	case opts.BundleMap == nil:
		return nil, errors.New("identity: a bundle map provider is required")
	}
	if opts.Audience == "" {
		opts.Audience = Audience
	}
	s := &Server{
		opts: opts,
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetmesh_identity_svids_issued_total",
			Help: "X.509-SVIDs the identity API signed.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_identity_requests_refused_total",
			Help: "Identity API requests refused, by reason; nothing was signed for them.",
		}, []string{"reason"}),
	}
	// Every reason exists from the start, so a dashboard sees 0 rather than no series.
	for _, r := range []string{ReasonMissingToken, ReasonMissingCSR, ReasonUnauthenticated, ReasonWrongAudience,
		ReasonNotServiceAccount, ReasonReviewFailed, ReasonBundleUnavailable, ReasonSignFailed,
		string(trust.CSRMalformed), string(trust.CSRBadSignature), string(trust.CSRUnsupportedKey), string(trust.CSRForeignID)} {
		s.refused.WithLabelValues(r)
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.issued, s.refused} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("identity: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// refuse counts a refusal and returns its gRPC status.
func (s *Server) refuse(reason string, code codes.Code, format string, args ...any) error {
	s.refused.WithLabelValues(reason).Inc()
	msg := fmt.Sprintf(format, args...)
	s.opts.Log.V(1).Info("identity request refused", "reason", reason, "message", msg)
	return status.Error(code, msg)
}

// IssueX509SVID authenticates the token, then signs the CSR's key for the token's
// ServiceAccount. Every check happens before signing: a refusal signs nothing.
func (s *Server) IssueX509SVID(ctx context.Context, req *identityv1.IssueRequest) (*identityv1.IssueResponse, error) {
	if req.Token == "" {
		return nil, s.refuse(ReasonMissingToken, codes.Unauthenticated, "a ServiceAccount token (audience %q) is required", s.opts.Audience)
	}
	if len(req.CSR) == 0 {
		return nil, s.refuse(ReasonMissingCSR, codes.InvalidArgument, "a CSR is required")
	}

	rctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	review, err := s.opts.Reviewer.Review(rctx, req.Token, []string{s.opts.Audience})
	if err != nil {
		return nil, s.refuse(ReasonReviewFailed, codes.Unavailable, "could not review the token with the member's API server: %v", err)
	}
	if !review.Authenticated {
		why := review.Error
		if why == "" {
			why = "no reason given"
		}
		return nil, s.refuse(ReasonUnauthenticated, codes.Unauthenticated,
			"the member's API server did not authenticate the token for audience %q (expired, for another audience, or from another cluster): %s", s.opts.Audience, why)
	}
	if !slices.Contains(review.Audiences, s.opts.Audience) {
		return nil, s.refuse(ReasonWrongAudience, codes.Unauthenticated, "the token is valid for audiences %q, not %q", review.Audiences, s.opts.Audience)
	}
	w, err := trust.WorkloadFromUsername(review.Username)
	if err != nil {
		return nil, s.refuse(ReasonNotServiceAccount, codes.PermissionDenied, "%v", err)
	}

	bundleMap := s.opts.BundleMap()
	if len(bundleMap) == 0 {
		return nil, s.refuse(ReasonBundleUnavailable, codes.Unavailable, "the agent has no trust bundle yet; retry shortly")
	}

	chain, err := s.opts.Signer.Sign(req.CSR, w)
	if err != nil {
		var ce *trust.CSRError
		if errors.As(err, &ce) {
			return nil, s.refuse(string(ce.Reason), codes.InvalidArgument, "%v", err)
		}
		return nil, s.refuse(ReasonSignFailed, codes.Internal, "signing an SVID for %s/%s failed: %v", w.Namespace, w.ServiceAccount, err)
	}
	s.issued.Inc()
	s.opts.Log.V(4).Info("SVID issued", "namespace", w.Namespace, "serviceAccount", w.ServiceAccount, "notAfter", chain[0].NotAfter)
	resp := &identityv1.IssueResponse{BundleMap: bundleMap}
	for _, c := range chain {
		resp.SVIDChain = append(resp.SVIDChain, c.Raw)
	}
	return resp, nil
}

// NewGRPCServer returns a gRPC server offering s over TLS, presenting the agent's SVID from
// svid on every handshake (so a renewed SVID is used at once). Clients authenticate by token,
// not by certificate: they have no SVID before their first request.
func NewGRPCServer(s *Server, svid x509svid.Source, opts ...grpc.ServerOption) *grpc.Server {
	base := []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tlsconfig.TLSServerConfig(svid))),
		grpc.MaxRecvMsgSize(MaxRequestSize),
	}
	g := grpc.NewServer(append(base, opts...)...)
	identityv1.RegisterServer(g, s)
	return g
}

// SVIDHolder is an x509svid.Source whose SVID can be replaced while servers use it: the agent
// renews its serving SVID into it.
type SVIDHolder struct {
	svid atomic.Pointer[x509svid.SVID]
}

// Set replaces the SVID.
func (h *SVIDHolder) Set(s *x509svid.SVID) { h.svid.Store(s) }

// GetX509SVID implements x509svid.Source.
func (h *SVIDHolder) GetX509SVID() (*x509svid.SVID, error) {
	s := h.svid.Load()
	if s == nil {
		return nil, errors.New("identity: no serving SVID yet")
	}
	return s, nil
}
