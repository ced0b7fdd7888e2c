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

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/fleetmesh/fleetmesh/e2e/sandbox"
)

// networksTable holds the rules of SeparateNetworks, in the sandbox's network namespace.
const networksTable = "fleet-networks"

// SeparateNetworks puts groups of members on networks of their own, as members in different
// VPCs are: the sandbox, every pod's router (podnet.go), drops what it would forward from a pod
// of one group to a pod of another (10.244.<index>.0/24 to 10.244.<other>.0/24). What runs in
// the sandbox itself stays reachable from every pod: the control planes and fleetmesh's own
// pods, east-west gateways included, whose addresses are local there as a LoadBalancer's
// address is routed to its cloud's network. A member in no group is on every network. Calling
// it again replaces the groups; JoinNetworks undoes it.
func (f *Fleet) SeparateNetworks(groups ...[]*Cluster) error {
	if !sandbox.Inside() {
		return errors.New("networks can be separated only inside the sandbox")
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	t := dropNetworksTable(conn)
	conn.AddTable(t)
	accept := nftables.ChainPolicyAccept
	chain := conn.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	prefix := func(m *Cluster) []byte { return []byte{10, 244, byte(m.Index)} }
	for i, from := range groups {
		for j, to := range groups {
			if i == j {
				continue
			}
			for _, src := range from {
				for _, dst := range to {
					conn.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 3},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: prefix(src)},
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 3},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: prefix(dst)},
						&expr.Counter{},
						&expr.Verdict{Kind: expr.VerdictDrop},
					}})
				}
			}
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("write table ip %s: %w", networksTable, err)
	}
	return nil
}

// JoinNetworks puts every member back on one network.
func (f *Fleet) JoinNetworks() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	dropNetworksTable(conn)
	return conn.Flush()
}

// dropNetworksTable queues the deletion of SeparateNetworks' table (adding one that exists is
// a no-op, so this never fails on a missing table) and returns the table.
func dropNetworksTable(conn *nftables.Conn) *nftables.Table {
	t := &nftables.Table{Name: networksTable, Family: nftables.TableFamilyIPv4}
	conn.AddTable(t)
	conn.DelTable(t)
	return t
}

// DroppedBetweenNetworks is how many packets SeparateNetworks' rules dropped so far.
func (f *Fleet) DroppedBetweenNetworks() (uint64, error) {
	conn, err := nftables.New()
	if err != nil {
		return 0, fmt.Errorf("netlink: %w", err)
	}
	t := &nftables.Table{Name: networksTable, Family: nftables.TableFamilyIPv4}
	rules, err := conn.GetRules(t, &nftables.Chain{Name: "forward", Table: t})
	if err != nil {
		return 0, fmt.Errorf("read table ip %s: %w", networksTable, err)
	}
	var n uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
			}
		}
	}
	return n, nil
}
