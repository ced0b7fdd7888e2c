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
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
	"github.com/fleetmesh/fleetmesh/internal/install"
	"github.com/fleetmesh/fleetmesh/internal/netnstest"
)

// A network of its own, as a member in another VPC has: the member's workload pods (and its
// east-west gateway, which must reach them) are not on the sandbox's pod network but behind a
// router, a network namespace joined to the sandbox by one veth pair (uplink in the router,
// fmnet<index> in the sandbox), as a VPC is joined to the rest of the world by its NAT and load
// balancer. Their addresses are another member's (overlapping), which is why nothing outside
// can route to them:
//
//   - the router's own range is 10.244.<100+index>.0/24, local there and routed to it by the
//     sandbox: .1 is the pods' gateway and the address the router's NAT gives what its pods
//     open towards the sandbox (the member's agent, its API server forward: the member's node
//     range 10.244.<index>.0/24, which is all its pods may open outside; anything else is
//     dropped and counted), and .2 is its load balancer's address, forwarded to one pod
//     (ExposeOnNetwork) as a cloud load balancer forwards its address to a node;
//   - a connection that came in through the uplink is marked, and its replies routed back out of
//     it by that mark, not by their destination, which may be a pod of the router's own;
//   - the member's fleetmesh pods other than its gateway stay in the sandbox, with their node
//     range addresses, as the control planes do.
type isolatedNetwork struct {
	index     int    // the member's
	podPrefix string // "10.244.<the overlapped member's index>."
	// router is the router's namespace; its veth's sandbox end is fmnet<index>.
	router *heldNetns
}

const (
	networkTable = "fleet-network"
	uplinkName   = "uplink"
	// replyMark routes a reply out of the uplink (policy routing table replyTable).
	replyMark  = 1
	replyTable = "100"
)

// routerAddress and loadBalancerAddress are the router's own addresses.
func (n *isolatedNetwork) routerAddress() string { return fmt.Sprintf("10.244.%d.1", 100+n.index) }

func (n *isolatedNetwork) loadBalancerAddress() string {
	return fmt.Sprintf("10.244.%d.2", 100+n.index)
}

func (n *isolatedNetwork) routerRange() string { return fmt.Sprintf("10.244.%d.0/24", 100+n.index) }

// IsolateNetwork puts the kubelet's member on a network of its own whose pod addresses are
// those of member overlapped (see isolatedNetwork). It must be called before the member runs
// any pod; the network lasts until the kubelet stops.
func (k *Kubelet) IsolateNetwork(overlapped *Cluster) error {
	if !sandbox.Inside() {
		return errors.New("networks can be isolated only inside the sandbox")
	}
	k.mu.Lock()
	busy := len(k.procs) + len(k.workloads)
	k.mu.Unlock()
	if busy > 0 || k.network != nil {
		return fmt.Errorf("kubelet %s: a network can be isolated only before the member runs a pod", k.cluster.Name)
	}
	n, err := newIsolatedNetwork(k.cluster, overlapped)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.network = n
	k.mu.Unlock()
	go func() { <-k.done; n.router.teardown() }()
	return nil
}

func newIsolatedNetwork(m, overlapped *Cluster) (n *isolatedNetwork, err error) {
	if err := prepareNodeNetwork(); err != nil {
		return nil, err
	}
	router, err := holdNetns()
	if err != nil {
		return nil, err
	}
	n = &isolatedNetwork{index: m.Index, podPrefix: fmt.Sprintf("10.244.%d.", overlapped.Index), router: router}
	defer func() {
		if err != nil {
			router.teardown()
		}
	}()
	// Forwarding on; no reverse-path filter: a packet from the sandbox may come from an address
	// that is also one of the router's pods'. Set before the interfaces exist, which take the
	// defaults.
	sysctls := "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter && echo 0 > /proc/sys/net/ipv4/conf/default/rp_filter"
	if out, err := exec.Command("nsenter", "--net="+router.netns, "--", "sh", "-c", sysctls).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("router sysctls: %v: %s", err, out)
	}
	if err := router.join("", fmt.Sprintf("fmnet%d", m.Index), uplinkName); err != nil {
		return nil, err
	}
	node := m.NodeIP()
	if err := ipBatch(router.netns,
		"link set lo up",
		"link set "+uplinkName+" up",
		fmt.Sprintf("route add local %s dev lo table local", n.routerRange()),
		fmt.Sprintf("route add %s dev %s scope link", node, uplinkName),
		fmt.Sprintf("route add default via %s dev %s", node, uplinkName),
		fmt.Sprintf("route add default via %s dev %s onlink table %s", node, uplinkName, replyTable),
		fmt.Sprintf("rule add fwmark %d table %s", replyMark, replyTable),
	); err != nil {
		return nil, err
	}
	if err := ipBatch("",
		fmt.Sprintf("link set %s up", router.veth),
		fmt.Sprintf("route add %s dev %s table local scope link src %s", n.routerRange(), router.veth, node),
	); err != nil {
		return nil, err
	}
	if err := n.writeRules(""); err != nil {
		return nil, err
	}
	return n, nil
}

// host is where the veths of the network's pods end.
func (n *isolatedNetwork) host() podHost {
	return podHost{netns: n.router.netns, table: "main", gateway: n.routerAddress()}
}

// conn is a netlink connection to the router's namespace.
func (n *isolatedNetwork) conn() (*nftables.Conn, func(), error) {
	ns, err := os.Open(n.router.netns)
	if err != nil {
		return nil, nil, err
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		_ = ns.Close()
		return nil, nil, fmt.Errorf("netlink in the router: %w", err)
	}
	return conn, func() { _ = conn.CloseLasting(); _ = ns.Close() }, nil
}

func ifname(name string) []byte { return append([]byte(name), 0) }

