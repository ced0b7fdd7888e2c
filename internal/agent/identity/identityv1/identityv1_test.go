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

package identityv1

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fields decodes protobuf wire bytes by hand: field number -> length-delimited values, in order.
func fields(t *testing.T, b []byte) map[protowire.Number][][]byte {
	t.Helper()
	out := map[protowire.Number][][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			t.Fatalf("unexpected tag: n=%d type=%d", n, typ)
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			t.Fatal("bad length")
		}
		out[num] = append(out[num], v)
		b = b[n:]
	}
	return out
}

// TestWireFormat pins the schema on the wire: a client built from the .proto in the package
// comment must interoperate, so field numbers and types may never change.
func TestWireFormat(t *testing.T) {
	req := &IssueRequest{CSR: []byte{0xde, 0xad}, Token: "tok"}
	got, err := proto.Marshal(req.ToProto())
	if err != nil {
		t.Fatal(err)
	}
	f := fields(t, got)
	if len(f) != 2 || !bytes.Equal(f[1][0], []byte{0xde, 0xad}) || string(f[2][0]) != "tok" {
		t.Fatalf("request fields %v", f)
	}
	back := NewRequestMessage()
	if err := proto.Unmarshal(got, back); err != nil {
		t.Fatal(err)
	}
	if r := RequestFromProto(back); !bytes.Equal(r.CSR, req.CSR) || r.Token != req.Token {
		t.Fatalf("round trip %+v", r)
	}

	resp := &IssueResponse{SVIDChain: [][]byte{{1}, {2, 3}}, BundleMap: []byte(`{}`)}
	got, err = proto.Marshal(resp.ToProto())
	if err != nil {
		t.Fatal(err)
	}
	f = fields(t, got)
	if len(f) != 2 || len(f[1]) != 2 || !bytes.Equal(f[1][1], []byte{2, 3}) || string(f[2][0]) != "{}" {
		t.Fatalf("response fields %v", f)
	}
	m := NewResponseMessage()
	if err := proto.Unmarshal(got, m); err != nil {
		t.Fatal(err)
	}
	if r := ResponseFromProto(m); len(r.SVIDChain) != 2 || !bytes.Equal(r.SVIDChain[1], []byte{2, 3}) || string(r.BundleMap) != "{}" {
		t.Fatalf("round trip %+v", r)
	}
	if File().Services().ByName("Identity").Methods().ByName("IssueX509SVID") == nil {
		t.Fatal("service not in the schema")
	}
}

// FuzzDecodeRequest: what any pod sends is decoded by protobuf-go into our message; it must
// never panic and unknown fields are ignored.
func FuzzDecodeRequest(f *testing.F) {
	b, _ := proto.Marshal((&IssueRequest{CSR: []byte("csr"), Token: "t"}).ToProto())
	f.Add(b)
	f.Add([]byte{0x12, 0x02, 0xff, 0xfe}) // token that is not UTF-8
	f.Add([]byte{0x18, 0x01})             // unknown field 3
	f.Fuzz(func(t *testing.T, data []byte) {
		m := NewRequestMessage()
		if err := proto.Unmarshal(data, m); err != nil {
			return
		}
		_ = RequestFromProto(m)
	})
}
