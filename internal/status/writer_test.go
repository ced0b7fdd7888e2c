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

package status

import "testing"

// The stuck-status case: the controller wrote Propagating, its cache still shows the older
// Federated, and the next pass computes Federated again. The cache "holds" it, but the object
// does not: the write must go ahead.
func TestWriterSkipsOnlyWhatItWroteAndTheCacheShows(t *testing.T) {
	w := &Writer{Owner: "test"}
	if w.skip("mc-1", "Federated", true) {
		t.Error("nothing written yet: a cache that shows the value is not enough to skip")
	}
	w.remember("mc-1", "Federated")
	if !w.skip("mc-1", "Federated", true) {
		t.Error("written and shown by the cache: skip")
	}
	if w.skip("mc-1", "Federated", false) {
		t.Error("the cache shows something else (someone changed it): write again")
	}
	w.remember("mc-1", "Propagating")
	if w.skip("mc-1", "Federated", true) {
		t.Error("last written was Propagating; a stale cache showing Federated must not skip the write back")
	}
	if w.skip("mc-2", "Propagating", true) {
		t.Error("objects are told apart by UID")
	}
}