// writeRules (re)writes the router's table: reply marking, the load balancer's forward to the
// pod address exposed (none when ""), the NAT of what the pods open towards the sandbox, and the
// drop of anything else they open outside.
func (n *isolatedNetwork) writeRules(exposed string) error {
	conn, done, err := n.conn()
	if err != nil {
		return err
	}
	defer done()
	t := &nftables.Table{Name: networkTable, Family: nftables.TableFamilyIPv4}
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	accept := nftables.ChainPolicyAccept
	mark := binaryutil.NativeEndian.PutUint32(replyMark)
	ctState := func(bits uint32) []expr.Any {
		return []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}
	}
	meta := func(key expr.MetaKey, op expr.CmpOp, data []byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: data}}
	}
	cat := func(parts ...[]expr.Any) []expr.Any {
		var all []expr.Any
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}

	pre := conn.AddChain(&nftables.Chain{Name: "mark", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	// A connection that comes in through the uplink is marked; its replies carry the mark.
	conn.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: cat(
		meta(expr.MetaKeyIIFNAME, expr.CmpOpEq, ifname(uplinkName)), ctState(expr.CtStateBitNEW),
		[]expr.Any{&expr.Immediate{Register: 1, Data: mark}, &expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyMARK}})})
	conn.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}}, // reply
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
		&expr.Immediate{Register: 1, Data: mark}, &expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}})

	dnat := conn.AddChain(&nftables.Chain{Name: "loadbalancer", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	if exposed != "" {
		conn.AddRule(&nftables.Rule{Table: t, Chain: dnat, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.ParseIP(n.loadBalancerAddress()).To4()},
			&expr.Immediate{Register: 1, Data: net.ParseIP(exposed).To4()},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
		}})
	}

	snat := conn.AddChain(&nftables.Chain{Name: "nat", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	conn.AddRule(&nftables.Rule{Table: t, Chain: snat, Exprs: cat(
		meta(expr.MetaKeyOIFNAME, expr.CmpOpEq, ifname(uplinkName)),
		[]expr.Any{&expr.Immediate{Register: 1, Data: net.ParseIP(n.routerAddress()).To4()},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}})})

	fwd := conn.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	conn.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: cat(
		meta(expr.MetaKeyOIFNAME, expr.CmpOpEq, ifname(uplinkName)), ctState(expr.CtStateBitNEW),
		[]expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 3},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{10, 244, byte(n.index)}},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		})})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("write the router's table ip %s: %w", networkTable, err)
	}
	return nil
}

// dropped is how many packets the router dropped of connections its pods opened outside.
func (n *isolatedNetwork) dropped() (uint64, error) {
	conn, done, err := n.conn()
	if err != nil {
		return 0, err
	}
	defer done()
	t := &nftables.Table{Name: networkTable, Family: nftables.TableFamilyIPv4}
	rules, err := conn.GetRules(t, &nftables.Chain{Name: "forward", Table: t})
	if err != nil {
		return 0, fmt.Errorf("read the router's table ip %s: %w", networkTable, err)
	}
	var sum uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				sum += c.Packets
			}
		}
	}
	return sum, nil
}

// ExposeOnNetwork points the load balancer of the kubelet's network (IsolateNetwork) at a
// running workload pod, as a cloud load balancer of a LoadBalancer Service points at its node,
// and returns the load balancer's address, which the sandbox (and so every other member)
// reaches. The pod keeps its address across HoldPod/ReleasePod.
func (k *Kubelet) ExposeOnNetwork(namespace, pod string) (string, error) {
	n, err := k.ownNetwork()
	if err != nil {
		return "", err
	}
	w, err := k.lookupWorkload(namespace, pod)
	if err != nil {
		return "", err
	}
	if err := n.writeRules(w.ip); err != nil {
		return "", err
	}
	return n.loadBalancerAddress(), nil
}

// DroppedLeavingNetwork is how many packets of connections the pods of the kubelet's network
// opened outside it (other than to their member's node range) were dropped.
func (k *Kubelet) DroppedLeavingNetwork() (uint64, error) {
	n, err := k.ownNetwork()
	if err != nil {
		return 0, err
	}
	return n.dropped()
}

// ownNetwork is the kubelet's network of its own (IsolateNetwork).
func (k *Kubelet) ownNetwork() (*isolatedNetwork, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.network == nil {
		return nil, fmt.Errorf("kubelet %s: the member is not on a network of its own", k.cluster.Name)
	}
	return k.network, nil
}

// onOwnNetwork reports whether pod runs behind the kubelet's network's router: every workload
// pod of a member on a network of its own, and its east-west gateway, which must reach them.
func (k *Kubelet) onOwnNetwork(pod *corev1.Pod) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.network != nil && (isWorkload(pod) || isGateway(pod))
}

func isGateway(pod *corev1.Pod) bool {
	return pod.Labels[PartOfLabel] == PartOfValue && pod.Labels["app.kubernetes.io/name"] == install.GatewayName
}

// dialIn dials from the network namespace netns ("" for the kubelet's own), as a node's prober
// dials from the node.
func dialIn(ctx context.Context, netns, network, address string) (conn net.Conn, err error) {
	var d net.Dialer
	err = netnstest.InNetns(netns, func() error { conn, err = d.DialContext(ctx, network, address); return err })
	if err != nil && conn != nil {
		_ = conn.Close()
		conn = nil
	}
	return conn, err
}

// podPrefix is the first three octets of the addresses of pods the kubelet runs on its own
// network: another member's when its network is isolated.
func (k *Kubelet) podPrefix(ownNetwork bool) string {
	if ownNetwork && k.network != nil {
		return k.network.podPrefix
	}
	return fmt.Sprintf("10.244.%d.", k.cluster.Index)
}
