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

// Package fleet starts a local fleet of real Kubernetes control planes — one management cluster
// and N members — registered with each other exactly as Cluster API would register them, for the
// e2e suites and the demo. Run it inside a sandbox (package e2e/sandbox) so that nothing it
// starts can outlive the process.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	capikubeconfig "sigs.k8s.io/cluster-api/util/kubeconfig"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	meshv1alpha1 "github.com/fleetmesh/fleetmesh/apis/mesh/v1alpha1"
)

const (
	// ManagementName is the kubeconfig context of the management cluster.
	ManagementName = "management"
	// ClusterNamespace holds the members' Cluster API Clusters in the management cluster.
	ClusterNamespace = "fleet"
	// MemberLabel selects the fleet's members; the sample MeshInstallation selects it.
	MemberLabel = "mesh.fleetmesh.io/enabled"
	// RegionLabel carries a member's region on its Cluster.
	RegionLabel = "topology.kubernetes.io/region"
)

// maxParallelStarts bounds how many clusters start at the same time.
const maxParallelStarts = 4

// Options describe a fleet.
type Options struct {
	// Members is the number of member clusters.
	Members int
	// BinDir holds etcd and kube-apiserver (KUBEBUILDER_ASSETS).
	BinDir string
	// WorkDir receives the fleet's kubeconfig file; a temporary directory if empty.
	WorkDir string
	// ManagementCRDs are extra CRD directories or files for the management cluster.
	ManagementCRDs []string
	// MemberCRDs are extra CRD directories or files for every member.
	MemberCRDs []string
	// Regions are assigned to members round-robin (Cluster label topology.kubernetes.io/region).
	Regions []string
	// Unregistered leaves the members out of Cluster API: RegisterMember registers one later
	// (benchmarks time a Cluster from provisioned to member).
	Unregistered bool
	// Full makes every cluster, management included, one that runs workloads: besides etcd and
	// kube-apiserver it gets kube-controller-manager, kube-scheduler (from BinDir) and kwok (from
	// BinDir or PATH) simulating one Node.
	Full bool
}

// Cluster is one running control plane.
type Cluster struct {
	Name   string
	Index  int
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	// Kubeconfig is an admin kubeconfig for this cluster, as Cluster API would store it.
	Kubeconfig []byte
	// StartedIn is how long the cluster took to start, components included.
	StartedIn time.Duration

	procs *clusterProcs
}

// Fleet is a management cluster and its members.
type Fleet struct {
	Management *Cluster
	Members    []*Cluster
	// KubeconfigPath has one context per cluster, for kubectl.
	KubeconfigPath string
	Scheme         *runtime.Scheme
	opts           Options
	ownsWorkDir    bool
}

// Scheme returns the types the fleet's clients understand.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(clusterv1.AddToScheme(s))
	utilruntime.Must(meshv1alpha1.AddToScheme(s))
	utilruntime.Must(cmapi.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.Install(s))
	return s
}

// MemberName is the name of the i-th member (0-based).
func MemberName(i int) string { return fmt.Sprintf("member-%d", i+1) }

// Start brings up the management cluster and every member in parallel, registers each member
// with a Cluster API Cluster and kubeconfig Secret, and writes the fleet's kubeconfig. On error it
// stops whatever it started.
func Start(ctx context.Context, opts Options) (f *Fleet, err error) {
	if opts.BinDir == "" {
		opts.BinDir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("fleet: %s not found in %q: run 'make kube-binaries' (or set KUBEBUILDER_ASSETS)", b, opts.BinDir)
		}
	}
	f = &Fleet{opts: opts, Scheme: Scheme()}
	if opts.WorkDir == "" {
		if f.opts.WorkDir, err = os.MkdirTemp("", "fleetmesh-fleet-"); err != nil {
			return nil, err
		}
		f.ownsWorkDir = true
	} else if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: work directory: %w", err)
	}
	// The error returns below set the named result to nil: stop what this call started.
	started := f
	defer func() {
		if err != nil {
			_ = started.Stop()
		}
	}()
	if opts.Full {
		if err := f.writeKwokStages(); err != nil {
			return nil, err
		}
	}

	mgmtCRDs, err := ManagementCRDPaths()
	if err != nil {
		return nil, err
	}
	f.Management = &Cluster{Name: ManagementName, Index: 0}
	f.Members = make([]*Cluster, opts.Members)
	for i := range f.Members {
		f.Members[i] = &Cluster{Name: MemberName(i), Index: i + 1}
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	// A few clusters start at once: each start is CPU-bound, and a large fleet started all at
	// once on a small machine runs into the components' start timeouts.
	slots := make(chan struct{}, maxParallelStarts)
	start := func(ctx context.Context, c *Cluster, crds []string) {
		defer wg.Done()
		slots <- struct{}{}
		defer func() { <-slots }()
		if err := f.startCluster(ctx, c, crds); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("start %s: %w", c.Name, err))
			mu.Unlock()
		}
	}
	wg.Add(1 + len(f.Members))
	go start(ctx, f.Management, append(mgmtCRDs, opts.ManagementCRDs...))
	for _, m := range f.Members {
		go start(ctx, m, opts.MemberCRDs)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	if err := f.registerMembers(ctx); err != nil {
		return nil, err
	}
	if err := f.writeKubeconfig(); err != nil {
		return nil, err
	}
	return f, nil
}

