// lifeboat-argocd-lua runs Lifeboat's Argo CD resource customizations the way Argo CD runs them: in
// gopher-lua (Argo CD's Lua engine, Lua 5.1), with only the libraries Argo CD opens for scripts (base,
// table, string, math, coroutine and a safe os with time/date/clock), the object as the global `obj`.
//
//	lifeboat-argocd-lua DIR    DIR holds <group>/<Kind>/ in Argo CD's resource_customizations layout:
//	                           health.lua + health_test.yaml, actions/discovery.lua,
//	                           actions/<name>/action.lua + actions/action_test.yaml, testdata/.
//
// Action tests compare the returned object (a patch action) or the returned operations (a create action,
// Argo CD >= 2.8: a list of {operation, resource}) with the expected YAML. The clock is fixed at
// 2026-12-03T10:00:00Z so names made from os.time/os.date are reproducible. Exit 1 on any mismatch.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

var fixedNow = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

type healthTests struct {
	Tests []struct {
		HealthStatus map[string]string `json:"healthStatus"`
		InputPath    string            `json:"inputPath"`
	} `json:"tests"`
}

type actionTests struct {
	DiscoveryTests []struct {
		InputPath string `json:"inputPath"`
		Result    []struct {
			Name     string `json:"name"`
			Disabled bool   `json:"disabled"`
		} `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: lifeboat-argocd-lua DIR")
		os.Exit(2)
	}
	kinds, _ := filepath.Glob(filepath.Join(os.Args[1], "*", "*"))
	failures, ran := 0, 0
	for _, dir := range kinds {
		f, n := runKind(dir)
		failures += f
		ran += n
	}
	fmt.Printf("%d test cases, %d failed\n", ran, failures)
	if failures > 0 || ran == 0 {
		os.Exit(1)
	}
}

func runKind(dir string) (failures, ran int) {
	fail := func(format string, args ...any) {
		failures++
		fmt.Printf("FAIL %s: %s\n", dir, fmt.Sprintf(format, args...))
	}
	if script, err := os.ReadFile(filepath.Join(dir, "health.lua")); err == nil {
		var tests healthTests
		mustYAML(filepath.Join(dir, "health_test.yaml"), &tests)
		for _, test := range tests.Tests {
			ran++
			got, err := run(string(script), readObject(filepath.Join(dir, test.InputPath)))
			if err != nil {
				fail("health of %s: %v", test.InputPath, err)
				continue
			}
			want := map[string]any{}
			for k, v := range test.HealthStatus {
				want[k] = v
			}
			if !reflect.DeepEqual(got, want) {
				fail("health of %s: got %v, want %v", test.InputPath, got, want)
			}
		}
	}
	actions := filepath.Join(dir, "actions")
	discovery, err := os.ReadFile(filepath.Join(actions, "discovery.lua"))
	if err != nil {
		return failures, ran
	}
	var tests actionTests
	mustYAML(filepath.Join(actions, "action_test.yaml"), &tests)
	for _, test := range tests.DiscoveryTests {
		ran++
		got, err := run(string(discovery), readObject(filepath.Join(dir, test.InputPath)))
		if err != nil {
			fail("discovery on %s: %v", test.InputPath, err)
			continue
		}
		found := map[string]bool{}
		if table, ok := got.(map[string]any); ok {
			for name, options := range table {
				disabled, _ := options.(map[string]any)["disabled"].(bool)
				found[name] = disabled
			}
		}
		want := map[string]bool{}
		for _, r := range test.Result {
			want[r.Name] = r.Disabled
		}
		if !reflect.DeepEqual(found, want) {
			fail("discovery on %s: got %v, want %v", test.InputPath, found, want)
		}
	}
	for _, test := range tests.ActionTests {
		ran++
		script, err := os.ReadFile(filepath.Join(actions, test.Action, "action.lua"))
		if err != nil {
			fail("action %s: %v", test.Action, err)
			continue
		}
		got, err := run(string(script), readObject(filepath.Join(dir, test.InputPath)))
		if err != nil {
			fail("action %s on %s: %v", test.Action, test.InputPath, err)
			continue
		}
		want := readAny(filepath.Join(dir, test.ExpectedOutputPath))
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			gotYAML, _ := yaml.Marshal(got)
			fail("action %s on %s: got\n%s", test.Action, test.InputPath, gotYAML)
		}
	}
	return failures, ran
}

// run executes a script with `obj` set, as Argo CD does, and returns its result as JSON-like Go values.
func run(script string, obj any) (any, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.CoroutineLibName, lua.OpenCoroutine},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	// Argo CD removes what reaches the file system from base and offers a safe os.
	for _, unsafe := range []string{"dofile", "loadfile", "load", "loadstring", "require", "module"} {
		L.SetGlobal(unsafe, lua.LNil)
	}
	L.SetGlobal("os", safeOS(L))
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return nil, err
	}
	return fromLua(L.Get(-1)), nil
}

func safeOS(L *lua.LState) *lua.LTable {
	os := L.NewTable()
	os.RawSetString("time", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(fixedNow.Unix()))
		return 1
	}))
	os.RawSetString("clock", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(0))
		return 1
	}))
	os.RawSetString("date", L.NewFunction(func(L *lua.LState) int {
		// Only the formats scripts use for names: "!%Y%m%d%H%M%S" and "!%Y-%m-%dT%H:%M:%SZ".
		format := L.OptString(1, "%c")
		switch format {
		case "!%Y%m%d%H%M%S":
			L.Push(lua.LString(fixedNow.Format("20060102150405")))
		case "!%Y-%m-%dT%H:%M:%SZ":
			L.Push(lua.LString(fixedNow.Format("2006-01-02T15:04:05Z")))
		default:
			L.RaiseError("os.date format %q is not supported here", format)
		}
		return 1
	}))
	return os
}

func toLua(L *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := L.NewTable()
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for key, item := range v {
			t.RawSetString(key, toLua(L, item))
		}
		return t
	}
	panic(fmt.Sprintf("unexpected %T", value))
}

// fromLua turns a table with keys 1..n into a list and any other table into a map, as Argo CD does.
func fromLua(value lua.LValue) any {
	switch v := value.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		if n := v.Len(); n > 0 {
			list := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				list = append(list, fromLua(v.RawGetInt(i)))
			}
			return list
		}
		table := map[string]any{}
		v.ForEach(func(key, item lua.LValue) { table[key.String()] = fromLua(item) })
		return table
	}
	return value.String()
}

// normalize round-trips through YAML so numbers and empty maps compare alike.
func normalize(value any) any {
	data, _ := yaml.Marshal(value)
	var out any
	_ = yaml.Unmarshal(data, &out)
	if list, ok := out.([]any); ok {
		sort.SliceStable(list, func(i, j int) bool { return fmt.Sprint(list[i]) < fmt.Sprint(list[j]) })
	}
	return out
}

func readObject(path string) any { return readAny(path) }

func readAny(path string) any {
	var value any
	mustYAML(path, &value)
	return value
}

func mustYAML(path string, into any) {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
		os.Exit(2)
	}
}
