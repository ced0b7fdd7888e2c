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

package netnstest

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// OnLockedThread runs f on an OS thread of its own, which f may move to another network
// namespace (the sockets f makes stay there): the thread returns to this process's namespace
// afterwards, or, if it cannot, is thrown away (a goroutine that ends locked ends its thread)
// and the error says so.
func OnLockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer func() { _ = unix.Close(home) }()
		err = f()
		if rerr := unix.Setns(home, unix.CLONE_NEWNET); rerr != nil {
			errc <- errors.Join(err, fmt.Errorf("returning to the process's network namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// InNetns runs f with the sockets it makes in the network namespace at path (a
// /proc/<pid>/ns/net or /proc/<pid>/fd/<fd> path); "" runs f here.
func InNetns(path string, f func() error) error {
	if path == "" {
		return f()
	}
	return OnLockedThread(func() error {
		ns, err := os.Open(path)
		if err != nil {
			return err
		}
		defer func() { _ = ns.Close() }()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter the network namespace %s: %w", path, err)
		}
		return f()
	})
}