// NewEnvironment is an envtest environment for the cluster with the given index, fit for the
// sandbox: there is no default route there, so the API server advertises the cluster's first
// pod-network address (10.244.<index>.1), which is local inside the sandbox only.
func NewEnvironment(binDir string, index int, scheme *runtime.Scheme, crds ...string) *envtest.Environment {
	env := &envtest.Environment{
		BinaryAssetsDirectory:    binDir,
		CRDDirectoryPaths:        crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  20 * time.Second,
		Scheme:                   scheme,
	}
	env.ControlPlane.GetAPIServer().Configure().Set("advertise-address", fmt.Sprintf("10.244.%d.1", index))
	return env
}

func (f *Fleet) startCluster(ctx context.Context, c *Cluster, crds []string) error {
	started := time.Now()
	env := NewEnvironment(f.opts.BinDir, c.Index, f.Scheme, crds...)
	c.Env = env
	if err := f.prepareControlPlane(c, env); err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return f.withLogTail(c, "kube-apiserver", err)
	}
	c.Config = cfg
	admin, err := env.AddUser(envtest.User{Name: "fleet-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add admin user: %w", err)
	}
	if c.Kubeconfig, err = admin.KubeConfig(); err != nil {
		return fmt.Errorf("render admin kubeconfig: %w", err)
	}
	c.Config = admin.Config()
	// The harness acts for many users at once (and benchmarks write bursts): client-side
	// throttling at client-go's default 5 QPS would measure the harness, not fleetmesh.
	c.Config.QPS, c.Config.Burst = 500, 1000
	f.startWatchdog(c)
	if c.Client, err = client.New(c.Config, client.Options{Scheme: f.Scheme}); err != nil {
		return err
	}
	if f.isFullMember(c) {
		if err := f.startComponents(ctx, c); err != nil {
			return err
		}
	}
	c.StartedIn = time.Since(started)
	return nil
}

// registerMembers does what Cluster API does for a provisioned workload cluster: a Cluster object,
// its kubeconfig Secret, and status.initialization.infrastructureProvisioned.
func (f *Fleet) registerMembers(ctx context.Context) error {
	mc := f.Management.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ClusterNamespace}}
	if err := mc.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ClusterNamespace, err)
	}
	if f.opts.Unregistered {
		return nil
	}
	for _, m := range f.Members {
		if err := f.RegisterMember(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// RegisterMember creates (or re-creates) the member's Cluster and kubeconfig Secret.
func (f *Fleet) RegisterMember(ctx context.Context, m *Cluster) error {
	mc := f.Management.Client
	labels := map[string]string{MemberLabel: "true"}
	if region := f.Region(m); region != "" {
		labels[RegionLabel] = region
	}
	u := m.apiServing()
	port := int32(0)
	if _, err := fmt.Sscanf(u.Port, "%d", &port); err != nil {
		return fmt.Errorf("parse %s API server port %q: %w", m.Name, u.Port, err)
	}
	cluster := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: ClusterNamespace, Labels: labels},
		Spec: clusterv1.ClusterSpec{
			ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: u.Address, Port: port},
		},
	}
	if err := mc.Create(ctx, cluster); err != nil {
		return fmt.Errorf("create Cluster %s: %w", m.Name, err)
	}
	// A revocable credential (unlike envtest's client certificates), so tests can rotate the
	// Secret and revoke the old credential as Cluster API users do.
	token, err := AdminToken(ctx, m, InitialCredential)
	if err != nil {
		return err
	}
	kc, err := KubeconfigWithToken(m, token)
	if err != nil {
		return err
	}
	if err := f.WriteKubeconfigSecret(ctx, m, kc); err != nil {
		return err
	}
	// As with Cluster API, the kubeconfig Secret exists by the time the Cluster is provisioned:
	// clustercache connects on that transition and retries a failed connect only every 30 s.
	if err := mc.Get(ctx, client.ObjectKeyFromObject(cluster), cluster); err != nil {
		return fmt.Errorf("get Cluster %s: %w", m.Name, err)
	}
	cluster.Status.Initialization.InfrastructureProvisioned = ptr.To(true)
	cluster.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
	if err := mc.Status().Update(ctx, cluster); err != nil {
		return fmt.Errorf("mark Cluster %s provisioned: %w", m.Name, err)
	}
	return nil
}

