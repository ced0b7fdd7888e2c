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

// Package capture installs a pod's traffic capture rules, as Istio's istio-iptables and
// Linkerd's proxy-init do, but as one nftables table ("fleetmesh") written over netlink: the
// pod's outbound TCP goes to the sidecar's outbound port, inbound TCP to its inbound port and,
// optionally, DNS to its DNS answerer. The proxy's own traffic (by uid) is never captured.
package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the name of the one nftables table this package writes and removes.
const TableName = "fleetmesh"

// The proxy's own ports besides the outbound and inbound ones: health and metrics. Inbound
// connections to them are never captured.
const (
	HealthPort  uint16 = 15021
	MetricsPort uint16 = 15090
)

// Config says what to capture. DefaultConfig holds the usual values; the zero Config is not
// valid (Validate says why).
type Config struct {
	ProxyUID             uint32 // traffic of this uid is never captured (the proxy's own), default 1337
	OutboundPort         uint16 // 15001: captured outbound TCP is redirected here
	InboundPort          uint16 // 15006: captured inbound TCP is redirected here
	DNSPort              uint16 // 0 = no DNS capture; else outbound UDP and TCP to port 53 go to this port
	ExcludeInboundPorts  []uint16
	ExcludeOutboundPorts []uint16
	ExcludeOutboundCIDRs []netip.Prefix
}

// DefaultConfig returns the Config of a pod with no exclusions and no DNS capture.
func DefaultConfig() Config {
	return Config{ProxyUID: 1337, OutboundPort: 15001, InboundPort: 15006}
}

// Validate reports every problem of c, each naming its field.
func (c Config) Validate() error {
	var errs []error
	if c.ProxyUID == 0 {
		errs = append(errs, errors.New("ProxyUID: must not be 0: exempting root would leave every privileged process uncaptured (the usual proxy uid is 1337)"))
	}
	if c.OutboundPort == 0 {
		errs = append(errs, errors.New("OutboundPort: must be set (usually 15001)"))
	}
	if c.InboundPort == 0 {
		errs = append(errs, errors.New("InboundPort: must be set (usually 15006)"))
	}
	if c.OutboundPort != 0 && c.OutboundPort == c.InboundPort {
		errs = append(errs, fmt.Errorf("InboundPort: %d is also the OutboundPort; inbound and outbound connections must land on different listeners", c.InboundPort))
	}
	if c.DNSPort != 0 && (c.DNSPort == c.OutboundPort || c.DNSPort == c.InboundPort) {
		errs = append(errs, fmt.Errorf("DNSPort: %d is also the OutboundPort or InboundPort; the DNS answerer needs its own port", c.DNSPort))
	}
	for i, p := range c.ExcludeInboundPorts {
		if p == 0 {
			errs = append(errs, fmt.Errorf("ExcludeInboundPorts[%d]: port 0 is not a port", i))
		}
	}
	for i, p := range c.ExcludeOutboundPorts {
		if p == 0 {
			errs = append(errs, fmt.Errorf("ExcludeOutboundPorts[%d]: port 0 is not a port", i))
		}
	}
	for i, p := range c.ExcludeOutboundCIDRs {
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("ExcludeOutboundCIDRs[%d]: not a valid prefix", i))
		case p.Addr().Zone() != "":
			errs = append(errs, fmt.Errorf("ExcludeOutboundCIDRs[%d]: %s has a zone; zones cannot be matched", i, p))
		case p.Addr().Is4In6():
			errs = append(errs, fmt.Errorf("ExcludeOutboundCIDRs[%d]: %s is IPv4-mapped IPv6; write it as IPv4", i, p))
		case p.Masked() != p:
			errs = append(errs, fmt.Errorf("ExcludeOutboundCIDRs[%d]: %s has host bits set; did you mean %s?", i, p, p.Masked()))
		}
	}
	return errors.Join(errs...)
}

// Apply writes the capture rules into the calling process's network namespace, replacing any
// table of this package (in any of the inet, ip and ip6 families) in the same atomic batch, so
// there is no moment without capture and applying twice is the same as applying once. No other
// table is read or touched.
func Apply(c Config) error {
	_, err := apply(c)
	return err
}

