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
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// secretAuditPolicy records, at Metadata level (never the data), every request for Secrets in
// the management cluster, and nothing else.
const secretAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
- level: None
`

func (p *clusterProcs) auditLog() string { return filepath.Join(p.dir, "audit.log") }

// SecretAccess is one audited request for Secrets in the management cluster.
type SecretAccess struct {
	User, Verb, Namespace, Name string
}

func (a SecretAccess) String() string {
	return fmt.Sprintf("%s %s %s/%s", a.User, a.Verb, a.Namespace, a.Name)
}

// SecretAccesses lists the audited Secret requests of the management cluster made by users whose
// name starts with userPrefix (e.g. the operator's ServiceAccount namespace prefix).
func (f *Fleet) SecretAccesses(userPrefix string) ([]SecretAccess, error) {
	file, err := os.Open(f.Management.procs.auditLog())
	if err != nil {
		return nil, err
	}
	defer func() { _ = file.Close() }()
	var out []SecretAccess
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Verb string `json:"verb"`
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef struct {
				Namespace string `json:"namespace"`
				Name      string `json:"name"`
			} `json:"objectRef"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || !strings.HasPrefix(ev.User.Username, userPrefix) {
			continue
		}
		out = append(out, SecretAccess{User: ev.User.Username, Verb: ev.Verb, Namespace: ev.ObjectRef.Namespace, Name: ev.ObjectRef.Name})
	}
	return out, sc.Err()
}
