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

package xds

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// bootstrapFile is the part of gRPC's bootstrap format (internal/xds/bootstrap, not importable)
// that fleetmesh writes.
type bootstrapFile struct {
	XDSServers []struct {
		ServerURI    string `json:"server_uri"`
		ChannelCreds []struct {
			Type   string            `json:"type"`
			Config map[string]string `json:"config"`
		} `json:"channel_creds"`
		ServerFeatures []string `json:"server_features"`
	} `json:"xds_servers"`
	Node struct {
		ID       string `json:"id"`
		Cluster  string `json:"cluster"`
		Locality struct {
			Region string `json:"region"`
			Zone   string `json:"zone"`
		} `json:"locality"`
	} `json:"node"`
	CertificateProviders map[string]struct {
		PluginName string            `json:"plugin_name"`
		Config     map[string]string `json:"config"`
	} `json:"certificate_providers"`
	ServerListenerResourceNameTemplate string `json:"server_listener_resource_name_template"`
}

func TestBootstrap(t *testing.T) {
	certs := TLSFiles{CertificateFile: "/svid/cert.pem", PrivateKeyFile: "/svid/key.pem", SPIFFETrustBundleMapFile: "/svid/bundles.json"}
	opts := BootstrapOptions{
		ServerURI: "fleetmesh-agent.fleetmesh-system.svc:15010", NodeID: "demo/echo-7d9", Cluster: "a",
		Region: "r1", Zone: "r1-z1", Certificates: certs,
	}
	for _, tc := range []struct {
		name      string
		serverTLS *TLSFiles
		refresh   time.Duration
		creds     string
		interval  string
	}{
		{"insecure xDS channel", nil, 0, "insecure", "10s"},
		{"TLS xDS channel", &certs, 1500 * time.Millisecond, "tls", "1.5s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.ServerTLS, o.RefreshInterval = tc.serverTLS, tc.refresh
			data, err := Bootstrap(o)
			if err != nil {
				t.Fatal(err)
			}
			var b bootstrapFile
			if err := json.Unmarshal(data, &b); err != nil {
				t.Fatal(err)
			}
			s := b.XDSServers[0]
			if len(b.XDSServers) != 1 || s.ServerURI != opts.ServerURI || len(s.ServerFeatures) != 1 || s.ServerFeatures[0] != "xds_v3" ||
				len(s.ChannelCreds) != 1 || s.ChannelCreds[0].Type != tc.creds {
				t.Errorf("xds_servers %+v", b.XDSServers)
			}
			if tc.serverTLS != nil && (s.ChannelCreds[0].Config["spiffe_trust_bundle_map_file"] != "/svid/bundles.json" ||
				s.ChannelCreds[0].Config["certificate_file"] != "/svid/cert.pem") {
				t.Errorf("tls creds config %v", s.ChannelCreds[0].Config)
			}
			if b.Node.ID != "demo/echo-7d9" || b.Node.Cluster != "a" || b.Node.Locality.Region != "r1" || b.Node.Locality.Zone != "r1-z1" {
				t.Errorf("node %+v", b.Node)
			}
			p, ok := b.CertificateProviders[DefaultCertProviderInstance]
			want := map[string]string{"certificate_file": "/svid/cert.pem", "private_key_file": "/svid/key.pem",
				"spiffe_trust_bundle_map_file": "/svid/bundles.json", "refresh_interval": tc.interval}
			if !ok || p.PluginName != "file_watcher" || fmt.Sprint(p.Config) != fmt.Sprint(want) {
				t.Errorf("certificate_providers %+v, want file_watcher %v", b.CertificateProviders, want)
			}
			if b.ServerListenerResourceNameTemplate != "grpc/server?xds.resource.listening_address=%s" {
				t.Errorf("template %q", b.ServerListenerResourceNameTemplate)
			}
		})
	}

	for name, mutate := range map[string]func(*BootstrapOptions){
		"no server":  func(o *BootstrapOptions) { o.ServerURI = "" },
		"no node ID": func(o *BootstrapOptions) { o.NodeID = "" },
		"no key":     func(o *BootstrapOptions) { o.Certificates.PrivateKeyFile = "" },
		"no roots":   func(o *BootstrapOptions) { o.Certificates.SPIFFETrustBundleMapFile = "" },
	} {
		o := opts
		mutate(&o)
		if _, err := Bootstrap(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
