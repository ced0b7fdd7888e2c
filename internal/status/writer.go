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

import (
	"context"
	"encoding/json"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Writer writes the status fields one controller owns (Apply, as Owner) and remembers what it
// last wrote to each object. A controller that is not woken by its own status writes must not
// skip a write because its cache already holds the new value: the cache may not have seen the
// controller's own last write yet, which then stays on the object. Writer skips only when the
// cache holds the value and the value is what it last wrote. It keeps one entry per object it
// ever wrote (a few hundred bytes per member, for the life of the process).
type Writer struct {
	Owner string

	mu   sync.Mutex
	last map[types.UID]string
}

// Write applies st (see Apply) unless cacheHolds (the caller's cached copy already shows st)
// and st is what this Writer last wrote to obj.
func (w *Writer) Write(ctx context.Context, c client.Client, obj client.Object, cacheHolds bool, st any, zeroes ...string) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	fp, uid := string(data), obj.GetUID()
	if w.skip(uid, fp, cacheHolds) {
		return nil
	}
	if err := Apply(ctx, c, obj, w.Owner, st, zeroes...); err != nil {
		return err
	}
	w.remember(uid, fp)
	return nil
}

func (w *Writer) skip(uid types.UID, fp string, cacheHolds bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, known := w.last[uid]
	return cacheHolds && known && last == fp
}

func (w *Writer) remember(uid types.UID, fp string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[types.UID]string{}
	}
	w.last[uid] = fp
}
