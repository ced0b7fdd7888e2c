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
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
)

// The pod network, as a CNI plugin would make it on a node whose "host" network namespace is
// the sandbox's (package e2e/sandbox):
//
//   - each workload pod gets a network namespace of its own, held by a `sleep infinity` process
//     started in it (so it dies with the sandbox, whose PID namespace kills every process when
//     it ends), with lo up and eth0, one end of a veth pair, carrying the pod IP as a /32 and a
//     default route through the cluster's node address (10.244.<index>.1) as an on-link
//     gateway;
//   - the sandbox end (named fm<index>-<host>, after the pod IP 10.244.<index>.<host>) gets a
//     /32 route to the pod IP in table local, with the node address as preferred source.
//
// Why table local: the sandbox routes 10.244.0.0/16 as `local` to lo in table local, which is
// looked up before main, so a main-table route to the pod would never be used; a more specific
// unicast route in table local wins over that /16 (longest prefix within the table). Why the
// preferred source: the sandbox has no address on any device but 127.0.0.1, and a packet from
// 127.0.0.1 leaving on a veth is a martian the pod drops; the node address is local in the
// sandbox (the /16 is), which makes it a valid source. The pod's gateway needs neither an
// address on the sandbox end nor proxy ARP: the sandbox answers ARP for the node address
// because that address is local there. Forwarding is on in the sandbox (pod to pod traffic
// crosses it); rp_filter, strict or loose, passes both directions, since the route back to a pod
// is the veth its packets come in on. Checked: sandbox -> pod, pod -> pod in another member,
// pod -> control-plane process bound to its 10.244.x.y in the sandbox, pod -> node address,
// pod -> own 127.0.0.1, and the sandbox's 127.0.0.1 not seeing the pod's ports.
//
// A pod of a member on a network of its own (networks.go) is the same, with that network's
// router in place of the sandbox: the host end of its veth is in the router's namespace, the
// route to it in the router's main table, and its gateway the router's address.
type podNetwork struct {
	ip string
	*heldNetns
}

// heldNetns is a network namespace held by a `sleep infinity` process started in it (so it
// dies with the sandbox, whose PID namespace kills every process when it ends), joined to its
// host namespace by a veth pair once join is called: a pod's, or a network's router.
type heldNetns struct {
	netns  string // /proc/<pid>/ns/net of the holder
	holder *exec.Cmd
	exited chan struct{}
	// host is the network namespace of the veth's host end ("" for the sandbox's own), veth
	// that end's name ("" before join).
	host, veth string
	cleanup    sync.Once
}

// holdNetns starts a holder cloned straight into a new network namespace: it exists as soon as
// this returns.
func holdNetns() (*heldNetns, error) {
	holder := exec.Command("sleep", "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := holder.Start(); err != nil {
		return nil, fmt.Errorf("start the network namespace holder: %w", err)
	}
	h := &heldNetns{netns: fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid), holder: holder, exited: make(chan struct{})}
	go func() { _ = holder.Wait(); close(h.exited) }()
	return h, nil
}

// join makes the veth pair: veth in the network namespace host, peer in the held one.
func (h *heldNetns) join(host, veth, peer string) error {
	h.host, h.veth = host, veth
	// A veth left by a teardown that did not finish would make the add fail.
	_ = ipBatch(host, "link del "+veth)
	return ipBatch(host, fmt.Sprintf("link add %s type veth peer name %s netns %s", veth, peer, h.netns))
}

// teardown removes the veth pair (with it its routes) and ends the holder. The kernel destroys
// a network namespace asynchronously once nothing holds it, so the veth is deleted here rather
// than left to that.
func (h *heldNetns) teardown() {
	h.cleanup.Do(func() {
		if h.veth != "" {
			_ = ipBatch(h.host, "link del "+h.veth)
		}
		_ = h.holder.Process.Kill()
		<-h.exited
	})
}

var (
	nodeNetworkOnce sync.Once
	errNodeNetwork  error
)

// prepareNodeNetwork turns forwarding on in the sandbox's network namespace, once per process.
// It refuses to run outside the sandbox: it would change the machine's own network.
func prepareNodeNetwork() error {
	nodeNetworkOnce.Do(func() {
		if !sandbox.Inside() {
			errNodeNetwork = errors.New("workload pods get network namespaces only inside the sandbox (call sandbox.Enter first)")
			return
		}
		errNodeNetwork = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	})
	return errNodeNetwork
}

// vethName is the sandbox end of a pod's veth pair: fm<third octet>-<fourth octet>.
func vethName(ip string) string {
	v4 := net.ParseIP(ip).To4()
	return fmt.Sprintf("fm%d-%d", v4[2], v4[3])
}

// podHost is where a pod's veth pair ends: the sandbox (netns "", routes in table local, as
// above) or the router of a network of its own (networks.go). gateway is the pod's default
// gateway, an address local there.
type podHost struct {
	netns, table, gateway string
}

// setupPodNetwork makes the network namespace of a pod with address ip, its veth's host end in
// host.
func setupPodNetwork(ip string, host podHost) (pn *podNetwork, err error) {
	if err := prepareNodeNetwork(); err != nil {
		return nil, err
	}
	held, err := holdNetns()
	if err != nil {
		return nil, err
	}
	pn = &podNetwork{ip: ip, heldNetns: held}
	defer func() {
		if err != nil {
			pn.teardown()
		}
	}()
	if err := pn.join(host.netns, vethName(ip), "eth0"); err != nil {
		return nil, err
	}
	if err := ipBatch(pn.netns,
		"link set lo up",
		fmt.Sprintf("addr add %s/32 dev eth0", ip),
		"link set eth0 up",
		fmt.Sprintf("route add %s dev eth0 scope link", host.gateway),
		fmt.Sprintf("route add default via %s dev eth0", host.gateway),
	); err != nil {
		return nil, err
	}
	if err := ipBatch(pn.host,
		fmt.Sprintf("link set %s up", pn.veth),
		fmt.Sprintf("route add %s/32 dev %s table %s scope link src %s", ip, pn.veth, host.table, host.gateway),
	); err != nil {
		return nil, err
	}
	return pn, nil
}

// ipBatch runs ip commands, in the network namespace netns if not empty, in one ip process.
func ipBatch(netns string, cmds ...string) error {
	argv := []string{"ip", "-batch", "-"}
	if netns != "" {
		argv = append([]string{"nsenter", "--net=" + netns, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s <<< %q: %v: %s", strings.Join(argv, " "), cmds, err, out)
	}
	return nil
}