// Remove deletes the table Apply wrote, if there is one, in one atomic batch.
func Remove() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("capture: netlink: %w", err)
	}
	deleteOurs(conn)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("capture: removing table %s: %w", TableName, err)
	}
	return nil
}

// apply is Apply, also saying which table families it wrote: inet if the kernel accepts NAT
// there (Linux 5.2 and later), else ip and ip6.
func apply(c Config) ([]nftables.TableFamily, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rules := c.rules()
	inet := []nftables.TableFamily{nftables.TableFamilyINet}
	errINet := commit(rules, inet)
	if errINet == nil {
		return inet, nil
	}
	split := []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}
	if err := commit(rules, split); err != nil {
		return nil, fmt.Errorf("capture: writing table %s: inet family: %w; ip and ip6 families: %w", TableName, errINet, err)
	}
	return split, nil
}

// deleteOurs queues the deletion of our table in every family it may be in. Adding a table
// that exists is a no-op, so add-then-delete never fails on a missing table.
func deleteOurs(conn *nftables.Conn) {
	for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Name: TableName, Family: f}
		conn.AddTable(t)
		conn.DelTable(t)
	}
}

// commit replaces our table(s) by one table per family holding rules, in one batch.
func commit(rules []rule, families []nftables.TableFamily) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	deleteOurs(conn)
	accept := nftables.ChainPolicyAccept
	for _, f := range families {
		t := conn.AddTable(&nftables.Table{Name: TableName, Family: f})
		chains := map[string]*nftables.Chain{
			chainOutput: conn.AddChain(&nftables.Chain{
				Name: chainOutput, Table: t, Type: nftables.ChainTypeNAT,
				Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
			}),
			chainPrerouting: conn.AddChain(&nftables.Chain{
				Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
				Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
			}),
		}
		for _, r := range rules {
			if !r.inFamily(f) {
				continue
			}
			exprs, err := r.exprs(conn, t)
			if err != nil {
				return err
			}
			conn.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: exprs})
		}
	}
	return conn.Flush()
}

const (
	chainOutput     = "output"
	chainPrerouting = "prerouting"
)

// A rule is one line of a chain: every set field must match, then the verdict applies.
type rule struct {
	chain    string
	skuid    *uint32      // meta skuid
	daddr    netip.Prefix // ip/ip6 daddr, if valid
	l4proto  byte         // meta l4proto, 0 for any
	dports   []uint16     // tcp/udp dport (l4proto must be set), sorted and unique
	redirect uint16       // 0: return; else redirect to this local port
}

// rules lists what Apply writes, in order.
func (c Config) rules() []rule {
	const tcp, udp = unix.IPPROTO_TCP, unix.IPPROTO_UDP
	uid := c.ProxyUID
	out := []rule{
		// First, so that nothing below (DNS included) loops the proxy's own connections.
		{chain: chainOutput, skuid: &uid},
		{chain: chainOutput, daddr: netip.MustParsePrefix("127.0.0.0/8")},
		{chain: chainOutput, daddr: netip.MustParsePrefix("::1/128")},
	}
	if ports := sortedUnique(c.ExcludeOutboundPorts); len(ports) > 0 {
		out = append(out, rule{chain: chainOutput, l4proto: tcp, dports: ports})
		if c.DNSPort != 0 { // UDP is captured only for DNS
			out = append(out, rule{chain: chainOutput, l4proto: udp, dports: ports})
		}
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		out = append(out, rule{chain: chainOutput, daddr: p})
	}
	if c.DNSPort != 0 {
		out = append(out,
			rule{chain: chainOutput, l4proto: udp, dports: []uint16{53}, redirect: c.DNSPort},
			rule{chain: chainOutput, l4proto: tcp, dports: []uint16{53}, redirect: c.DNSPort},
		)
	}
	own := []uint16{c.OutboundPort, c.InboundPort, HealthPort, MetricsPort}
	return append(out,
		rule{chain: chainOutput, l4proto: tcp, redirect: c.OutboundPort},
		rule{chain: chainPrerouting, l4proto: tcp, dports: sortedUnique(append(own, c.ExcludeInboundPorts...))},
		rule{chain: chainPrerouting, l4proto: tcp, redirect: c.InboundPort},
	)
}

