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
	"strings"
	"testing"

	"github.com/fleetmesh/fleetmesh/internal/depstest"
)

// The agent links no test library and not controller-runtime's manager: its config package
// registers -kubeconfig at init, which the agent defines itself (the flag would be defined
// twice and the agent would not start).
func TestTheAgentLinksNoControllerManager(t *testing.T) {
	depstest.Denied(t, ".", func(dep string) bool {
		return strings.HasPrefix(dep, "github.com/onsi/") ||
			dep == "sigs.k8s.io/controller-runtime/pkg/client/config" || dep == "sigs.k8s.io/controller-runtime/pkg/manager"
	})
}
