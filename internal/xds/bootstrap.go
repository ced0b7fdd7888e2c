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
	"errors"
	"strconv"
	"time"
)

// DefaultRefreshInterval is how often the file_watcher certificate provider re-reads the SVID
// and bundle files (gRPC's own default is 10 minutes: rotations would arrive late).
const DefaultRefreshInterval = 10 * time.Second

// BootstrapOptions is what a proxyless gRPC workload's xDS bootstrap says.
type BootstrapOptions struct {
	// ServerURI is the agent's xDS address, host:port.
	ServerURI string
	// ServerTLS, if set, connects to the xDS server with the "tls" channel credentials and
	// these files; nil connects without TLS ("insecure").
	ServerTLS *TLSFiles
	// NodeID identifies the workload to the xDS server; Cluster, Region and Zone are its
	// node's cluster and locality (the member's).
	NodeID, Cluster, Region, Zone string
	// CertProviderInstance names the certificate provider the resources refer to; empty means
	// DefaultCertProviderInstance.
	CertProviderInstance string
	// Certificates are the workload's SVID, key and trust bundles for that provider.
	Certificates TLSFiles
	// RefreshInterval of the certificate provider; zero means DefaultRefreshInterval.
	RefreshInterval time.Duration
}

// TLSFiles are PEM and bundle-map files that gRPC watches.
type TLSFiles struct {
	CertificateFile, PrivateKeyFile string
	// SPIFFETrustBundleMapFile is the federated bundle map (gRFC A87): peers are verified
	// against their own trust domain's bundle. gRPC ignores it unless the process starts with
	// GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true.
	SPIFFETrustBundleMapFile string
	// CACertificateFile is a plain root set, for processes without that setting.
	CACertificateFile string
}

// fileWatcherJSON is the config of gRPC's file_watcher provider and of "tls" channel creds.
type fileWatcherJSON struct {
	CertificateFile          string `json:"certificate_file,omitempty"`
	PrivateKeyFile           string `json:"private_key_file,omitempty"`
	SPIFFETrustBundleMapFile string `json:"spiffe_trust_bundle_map_file,omitempty"`
	CACertificateFile        string `json:"ca_certificate_file,omitempty"`
	RefreshInterval          string `json:"refresh_interval"`
}

func (f TLSFiles) json(refresh time.Duration) *fileWatcherJSON {
	return &fileWatcherJSON{
		CertificateFile: f.CertificateFile, PrivateKeyFile: f.PrivateKeyFile,
		SPIFFETrustBundleMapFile: f.SPIFFETrustBundleMapFile, CACertificateFile: f.CACertificateFile,
		RefreshInterval: strconv.FormatFloat(refresh.Seconds(), 'f', -1, 64) + "s", // a JSON Duration
	}
}

type bootstrapJSON struct {
	XDSServers []xdsServerJSON `json:"xds_servers"`
	Node       struct {
		ID       string `json:"id"`
		Cluster  string `json:"cluster,omitempty"`
		Locality struct {
			Region string `json:"region,omitempty"`
			Zone   string `json:"zone,omitempty"`
		} `json:"locality"`
	} `json:"node"`
	CertificateProviders               map[string]certProviderJSON `json:"certificate_providers"`
	ServerListenerResourceNameTemplate string                      `json:"server_listener_resource_name_template"`
}

type xdsServerJSON struct {
	ServerURI      string         `json:"server_uri"`
	ChannelCreds   []channelCreds `json:"channel_creds"`
	ServerFeatures []string       `json:"server_features"`
}

type channelCreds struct {
	Type   string           `json:"type"`
	Config *fileWatcherJSON `json:"config,omitempty"`
}

type certProviderJSON struct {
	PluginName string           `json:"plugin_name"`
	Config     *fileWatcherJSON `json:"config"`
}

// Bootstrap is the xDS bootstrap JSON of a proxyless gRPC client or server (GRPC_XDS_BOOTSTRAP
// or GRPC_XDS_BOOTSTRAP_CONFIG).
func Bootstrap(o BootstrapOptions) ([]byte, error) {
	if o.ServerURI == "" || o.NodeID == "" {
		return nil, errors.New("bootstrap: server URI and node ID are required")
	}
	if o.Certificates.CertificateFile == "" || o.Certificates.PrivateKeyFile == "" ||
		(o.Certificates.SPIFFETrustBundleMapFile == "" && o.Certificates.CACertificateFile == "") {
		return nil, errors.New("bootstrap: certificate, key, and a bundle map or CA file are required")
	}
	if o.CertProviderInstance == "" {
		o.CertProviderInstance = DefaultCertProviderInstance
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	creds := channelCreds{Type: "insecure"}
	if o.ServerTLS != nil {
		creds = channelCreds{Type: "tls", Config: o.ServerTLS.json(o.RefreshInterval)}
	}
	var b bootstrapJSON
	b.XDSServers = []xdsServerJSON{{ServerURI: o.ServerURI, ChannelCreds: []channelCreds{creds}, ServerFeatures: []string{"xds_v3"}}}
	b.Node.ID, b.Node.Cluster = o.NodeID, o.Cluster
	b.Node.Locality.Region, b.Node.Locality.Zone = o.Region, o.Zone
	b.CertificateProviders = map[string]certProviderJSON{
		o.CertProviderInstance: {PluginName: "file_watcher", Config: o.Certificates.json(o.RefreshInterval)},
	}
	b.ServerListenerResourceNameTemplate = ServerListenerNameTemplate
	return json.MarshalIndent(b, "", "  ")
}