// Describe returns the rules Apply writes for c, one line each, in nft syntax prefixed by
// their chain, e.g. "output: meta l4proto tcp redirect to :15001".
func (c Config) Describe() []string {
	var lines []string
	for _, r := range c.rules() {
		lines = append(lines, r.chain+": "+r.String())
	}
	return lines
}

// describe is Describe for the tables apply wrote: each line starts with the table's family
// and name, e.g. "inet fleetmesh output: meta l4proto tcp redirect to :15001".
func (c Config) describe(families []nftables.TableFamily) []string {
	names := map[nftables.TableFamily]string{
		nftables.TableFamilyINet: "inet", nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6",
	}
	var lines []string
	for _, f := range families {
		for _, r := range c.rules() {
			if r.inFamily(f) {
				lines = append(lines, fmt.Sprintf("%s %s %s: %s", names[f], TableName, r.chain, r))
			}
		}
	}
	return lines
}

func sortedUnique(ports []uint16) []uint16 {
	s := slices.Clone(ports)
	slices.Sort(s)
	return slices.Compact(s)
}

// inFamily says whether r belongs in a table of family f (address matches go only in the
// table of their own family, or in an inet table).
func (r rule) inFamily(f nftables.TableFamily) bool {
	switch {
	case !r.daddr.IsValid() || f == nftables.TableFamilyINet:
		return true
	case r.daddr.Addr().Is4():
		return f == nftables.TableFamilyIPv4
	default:
		return f == nftables.TableFamilyIPv6
	}
}

// exprs compiles r for table t, queueing on conn the anonymous set it may need.
func (r rule) exprs(conn *nftables.Conn, t *nftables.Table) ([]expr.Any, error) {
	var e []expr.Any
	if r.skuid != nil {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(*r.skuid)},
		)
	}
	if p := r.daddr; p.IsValid() {
		offset, proto := uint32(16), byte(unix.NFPROTO_IPV4) // daddr in the IPv4 header
		if p.Addr().Is6() {
			offset, proto = 24, unix.NFPROTO_IPV6
		}
		if t.Family == nftables.TableFamilyINet {
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			)
		}
		addr := p.Addr().AsSlice()
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))})
		if !p.IsSingleIP() {
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: prefixMask(p), Xor: make([]byte, len(addr))})
		}
		e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr})
	}
	if r.l4proto != 0 {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.l4proto}},
		)
	}
	switch len(r.dports) {
	case 0:
	case 1:
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.dports[0])},
		)
	default:
		set := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetService}
		elems := make([]nftables.SetElement, len(r.dports))
		for i, p := range r.dports {
			elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)}
		}
		if err := conn.AddSet(set, elems); err != nil {
			return nil, err
		}
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		)
	}
	if r.redirect == 0 {
		return append(e, &expr.Verdict{Kind: expr.VerdictReturn}), nil
	}
	return append(e,
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(r.redirect)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	), nil
}

// prefixMask returns the network mask of p, as many bytes as its address.
func prefixMask(p netip.Prefix) []byte {
	mask := make([]byte, p.Addr().BitLen()/8)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return mask
}

// String renders r in nft syntax.
func (r rule) String() string {
	var parts []string
	if r.skuid != nil {
		parts = append(parts, "meta skuid "+strconv.FormatUint(uint64(*r.skuid), 10))
	}
	if p := r.daddr; p.IsValid() {
		a := p.String()
		if p.IsSingleIP() {
			a = p.Addr().String()
		}
		if p.Addr().Is4() {
			parts = append(parts, "ip daddr "+a)
		} else {
			parts = append(parts, "ip6 daddr "+a)
		}
	}
	proto := map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp"}[r.l4proto]
	switch {
	case len(r.dports) == 1:
		parts = append(parts, fmt.Sprintf("%s dport %d", proto, r.dports[0]))
	case len(r.dports) > 1:
		ports := make([]string, len(r.dports))
		for i, p := range r.dports {
			ports[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, fmt.Sprintf("%s dport { %s }", proto, strings.Join(ports, ", ")))
	case r.l4proto != 0:
		parts = append(parts, "meta l4proto "+proto)
	}
	if r.redirect == 0 {
		parts = append(parts, "return")
	} else {
		parts = append(parts, fmt.Sprintf("redirect to :%d", r.redirect))
	}
	return strings.Join(parts, " ")
}
