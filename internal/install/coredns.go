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

package install

import (
	"fmt"
	"strings"
)

// The member's CoreDNS (kubeadm's and most distributions': ConfigMap kube-system/coredns, key
// Corefile, with the reload plugin) gets one server block that forwards the clusterset zone to
// the agent Service. The block sits between two marker lines, so the operator can update it and
// take it out at uninstall without touching anything else in the Corefile.
const (
	CoreDNSNamespace = "kube-system"
	CoreDNSConfigMap = "coredns"
	CorefileKey      = "Corefile"

	corefileBegin = "# BEGIN fleetmesh clusterset.local: managed by the fleetmesh operator, removed at uninstall"
	corefileEnd   = "# END fleetmesh clusterset.local"
)

// ClusterSetStanza is the server block that forwards clusterset.local to the agent at
// agentIP (the agent Service's cluster IP).
func ClusterSetStanza(agentIP string) string {
	return fmt.Sprintf("%s\nclusterset.local:53 {\n    errors\n    cache 5\n    forward . %s:%d\n}\n%s\n",
		corefileBegin, agentIP, DNSServicePort, corefileEnd)
}

// CorefileWith is corefile with the clusterset block for agentIP in place of any earlier one
// (appended when there was none).
func CorefileWith(corefile, agentIP string) string {
	rest := CorefileWithout(corefile)
	if rest != "" && !strings.HasSuffix(rest, "\n") {
		rest += "\n"
	}
	return rest + ClusterSetStanza(agentIP)
}

// CorefileWithout is corefile with the clusterset block taken out, byte for byte what it was
// before CorefileWith added it.
func CorefileWithout(corefile string) string {
	begin := strings.Index(corefile, corefileBegin)
	if begin < 0 {
		return corefile
	}
	end := strings.Index(corefile[begin:], corefileEnd)
	if end < 0 {
		return corefile // a block cut by hand: leave the file as it is
	}
	end += begin + len(corefileEnd)
	if end < len(corefile) && corefile[end] == '\n' {
		end++
	}
	return corefile[:begin] + corefile[end:]
}
