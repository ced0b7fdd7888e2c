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
	"sync"
)

// FleetmeshBinaries stands in for fleetmesh's images: ghcr.io/fleetmesh/<name>:<tag> is
// cmd/<name> built with version <tag>, so an agent reports exactly the version its image tag
// says. Builds are cached in binDir per name and tag.
func FleetmeshBinaries(binDir string) Binaries {
	var mu sync.Mutex
	return func(repository, tag string) (string, error) {
		name := path.Base(repository)
		if name != "agent" && name != "manager" {
			return "", fmt.Errorf("no local binary stands for image %s", repository)
		}
		mu.Lock()
		defer mu.Unlock()
		out := filepath.Join(binDir, "images", name+"-"+tag)
		if _, err := os.Stat(out); err == nil {
			return out, nil
		}
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		tmp := out + ".tmp"
		cmd := exec.Command("go", "build", "-o", tmp,
			"-ldflags", "-X github.com/fleetmesh/fleetmesh/internal/version.Version="+tag, "./cmd/"+name)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s %s: %v: %s", name, tag, err, b)
		}
		return out, os.Rename(tmp, out)
	}
}
