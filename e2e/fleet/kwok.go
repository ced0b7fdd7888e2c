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

package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

const (
	// FakeNodeAnnotation marks the Nodes kwok simulates (with the value FakeNodeAnnotationValue).
	FakeNodeAnnotation = "kwok.x-k8s.io/node"
	// FakeNodeAnnotationValue is the value of FakeNodeAnnotation on the fake Nodes.
	FakeNodeAnnotationValue = "fake"
	// PartOfLabel with the value PartOfValue marks fleetmesh's own pods (the operator, the
	// agent): kwok leaves them alone, because the harness runs them as real processes.
	PartOfLabel = "app.kubernetes.io/part-of"
	// PartOfValue is the value of PartOfLabel on fleetmesh's pods.
	PartOfValue = "fleetmesh"
	// RunLocallyAnnotation (any value) marks any other pod the harness runs as a real process,
	// such as a test workload: kwok does not make it ready or complete it.
	RunLocallyAnnotation = "fleetmesh.io/run-locally"
)

// kwokStages are the stages the fleet gives kwok, from its module's kustomize/stage/ (the set
// that kwokctl's "fast" stage configuration combines). The standalone kwok binary has none built
// in, and reading them from the module cache keeps them those of the pinned kwok version.
var kwokStages = []string{
	"node/fast/node-initialize.yaml",
	"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"pod/fast/pod-ready.yaml",
	"pod/fast/pod-complete.yaml",
	"pod/fast/pod-delete.yaml",
}

// kwokSkipsRealPods are the stages that would fake a pod's life: a pod the harness really runs
// must get its status from the harness only.
var kwokSkipsRealPods = map[string]bool{"pod-ready": true, "pod-complete": true}

// kwokSkipsWorkloadPods are the stages that would end the life of a workload pod (one the
// harness runs with a network namespace of its own, workload.go) behind the harness's back: as
// with a real kubelet, such a pod leaves the API only once its containers have stopped and its
// network is gone. fleetmesh's own pods are still deleted by kwok at once, as they always were.
var kwokSkipsWorkloadPods = map[string]bool{"pod-delete": true}

// kwokStagesPath is the fleet's kwok configuration, written by writeKwokStages.
func (f *Fleet) kwokStagesPath() string {
	return filepath.Join(f.opts.WorkDir, "kwok-stages.yaml")
}

// writeKwokStages writes the stages of the kwok version in BinDir, once per fleet.
func (f *Fleet) writeKwokStages() error {
	kwok, err := f.binary("kwok")
	if err != nil {
		return err
	}
	out, err := exec.Command(kwok, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", kwok, err)
	}
	// "kwok version v0.8.0 go1.26.8 (linux/amd64)"
	fields := strings.Fields(string(out))
	if len(fields) < 3 || !strings.HasPrefix(fields[2], "v") {
		return fmt.Errorf("%s --version: unexpected output %q", kwok, out)
	}
	dir, err := downloadModule("sigs.k8s.io/kwok@" + fields[2])
	if err != nil {
		return err
	}
	data, err := kwokStagesConfig(filepath.Join(dir, "kustomize", "stage"))
	if err != nil {
		return err
	}
	return os.WriteFile(f.kwokStagesPath(), data, 0o600)
}

// kwokStagesConfig reads the stages and makes pod-ready and pod-complete skip the pods the
// harness runs itself, and pod-delete skip its workload pods.
func kwokStagesConfig(stageDir string) ([]byte, error) {
	var docs [][]byte
	for _, file := range kwokStages {
		raw, err := os.ReadFile(filepath.Join(stageDir, file))
		if err != nil {
			return nil, fmt.Errorf("read kwok stage: %w", err)
		}
		stage := map[string]any{}
		if err := yaml.Unmarshal(raw, &stage); err != nil {
			return nil, fmt.Errorf("parse kwok stage %s: %w", file, err)
		}
		name, _ := stage["metadata"].(map[string]any)["name"].(string)
		if kwokSkipsRealPods[name] {
			if err := addMatchExpressions(stage,
				// Only the value fleetmesh counts: other part-of values are ordinary workloads.
				map[string]any{"key": fmt.Sprintf(".metadata.labels[%q] | select(. == %q)", PartOfLabel, PartOfValue), "operator": "DoesNotExist"},
				map[string]any{"key": fmt.Sprintf(".metadata.annotations[%q]", RunLocallyAnnotation), "operator": "DoesNotExist"},
			); err != nil {
				return nil, fmt.Errorf("kwok stage %s: %w", file, err)
			}
		}
		if kwokSkipsWorkloadPods[name] {
			// The annotation of a pod that is not part of fleetmesh: empty, so absent, for the others.
			if err := addMatchExpressions(stage,
				map[string]any{"key": fmt.Sprintf(`select(.metadata.labels[%q] != %q) | .metadata.annotations[%q]`, PartOfLabel, PartOfValue, RunLocallyAnnotation), "operator": "DoesNotExist"},
			); err != nil {
				return nil, fmt.Errorf("kwok stage %s: %w", file, err)
			}
		}
		doc, err := yaml.Marshal(stage)
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	return bytes.Join(docs, []byte("---\n")), nil
}

func addMatchExpressions(stage map[string]any, exprs ...any) error {
	spec, _ := stage["spec"].(map[string]any)
	selector, _ := spec["selector"].(map[string]any)
	if selector == nil {
		return errors.New("no spec.selector")
	}
	existing, _ := selector["matchExpressions"].([]any)
	selector["matchExpressions"] = append(existing, exprs...)
	return nil
}

// downloadModule returns the directory of a module version in the module cache, downloading it
// if needed. It runs outside the fleetmesh module so that the query never touches go.mod/go.sum.
func downloadModule(modVersion string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", modVersion, err, info.Error, bytes.TrimSpace(out))
	}
	return info.Dir, nil
}
