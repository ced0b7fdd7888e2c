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

package wire

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Pod annotations that leave traffic out of the sidecar's capture (Istio's
// traffic.sidecar.istio.io/exclude* annotations): the injector turns them into `proxy init`
// flags. Each is a comma-separated list; ParsePortList and ParsePrefixList read them.
const (
	// ExcludeInboundPortsAnnotation: ports of the pod's own that take connections directly
	// (added to the probe ports the injector already excludes).
	ExcludeInboundPortsAnnotation = "mesh.fleetmesh.io/exclude-inbound-ports"
	// ExcludeOutboundPortsAnnotation: destination ports the pod dials directly.
	ExcludeOutboundPortsAnnotation = "mesh.fleetmesh.io/exclude-outbound-ports"
	// ExcludeOutboundCIDRsAnnotation: destination CIDRs (or addresses) the pod dials directly.
	ExcludeOutboundCIDRsAnnotation = "mesh.fleetmesh.io/exclude-outbound-cidrs"
)

// ParsePortList reads a comma-separated list of ports 1-65535; blank items are ignored, so ""
// is no port.
func ParsePortList(s string) ([]uint16, error) {
	var out []uint16
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		v, err := strconv.ParseUint(item, 10, 16)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("%q is not a port number (1-65535)", item)
		}
		out = append(out, uint16(v))
	}
	return out, nil
}

// ParsePrefixList reads a comma-separated list of CIDRs, a bare address being a one-address
// prefix; blank items are ignored.
func ParsePrefixList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an address", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}
