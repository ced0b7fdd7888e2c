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
	"strings"
	"testing"
)

const kubeadmCorefile = `.:53 {
    errors
    health
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    reload
}`

func TestCorefileStanzaIsAddedUpdatedAndRemovedCleanly(t *testing.T) {
	with := CorefileWith(kubeadmCorefile, "10.96.0.42")
	if !strings.HasPrefix(with, kubeadmCorefile+"\n") || !strings.Contains(with, "clusterset.local:53 {") || !strings.Contains(with, "forward . 10.96.0.42:53") {
		t.Fatalf("Corefile with the stanza:\n%s", with)
	}
	if again := CorefileWith(with, "10.96.0.42"); again != with {
		t.Errorf("adding twice changes the file:\n%s", again)
	}
	moved := CorefileWith(with, "10.96.0.43")
	if strings.Count(moved, "clusterset.local:53") != 1 || !strings.Contains(moved, "forward . 10.96.0.43:53") {
		t.Errorf("a new agent IP replaces the block:\n%s", moved)
	}
	if got := CorefileWithout(moved); got != kubeadmCorefile+"\n" {
		t.Errorf("removed:\n%q\nwant\n%q", got, kubeadmCorefile+"\n")
	}
	if got := CorefileWithout(kubeadmCorefile); got != kubeadmCorefile {
		t.Error("a Corefile without the block is left as it is")
	}
}
