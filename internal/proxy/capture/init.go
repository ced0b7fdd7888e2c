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
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/fleetmesh/fleetmesh/internal/wire"
)

// RunInit is the `proxy init` subcommand (args exclude the subcommand's name): it parses its
// flags, validates them, applies the rules in the calling process's network namespace and
// prints the rules it applied to stdout, one line each.
func RunInit(args []string) error {
	return runInit(args, os.Stdout, os.Stderr)
}

func runInit(args []string, stdout, stderr io.Writer) error {
	c, err := parseInitFlags(args, stderr)
	if err != nil {
		return err
	}
	families, err := apply(c)
	if err != nil {
		return err
	}
	for _, line := range c.describe(families) {
		if _, err := fmt.Fprintln(stdout, line); err != nil {
			return err
		}
	}
	return nil
}

// parseInitFlags parses and validates the flags of `proxy init`; usage and flag errors go to
// errOut.
func parseInitFlags(args []string, errOut io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("proxy init", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Func("proxy-uid", "uid of the proxy, whose traffic is never captured (default 1337)", func(s string) error {
		v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a uid", s)
		}
		c.ProxyUID = uint32(v)
		return nil
	})
	fs.Var((*portValue)(&c.OutboundPort), "outbound-port", "port captured outbound TCP is redirected to")
	fs.Var((*portValue)(&c.InboundPort), "inbound-port", "port captured inbound TCP is redirected to")
	fs.Var((*portValue)(&c.DNSPort), "dns-port", "port outbound DNS (UDP and TCP to port 53) is redirected to; 0: DNS is not captured")
	fs.Var((*portList)(&c.ExcludeInboundPorts), "exclude-inbound-ports", "comma-separated inbound ports never captured")
	fs.Var((*portList)(&c.ExcludeOutboundPorts), "exclude-outbound-ports", "comma-separated outbound ports never captured")
	fs.Var((*prefixList)(&c.ExcludeOutboundCIDRs), "exclude-outbound-cidrs", "comma-separated destination CIDRs (or addresses) never captured")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("proxy init: unexpected arguments %q", fs.Args())
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

type portValue uint16

func (p *portValue) String() string { return strconv.Itoa(int(*p)) }

func (p *portValue) Set(s string) error {
	v, err := parsePort(s)
	*p = portValue(v)
	return err
}

func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number (0-65535)", s)
	}
	return uint16(v), nil
}

// portList is a comma-separated list of ports; empty items are ignored, so "" is no port.
type portList []uint16

func (l *portList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func (l *portList) Set(s string) error {
	v, err := wire.ParsePortList(s)
	*l = v
	return err
}

// prefixList is a comma-separated list of CIDRs; a bare address is a one-address prefix.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(s string) error {
	v, err := wire.ParsePrefixList(s)
	*l = v
	return err
}
