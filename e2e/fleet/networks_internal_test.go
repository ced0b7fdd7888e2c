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
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/internal/netnstest"
)

// serveIn answers every connection to addr in the network namespace netns ("" for the
// sandbox's) with name and the address the connection came from.
func serveIn(t *testing.T, netns, addr, name string) {
	t.Helper()
	ln, err := listenIn(netns, addr)
	if err != nil {
		t.Fatalf("listen %s in %q: %v", addr, netns, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(name + " saw " + c.RemoteAddr().(*net.TCPAddr).IP.String() + "\n"))
			_ = c.Close()
		}
	}()
}

func listenIn(netns, addr string) (ln net.Listener, err error) {
	err = netnstest.InNetns(netns, func() error { ln, err = net.Listen("tcp", addr); return err })
	return ln, err
}

// callFrom dials addr from netns and returns the first line the server wrote.
func callFrom(netns, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := dialIn(ctx, netns, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestIsolatedNetwork checks the router of a network of its own with a pod address that is
// also one of the sandbox's: the load balancer reaches the exposed pod and its replies find
// their way back to the sandbox's pod of the same address, the router's pods reach their node
// range (NATed) and nothing else outside, and the sandbox's pods do not reach the router's by
// pod address.
func TestIsolatedNetwork(t *testing.T) {
	a, c := &Cluster{Name: "a", Index: 61}, &Cluster{Name: "c", Index: 63}
	n, err := newIsolatedNetwork(c, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.router.teardown)
	sandboxHost := podHost{table: "local", gateway: a.NodeIP()}
	aPod, err := setupPodNetwork("10.244.61.130", sandboxHost)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aPod.teardown)
	cTwin, err := setupPodNetwork("10.244.61.130", n.host()) // the same address as aPod's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cTwin.teardown)
	cServer, err := setupPodNetwork("10.244.61.131", n.host())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cServer.teardown)

	serveIn(t, cServer.netns, "10.244.61.131:8080", "c-server")
	serveIn(t, cTwin.netns, "10.244.61.130:8080", "c-twin")
	serveIn(t, "", c.NodeIP()+":9090", "c-node")
	serveIn(t, "", "10.244.62.1:9090", "other-node")

	if err := n.writeRules("10.244.61.131"); err != nil {
		t.Fatal(err)
	}

	// Through the load balancer, from the sandbox's pod that shares an address with a router's.
	got, err := callFrom(aPod.netns, n.loadBalancerAddress()+":8080")
	if err != nil || got != "c-server saw 10.244.61.130" {
		t.Fatalf("a's pod -> load balancer: %q, %v; want c-server, seeing a's pod", got, err)
	}
	// The router's pods reach their member's node range, as the router's address.
	got, err = callFrom(cServer.netns, c.NodeIP()+":9090")
	if err != nil || got != "c-node saw "+n.routerAddress() {
		t.Fatalf("c's pod -> c's node: %q, %v; want c-node, seeing the router", got, err)
	}
	// ... and nothing else outside.
	before, err := n.dropped()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := callFrom(cServer.netns, "10.244.62.1:9090"); err == nil {
		t.Fatalf("c's pod -> another member's node: %q; want no connection", got)
	}
	after, err := n.dropped()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("dropped %d -> %d packets leaving c's network; want more", before, after)
	}
	// The sandbox's pod does not reach the router's pod by its address.
	if got, err := callFrom(aPod.netns, "10.244.61.131:8080"); err == nil {
		t.Fatalf("a's pod -> c's pod address: %q; want no connection", got)
	}
	// The router's pod of the same address as a's is the router's own.
	got, err = callFrom(cServer.netns, "10.244.61.130:8080")
	if err != nil || got != "c-twin saw 10.244.61.131" {
		t.Fatalf("c's pod -> 10.244.61.130: %q, %v; want c-twin", got, err)
	}
}
