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

// Package argocd evaluates fleetmesh's Argo CD health checks (config/argocd) the way Argo CD does,
// so tests can feed them fixtures and the objects a real fleet produces.
package argocd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// ScriptFiles names each kind's health script in config/argocd.
var ScriptFiles = map[string]string{
	"MeshInstallation": "meshinstallation-health.lua",
	"MeshCluster":      "meshcluster-health.lua",
}

// LoadScript reads kind's health script from the repository at root.
func LoadScript(root, kind string) (string, error) {
	name, ok := ScriptFiles[kind]
	if !ok {
		return "", fmt.Errorf("no Argo CD health script for kind %q", kind)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "argocd", name))
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// The statuses Argo CD accepts from a health script; anything else it turns into Unknown.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// Health runs a health script on obj as Argo CD's ExecuteHealthLua does: a fresh interpreter with
// only the base, table and package libraries (Argo CD also adds a reduced os library, which these
// scripts do not use), obj as the global `obj`, one second to finish. obj is an unstructured
// object: from encoding/json, sigs.k8s.io/yaml or runtime.DefaultUnstructuredConverter.
// A status Argo CD would not accept is an error, not Unknown, so a typo in a script fails a test.
func Health(script string, obj map[string]any) (status, message string, err error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", fmt.Errorf("open lua library %s: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return "", "", fmt.Errorf("health script: %w", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("health script returned %s, want a table", l.Get(-1).Type())
	}
	status, message = luaString(ret.RawGetString("status")), luaString(ret.RawGetString("message"))
	if !validStatuses[status] {
		return status, message, fmt.Errorf("health script returned status %q, which Argo CD reports as Unknown", status)
	}
	return status, message, nil
}

func luaString(v lua.LValue) string {
	if s, ok := v.(lua.LString); ok {
		return string(s)
	}
	return ""
}

// toLua converts like Argo CD's decodeValue, plus the Go integer types a typed object converted
// to unstructured may hold (Argo CD only ever sees JSON numbers).
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case string:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case float32:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return lua.LNil
		}
		return lua.LNumber(f)
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(toLua(l, e))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetH(lua.LString(k), toLua(l, e))
		}
		return t
	}
	return lua.LNil
}
