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

// Command bundlegen generates and validates fleetmesh's OLM bundle (registry+v1) without
// operator-sdk: `generate` turns `kustomize build config/manifests` plus the API types' descriptor
// markers and config/samples into bundle/; `validate` runs operator-framework/api's validators
// (what `operator-sdk bundle validate --select-optional suite=operatorframework` runs) and the
// checks they lack. It is its own module so operator-framework/api stays out of the operator's
// go.mod.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "generate":
		err = runGenerate(os.Args[2:])
	case "validate":
		err = runValidate(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bundlegen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bundlegen generate|validate [flags] (-h for flags)")
	os.Exit(2)
}

func runGenerate(args []string) error {
	var o generateOptions
	fs := flag.NewFlagSet("generate", flag.ExitOnError)
	fs.StringVar(&o.Manifests, "manifests", "-", "output of `kustomize build config/manifests` (- for stdin)")
	fs.StringVar(&o.APIs, "apis", "apis/mesh/v1alpha1", "Go package of the API types, for descriptor markers")
	fs.StringVar(&o.Samples, "samples", "config/samples", "directory of sample objects for alm-examples")
	fs.StringVar(&o.Icon, "icon", "config/manifests/icon.svg", "SVG icon")
	fs.StringVar(&o.Out, "out", "bundle", "bundle directory")
	fs.StringVar(&o.Dockerfile, "dockerfile", "bundle.Dockerfile", "bundle image Dockerfile to write")
	fs.StringVar(&o.Version, "version", "", "operator version, e.g. v0.1.0")
	fs.StringVar(&o.ManagerImage, "manager-image", "", "manager image")
	fs.StringVar(&o.AgentImage, "agent-image", "", "agent image the operator installs into members")
	fs.StringVar(&o.ProxyImage, "proxy-image", "", "sidecar proxy image the agents inject into members' pods")
	fs.StringVar(&o.Package, "package", "fleetmesh", "OLM package name")
	fs.StringVar(&o.Channels, "channels", "candidate", "comma-separated channels")
	fs.StringVar(&o.DefaultChannel, "default-channel", "candidate", "default channel")
	_ = fs.Parse(args)
	if o.Version == "" || o.ManagerImage == "" {
		return fmt.Errorf("-version and -manager-image are required")
	}
	files, df, err := generate(o)
	if err != nil {
		return err
	}
	if err := writeBundle(o.Out, files, o.Dockerfile, df); err != nil {
		return err
	}
	fmt.Printf("bundle written to %s/ (%d files) and %s\n", o.Out, len(files), o.Dockerfile)
	return nil
}

func runValidate(args []string) error {
	var o validateOptions
	fs := flag.NewFlagSet("validate", flag.ExitOnError)
	fs.StringVar(&o.Bundle, "bundle", "bundle", "bundle directory")
	fs.StringVar(&o.RBAC, "rbac", "", "output of `kustomize build config/rbac` (- for stdin); empty skips the permissions check")
	fs.StringVar(&o.Dockerfile, "dockerfile", "bundle.Dockerfile", "bundle image Dockerfile whose labels must match annotations.yaml")
	fs.StringVar(&o.K8sVersion, "k8s-version", "1.36", "newest Kubernetes version the bundle must install on")
	_ = fs.Parse(args)
	findings, err := validate(o)
	if err != nil {
		return err
	}
	for _, f := range findings {
		fmt.Println(f)
	}
	if len(findings) > 0 {
		return fmt.Errorf("%s: %d problem(s), warnings included; fix the bundle's sources (config/, apis/) and run make bundle", o.Bundle, len(findings))
	}
	fmt.Printf("%s: valid (operator-framework default, operatorhub/v2, standardcapabilities, standardcategories, good-practices, alpha-deprecated-apis for k8s %s, object; fleetmesh owned-crds, alm-examples, install, permissions)\n", o.Bundle, o.K8sVersion)
	return nil
}
