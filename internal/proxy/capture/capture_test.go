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
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	with := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name    string
		config  Config
		wantErr []string // substrings of the error; none: valid
	}{
		{name: "default", config: DefaultConfig()},
		{name: "everything", config: with(func(c *Config) {
			c.DNSPort = 15053
			c.ExcludeInboundPorts = []uint16{22, 15021}
			c.ExcludeOutboundPorts = []uint16{3306}
			c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("0.0.0.0/0")}
		})},
		{name: "zero config", config: Config{}, wantErr: []string{"ProxyUID", "OutboundPort", "InboundPort"}},
		{name: "root uid", config: with(func(c *Config) { c.ProxyUID = 0 }), wantErr: []string{"ProxyUID: must not be 0"}},
		{name: "same ports", config: with(func(c *Config) { c.InboundPort = c.OutboundPort }), wantErr: []string{"InboundPort: 15001 is also the OutboundPort"}},
		{name: "dns on outbound port", config: with(func(c *Config) { c.DNSPort = 15001 }), wantErr: []string{"DNSPort: 15001"}},
		{name: "dns on inbound port", config: with(func(c *Config) { c.DNSPort = 15006 }), wantErr: []string{"DNSPort: 15006"}},
		{name: "inbound port 0", config: with(func(c *Config) { c.ExcludeInboundPorts = []uint16{80, 0} }), wantErr: []string{"ExcludeInboundPorts[1]"}},
		{name: "outbound port 0", config: with(func(c *Config) { c.ExcludeOutboundPorts = []uint16{0} }), wantErr: []string{"ExcludeOutboundPorts[0]"}},
		{name: "invalid prefix", config: with(func(c *Config) { c.ExcludeOutboundCIDRs = []netip.Prefix{{}} }), wantErr: []string{"ExcludeOutboundCIDRs[0]: not a valid prefix"}},
		{name: "host bits", config: with(func(c *Config) {
			c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.2.3/8")}
		}), wantErr: []string{"ExcludeOutboundCIDRs[1]: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"}},
		{name: "mapped", config: with(func(c *Config) { c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")} }), wantErr: []string{"IPv4-mapped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.config.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestParseInitFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    Config
		wantErr string
	}{
		{name: "defaults", want: DefaultConfig()},
		{name: "all flags", args: []string{
			"--proxy-uid=2000", "--outbound-port", "16001", "--inbound-port=16006", "--dns-port=15053",
			"--exclude-inbound-ports=22, 8081", "--exclude-outbound-ports=3306",
			"--exclude-outbound-cidrs=10.96.0.0/12,fd00::/8,192.168.1.1",
		}, want: Config{
			ProxyUID: 2000, OutboundPort: 16001, InboundPort: 16006, DNSPort: 15053,
			ExcludeInboundPorts:  []uint16{22, 8081},
			ExcludeOutboundPorts: []uint16{3306},
			ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.168.1.1/32")},
		}},
		{name: "empty lists", args: []string{"--exclude-inbound-ports=", "--exclude-outbound-cidrs="}, want: DefaultConfig()},
		{name: "last flag wins", args: []string{"--exclude-outbound-ports=1,2", "--exclude-outbound-ports=3"}, want: func() Config {
			c := DefaultConfig()
			c.ExcludeOutboundPorts = []uint16{3}
			return c
		}()},
		{name: "bad uid", args: []string{"--proxy-uid=-1"}, wantErr: `"-1" is not a uid`},
		{name: "port too big", args: []string{"--outbound-port=70000"}, wantErr: `"70000" is not a port number`},
		{name: "bad list item", args: []string{"--exclude-inbound-ports=22,ssh"}, wantErr: `"ssh" is not a port number`},
		{name: "bad cidr", args: []string{"--exclude-outbound-cidrs=10.0.0.0/33"}, wantErr: `"10.0.0.0/33" is neither a CIDR nor an address`},
		{name: "unknown flag", args: []string{"--inbound=1"}, wantErr: "flag provided but not defined: -inbound"},
		{name: "extra argument", args: []string{"now"}, wantErr: "unexpected arguments"},
		{name: "invalid config", args: []string{"--proxy-uid=0"}, wantErr: "ProxyUID: must not be 0"},
		{name: "port 0 in list", args: []string{"--exclude-outbound-ports=80,0"}, wantErr: `exclude-outbound-ports: "0" is not a port number (1-65535)`},
		{name: "host bits", args: []string{"--exclude-outbound-cidrs=10.0.0.1/8"}, wantErr: "did you mean 10.0.0.0/8?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseInitFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseInitFlags(%q) error = %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseInitFlags(%q) = %v", tc.args, err)
			}
			if got.ProxyUID != tc.want.ProxyUID || got.OutboundPort != tc.want.OutboundPort ||
				got.InboundPort != tc.want.InboundPort || got.DNSPort != tc.want.DNSPort ||
				!slices.Equal(got.ExcludeInboundPorts, tc.want.ExcludeInboundPorts) ||
				!slices.Equal(got.ExcludeOutboundPorts, tc.want.ExcludeOutboundPorts) ||
				!slices.Equal(got.ExcludeOutboundCIDRs, tc.want.ExcludeOutboundCIDRs) {
				t.Errorf("parseInitFlags(%q) = %+v, want %+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	c := DefaultConfig()
	c.DNSPort = 15053
	c.ExcludeInboundPorts = []uint16{8081, 22, 15021}
	c.ExcludeOutboundPorts = []uint16{9090}
	c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.99.2.0/24"), netip.MustParsePrefix("fd00::1/128")}
	want := []string{
		"output: meta skuid 1337 return",
		"output: ip daddr 127.0.0.0/8 return",
		"output: ip6 daddr ::1 return",
		"output: tcp dport 9090 return",
		"output: udp dport 9090 return",
		"output: ip daddr 10.99.2.0/24 return",
		"output: ip6 daddr fd00::1 return",
		"output: udp dport 53 redirect to :15053",
		"output: tcp dport 53 redirect to :15053",
		"output: meta l4proto tcp redirect to :15001",
		"prerouting: tcp dport { 22, 8081, 15001, 15006, 15021, 15090 } return",
		"prerouting: meta l4proto tcp redirect to :15006",
	}
	if got := c.Describe(); !slices.Equal(got, want) {
		t.Errorf("Describe() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
