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

package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/fleetmesh/fleetmesh/internal/netnstest"
)

// The integration test runs in network namespaces of its own: the test binary re-executes
// itself under `unshare --net --mount` with netnsEnv set, so the whole process (and every
// process it starts) lives in a fresh "pod" namespace that vanishes when it exits. A second,
// "peer" namespace, joined to the pod by a veth pair, plays the rest of the network; it lives
// as long as a file descriptor the test closes. Nothing is done in the machine's own namespace.
const (
	netnsEnv = "FLEETMESH_CAPTURE_TEST_NETNS" // set (to the launcher's namespace): this process is in the test's pod namespace
	dialEnv  = "FLEETMESH_CAPTURE_TEST_DIAL"  // "network address": dial, print the greeting, exit
)

// Addresses, all inside the test's namespaces.
const (
	podIP     = "10.99.1.2"      // the pod's veth; the peer is 10.99.1.1
	podIP6    = "fd00:99:1::2"   // the peer is fd00:99:1::1
	remoteIP  = "10.99.0.1"      // on the peer's loopback: "somewhere else"
	remoteIP6 = "fd00:99::1"     // idem, IPv6
	exclIP    = "10.99.2.1"      // on the peer's loopback, in an excluded CIDR
	exclCIDR  = "10.99.2.0/24"   // ExcludeOutboundCIDRs
	proxyUID  = 1337             // also the uid of the dialing helper that must not be captured
	dnsPort   = 15053            // Config.DNSPort
	exclOut   = 9090             // ExcludeOutboundPorts
	exclIn    = 8081             // ExcludeInboundPorts
	appPort   = 8080             // a port the pod serves, captured inbound
	timeout   = 10 * time.Second // bound on every exchange
	linkPod   = "fm-pod"
	linkPeer  = "fm-peer"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(dialEnv); spec != "" {
		network, addr, _ := strings.Cut(spec, " ")
		got, err := exchange(network, addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(got)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCaptureInNetNS(t *testing.T) {
	if inside, _ := netnstest.Run(t, netnstest.Options{Env: netnsEnv, Unshare: []string{"--mount"}, Tools: []string{"ip", "nsenter"}}); !inside {
		return
	}

	ipCmd(t, "link", "set", "lo", "up")
	peer := newPeerNetNS(t)
	ipCmd(t, "link", "add", linkPod, "type", "veth", "peer", "name", linkPeer, "netns", peer.path)
	for _, args := range [][]string{
		{"addr", "add", podIP + "/24", "dev", linkPod},
		{"-6", "addr", "add", podIP6 + "/64", "dev", linkPod, "nodad"},
		{"link", "set", linkPod, "up"},
		{"route", "add", "default", "via", "10.99.1.1"},
		{"-6", "route", "add", "default", "via", "fd00:99:1::1"},
	} {
		ipCmd(t, args...)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", "10.99.1.1/24", "dev", linkPeer},
		{"-6", "addr", "add", "fd00:99:1::1/64", "dev", linkPeer, "nodad"},
		{"addr", "add", remoteIP + "/32", "dev", "lo"},
		{"addr", "add", exclIP + "/32", "dev", "lo"},
		{"-6", "addr", "add", remoteIP6 + "/128", "dev", "lo"},
		{"link", "set", linkPeer, "up"},
	} {
		peer.ipCmd(t, args...)
	}

	// The pod: the proxy's listeners say where the connection was going; the app's do not.
	if err := errors.Join(
		serveTCP(t, ":15001", "outbound", true),
		serveTCP(t, ":15006", "inbound", true),
		serveTCP(t, fmt.Sprintf(":%d", dnsPort), "dns", true),
		// A UDP server must answer from the address a datagram was sent to: that of a
		// redirected one is 127.0.0.1 (::1 for IPv6), so it listens there.
		serveUDP(t, fmt.Sprintf("127.0.0.1:%d", dnsPort), "dns"),
		serveTCP(t, fmt.Sprintf(":%d", appPort), "app", false),
		serveTCP(t, fmt.Sprintf(":%d", exclIn), "app-excluded", false),
		serveTCP(t, fmt.Sprintf(":%d", HealthPort), "health", false),
	); err != nil {
		t.Fatal(err)
	}
	// The rest of the network.
	if err := peer.do(func() error {
		return errors.Join(
			serveTCP(t, ":80", "peer", false),
			serveTCP(t, ":53", "peer", false),
			serveTCP(t, fmt.Sprintf(":%d", exclOut), "peer", false),
			serveUDP(t, net.JoinHostPort(remoteIP, "53"), "peer"),
		)
	}); err != nil {
		t.Fatalf("in the peer namespace: %v", err)
	}

	other := addOtherTable(t)

	c := DefaultConfig()
	c.DNSPort = dnsPort
	c.ExcludeInboundPorts = []uint16{exclIn}
	c.ExcludeOutboundPorts = []uint16{exclOut}
	c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix(exclCIDR)}
	var stdout bytes.Buffer
	err := runInit([]string{
		"--proxy-uid=1337", "--outbound-port=15001", "--inbound-port=15006", fmt.Sprintf("--dns-port=%d", dnsPort),
		fmt.Sprintf("--exclude-inbound-ports=%d", exclIn), fmt.Sprintf("--exclude-outbound-ports=%d", exclOut),
		"--exclude-outbound-cidrs=" + exclCIDR,
	}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("proxy init: %v", err)
	}
	t.Logf("proxy init printed:\n%s", stdout.String())
	if want := strings.Join(c.describe([]nftables.TableFamily{nftables.TableFamilyINet}), "\n") + "\n"; stdout.String() != want {
		t.Errorf("proxy init printed\n%s\nwant (an inet table)\n%s", stdout.String(), want)
	}

	type dialer int
	const (
		pod     dialer = iota // this process, uid 0
		podUID                // a process of the pod running as the proxy's uid
		outside               // a socket of the peer namespace
	)
	dialAs := func(d dialer, network, addr string) (string, error) {
		switch d {
		case podUID:
			return exchangeAsUID(t, proxyUID, network, addr)
		case outside:
			var got string
			err := peer.do(func() (err error) {
				got, err = exchange(network, addr)
				return err
			})
			return got, err
		default:
			return exchange(network, addr)
		}
	}
	check := func(name string, d dialer, network, addr, want string) {
		t.Helper()
		got, err := dialAs(d, network, addr)
		if err != nil {
			t.Errorf("%s: %s %s: %v", name, network, addr, err)
		} else if got != want {
			t.Errorf("%s: %s %s answered %q, want %q", name, network, addr, got, want)
		}
	}
	checkAll := func() {
		t.Helper()
		remote := net.JoinHostPort(remoteIP, "80")
		remote6 := net.JoinHostPort(remoteIP6, "80")
		dns := net.JoinHostPort(remoteIP, "53")
		check("outbound captured", pod, "tcp", remote, "outbound "+remote)
		check("outbound IPv6 captured", pod, "tcp", remote6, "outbound "+remote6)
		check("proxy uid not captured", podUID, "tcp", remote, "peer")
		check("excluded outbound port", pod, "tcp", net.JoinHostPort(remoteIP, fmt.Sprint(exclOut)), "peer")
		check("excluded outbound CIDR", pod, "tcp", net.JoinHostPort(exclIP, "80"), "peer")
		check("loopback not captured", pod, "tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(appPort)), "app")
		check("DNS over UDP captured", pod, "udp", dns, "dns")
		check("DNS over TCP captured", pod, "tcp", dns, "dns "+dns)
		check("proxy's own DNS not captured", podUID, "udp", dns, "peer")
		app := net.JoinHostPort(podIP, fmt.Sprint(appPort))
		app6 := net.JoinHostPort(podIP6, fmt.Sprint(appPort))
		check("inbound captured", outside, "tcp", app, "inbound "+app)
		check("inbound IPv6 captured", outside, "tcp", app6, "inbound "+app6)
		check("excluded inbound port", outside, "tcp", net.JoinHostPort(podIP, fmt.Sprint(exclIn)), "app-excluded")
		check("proxy's health port", outside, "tcp", net.JoinHostPort(podIP, fmt.Sprint(HealthPort)), "health")
	}
	checkAll()
	if t.Failed() {
		return
	}

	// Applying again replaces the table: still one, same behaviour, other tables untouched.
	if err := Apply(c); err != nil {
		t.Fatalf("Apply again: %v", err)
	}
	if got, want := tableNames(t), []string{"inet fleetmesh", other}; !slices.Equal(got, want) {
		t.Errorf("tables after applying twice: %q, want %q", got, want)
	}
	checkAll()

	for range 2 {
		if err := Remove(); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if got, want := tableNames(t), []string{other}; !slices.Equal(got, want) {
		t.Errorf("tables after Remove: %q, want %q", got, want)
	}
	check("after Remove, nothing captured", pod, "tcp", net.JoinHostPort(remoteIP, "80"), "peer")
	check("after Remove, inbound not captured", outside, "tcp", net.JoinHostPort(podIP, fmt.Sprint(appPort)), "app")

	// The tables for kernels without NAT in the inet family behave the same, and Apply and
	// Remove replace them too.
	if err := commit(c.rules(), []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}); err != nil {
		t.Fatalf("writing ip and ip6 tables: %v", err)
	}
	if got, want := tableNames(t), []string{other, "ip fleetmesh", "ip6 fleetmesh"}; !slices.Equal(got, want) {
		t.Errorf("tables after writing ip and ip6 tables: %q, want %q", got, want)
	}
	checkAll()
	if err := Apply(c); err != nil {
		t.Fatalf("Apply over ip and ip6 tables: %v", err)
	}
	if got, want := tableNames(t), []string{"inet fleetmesh", other}; !slices.Equal(got, want) {
		t.Errorf("tables after Apply over ip and ip6 tables: %q, want %q", got, want)
	}
	if err := commit(c.rules(), []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}); err != nil {
		t.Fatalf("writing ip and ip6 tables: %v", err)
	}
	if err := Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got, want := tableNames(t), []string{other}; !slices.Equal(got, want) {
		t.Errorf("tables after Remove of ip and ip6 tables: %q, want %q", got, want)
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// netNS is a network namespace held open by a file descriptor of this process.
type netNS struct {
	fd   int
	path string // /proc/<pid>/fd/<fd>, for ip and nsenter
}

// newPeerNetNS creates a network namespace, closed (and so gone) when the test ends.
func newPeerNetNS(t *testing.T) *netNS {
	t.Helper()
	var ns *netNS
	err := netnstest.OnLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ns = &netNS{fd: fd, path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd)}
		return nil
	})
	if err != nil {
		t.Fatalf("creating the peer network namespace: %v", err)
	}
	t.Cleanup(func() { _ = unix.Close(ns.fd) })
	return ns
}

// do runs f with the sockets it creates in ns. f runs on another goroutine: it must not call
// t.Fatal.
func (ns *netNS) do(f func() error) error { return netnstest.InNetns(ns.path, f) }

func (ns *netNS) ipCmd(t *testing.T, args ...string) {
	t.Helper()
	args = append([]string{"--net=" + ns.path, "ip"}, args...)
	if out, err := exec.Command("nsenter", args...).CombinedOutput(); err != nil {
		t.Fatalf("nsenter %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// serveTCP accepts connections on addr until the test ends, greeting each with name and, if
// origDst, the connection's original destination.
func serveTCP(t *testing.T, addr, name string, origDst bool) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			greeting := name
			if origDst {
				dst, err := OriginalDst(c.(*net.TCPConn))
				if err != nil {
					greeting += " " + err.Error()
				} else {
					greeting += " " + dst.String()
				}
			}
			_ = c.SetWriteDeadline(time.Now().Add(timeout))
			_, _ = fmt.Fprintln(c, greeting)
			_ = c.Close()
		}
	}()
	return nil
}

// serveUDP answers every datagram to addr with name until the test ends.
func serveUDP(t *testing.T, addr, name string) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo([]byte(name), from)
		}
	}()
	return nil
}

