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
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// imageName is the last element of an image repository that stands for a local binary.
var imageName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// FleetmeshBinaries stands in for images with binaries built from this repository:
//
//   - <registry>/<name>:<tag> (ghcr.io/fleetmesh/agent, manager, proxy...) is cmd/<name> built
//     with version <tag>, so an agent reports exactly the version its image tag says; cached in
//     binDir per name and tag.
//   - <registry>/e2e-<name>:<tag> (ghcr.io/fleetmesh/e2e-httpecho) is the test program
//     e2e/cmd/<name>, built once per name whatever the tag.
//
// Any other image, or one whose package does not exist, has no local binary.
func FleetmeshBinaries(binDir string) Binaries {
	var mu sync.Mutex
	return func(repository, tag string) (string, error) {
		name := path.Base(repository)
		if !imageName.MatchString(name) {
			return "", fmt.Errorf("no local binary stands for image %s", repository)
		}
		pkg, out := "./cmd/"+name, filepath.Join(binDir, "images", name+"-"+tag)
		ldflags := "-X github.com/fleetmesh/fleetmesh/internal/version.Version=" + tag
		if test, ok := strings.CutPrefix(name, "e2e-"); ok {
			pkg, out, ldflags = "./e2e/cmd/"+test, filepath.Join(binDir, "images", name), ""
		}
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stat(out); err == nil {
			return out, nil
		}
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(filepath.Join(root, pkg)); err != nil || !st.IsDir() {
			return "", fmt.Errorf("no local binary stands for image %s (no package %s)", repository, pkg)
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return "", err
		}
		// A name of its own: several harnesses may build the same image into one binDir.
		tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp-*")
		if err != nil {
			return "", err
		}
		_ = tmp.Close()
		defer func() { _ = os.Remove(tmp.Name()) }()
		args := []string{"build", "-o", tmp.Name()}
		if ldflags != "" {
			args = append(args, "-ldflags", ldflags)
		}
		cmd := exec.Command("go", append(args, pkg)...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s %s: %v: %s", name, tag, err, b)
		}
		return out, os.Rename(tmp.Name(), out)
	}
}
