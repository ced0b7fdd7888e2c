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
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// The operator releases its lease only after its graceful shutdown: that must end well before the
// kubelet kills the pod, or a restart costs a whole lease duration without a leader.
func TestShutdownEndsBeforeTheKubeletKills(t *testing.T) {
	raw, err := os.ReadFile("../../../config/manager/manager.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	for _, doc := range strings.Split(string(raw), "\n---") {
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" {
			break
		}
	}
	if d.Kind != "Deployment" {
		t.Fatal("config/manager/manager.yaml has no Deployment")
	}
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Fatal("config/manager/manager.yaml: spec.template.spec.terminationGracePeriodSeconds is unset (30 s by default); set it explicitly")
	}
	// The release itself is one API call, within a retry period.
	if margin := time.Duration(*grace)*time.Second - GracefulShutdownTimeout; margin < 3*time.Second {
		t.Fatalf("terminationGracePeriodSeconds %d leaves %s after the %s graceful shutdown to release the lease; want at least 3s", *grace, margin, GracefulShutdownTimeout)
	}
}