// exchange connects to addr and returns what the server there says: its greeting over TCP, its
// answer to a datagram over UDP (sent again every half second, in case one is lost).
func exchange(network, addr string) (string, error) {
	deadline := time.Now().Add(timeout)
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	if network == "tcp" {
		_ = c.SetDeadline(deadline)
		line, err := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSuffix(line, "\n"), err
	}
	buf := make([]byte, 512)
	for {
		if _, err := c.Write([]byte("query")); err != nil {
			return "", err
		}
		retry := time.Now().Add(500 * time.Millisecond)
		if retry.After(deadline) {
			retry = deadline
		}
		_ = c.SetReadDeadline(retry)
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().After(deadline) {
			return "", err
		}
	}
}

// exchangeAsUID is exchange done by a copy of this test binary running as uid.
func exchangeAsUID(t *testing.T, uid uint32, network, addr string) (string, error) {
	t.Helper()
	cmd := exec.Command(uidBinary(t))
	cmd.Env = []string{dialEnv + "=" + network + " " + addr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("as uid %d: %v: %s", uid, err, stderr.String())
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

var uidBin string

// uidBinary returns a copy of the test binary that any uid may run (the original is in a
// directory only root may enter).
func uidBinary(t *testing.T) string {
	if uidBin != "" {
		return uidBin
	}
	dir, err := os.MkdirTemp("", "fleetmesh-capture-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir); uidBin = "" })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dial")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	uidBin = bin
	return bin
}

// addOtherTable adds a table that is not ours, to show Apply and Remove leave it alone.
func addOtherTable(t *testing.T) string {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := conn.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
	policy := nftables.ChainPolicyAccept
	conn.AddChain(&nftables.Chain{
		Name: "input", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	if err := conn.Flush(); err != nil {
		t.Fatalf("adding table other: %v", err)
	}
	return "inet other"
}

// tableNames lists the tables of this namespace as "family name", sorted.
func tableNames(t *testing.T) []string {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	families := map[nftables.TableFamily]string{
		nftables.TableFamilyINet: "inet", nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6",
	}
	var names []string
	for _, tbl := range tables {
		names = append(names, families[tbl.Family]+" "+tbl.Name)
	}
	slices.Sort(names)
	return names
}
