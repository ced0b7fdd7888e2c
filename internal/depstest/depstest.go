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

// Package depstest checks what a command links, for the tests that keep a binary's
// dependencies in bounds (the proxy links no Kubernetes library, the agent no controller
// manager, the manager no xDS server).
package depstest

import (
	"os/exec"
	"strings"
	"testing"
)

// Denied fails t for each package that pkg (a path go list understands, "." for the test's
// own) links and deny reports true for.
func Denied(t *testing.T, pkg string, deny func(dep string) bool) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if deny(dep) {
			t.Errorf("%s links %s", pkg, dep)
		}
	}
}