// Region is the member's region (from Options.Regions), or "" if it has none.
func (f *Fleet) Region(m *Cluster) string {
	if len(f.opts.Regions) == 0 || m == f.Management {
		return ""
	}
	return f.opts.Regions[(m.Index-1)%len(f.opts.Regions)]
}

// WriteKubeconfigSecret writes (or replaces) the member's <name>-kubeconfig Secret, as Cluster
// API does when it creates or rotates it.
func (f *Fleet) WriteKubeconfigSecret(ctx context.Context, m *Cluster, kubeconfig []byte) error {
	mc := f.Management.Client
	cluster := &clusterv1.Cluster{}
	if err := mc.Get(ctx, client.ObjectKey{Namespace: ClusterNamespace, Name: m.Name}, cluster); err != nil {
		return fmt.Errorf("get Cluster %s: %w", m.Name, err)
	}
	secret := capikubeconfig.GenerateSecret(cluster, kubeconfig)
	existing := &corev1.Secret{}
	err := mc.Get(ctx, client.ObjectKeyFromObject(secret), existing)
	switch {
	case apierrors.IsNotFound(err):
		err = mc.Create(ctx, secret)
	case err == nil:
		existing.Data = secret.Data
		err = mc.Update(ctx, existing)
	}
	if err != nil {
		return fmt.Errorf("write kubeconfig Secret of %s: %w", m.Name, err)
	}
	return nil
}

// Member returns the member with the given name, or nil.
func (f *Fleet) Member(name string) *Cluster {
	for _, m := range f.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func (f *Fleet) writeKubeconfig() error {
	merged := clientcmdapi.NewConfig()
	for _, c := range append([]*Cluster{f.Management}, f.Members...) {
		kc, err := clientcmd.Load(c.Kubeconfig)
		if err != nil {
			return fmt.Errorf("parse kubeconfig of %s: %w", c.Name, err)
		}
		ctx := kc.Contexts[kc.CurrentContext]
		if ctx == nil {
			return fmt.Errorf("kubeconfig of %s has no current context", c.Name)
		}
		merged.Clusters[c.Name] = kc.Clusters[ctx.Cluster]
		merged.AuthInfos[c.Name] = kc.AuthInfos[ctx.AuthInfo]
		merged.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
	}
	merged.CurrentContext = ManagementName
	f.KubeconfigPath = filepath.Join(f.opts.WorkDir, "fleet.kubeconfig")
	return clientcmd.WriteToFile(*merged, f.KubeconfigPath)
}

// Stop stops every cluster it started and removes the work directory it created.
func (f *Fleet) Stop() error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range append([]*Cluster{f.Management}, f.Members...) {
		if c == nil || c.Env == nil {
			continue
		}
		wg.Add(1)
		go func(c *Cluster) {
			defer wg.Done()
			if err := f.stopCluster(c); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stop %s: %w", c.Name, err))
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	if f.ownsWorkDir {
		errs = append(errs, os.RemoveAll(f.opts.WorkDir))
	}
	return errors.Join(errs...)
}

// moduleDir finds a dependency's directory in the module cache through the go command, so
// the CRDs installed are exactly those of the pinned module version.
func moduleDir(module string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list -m %s: %v: %s", module, err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("go list -m %s: module not downloaded (run 'go mod download %s')", module, module)
	}
	return dir, nil
}

// ManagementCRDPaths are the CRDs a management cluster has: Cluster API's core CRDs,
// cert-manager's CRDs and fleetmesh's own.
func ManagementCRDPaths() ([]string, error) {
	capi, err := moduleDir("sigs.k8s.io/cluster-api")
	if err != nil {
		return nil, err
	}
	cm, err := moduleDir("github.com/cert-manager/cert-manager")
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	return []string{
		filepath.Join(capi, "core", "config", "crd", "bases"),
		filepath.Join(cm, "deploy", "crds"),
		filepath.Join(root, "config", "crd", "bases"),
	}, nil
}

// RepoRoot is the root of the fleetmesh module.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the fleetmesh module root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
