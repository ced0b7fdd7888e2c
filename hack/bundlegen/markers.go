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

package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/operator-framework/api/pkg/operators/v1alpha1"
)

// csvMarker is operator-sdk's marker prefix, so the API types read the same to anyone who knows
// operator-sdk and would keep working if the project moved to it.
const csvMarker = "+operator-sdk:csv:customresourcedefinitions:"

// kindDescription is what the API types say about one kind for its CSV owned-CRD entry.
type kindDescription struct {
	Kind        string
	DisplayName string
	Description string
	Resources   []v1alpha1.APIResourceReference
	Spec        []v1alpha1.SpecDescriptor
	Status      []v1alpha1.StatusDescriptor
}

// readDescriptions parses the Go API package in dir and returns, per root kind (a type with
// +kubebuilder:object:root=true and a Spec field), its CSV descriptors from csvMarker comments.
func readDescriptions(dir string) (map[string]*kindDescription, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	types := map[string]*ast.TypeSpec{}
	docs := map[string]*ast.CommentGroup{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, "zz_generated") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				types[ts.Name.Name] = ts
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				docs[ts.Name.Name] = doc
			}
		}
	}

	out := map[string]*kindDescription{}
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ts := types[name]
		st, ok := ts.Type.(*ast.StructType)
		if !ok || !hasMarker(docs[name], "+kubebuilder:object:root=true") {
			continue
		}
		specField, statusField := findField(st, "Spec"), findField(st, "Status")
		if specField == nil {
			continue // a List type
		}
		kd := &kindDescription{Kind: name, DisplayName: splitCamel(name), Description: docText(docs[name])}
		for _, m := range markerArgs(docs[name]) {
			args, err := parseMarker(m)
			if err != nil {
				return nil, fmt.Errorf("type %s: %w", name, err)
			}
			if v, ok := args["displayName"]; ok {
				kd.DisplayName = v.str
			}
			for _, r := range args["resources"].list {
				if len(r.list) < 2 || len(r.list) > 3 {
					return nil, fmt.Errorf("type %s: resources entries are {Kind,version[,plural]}, got %d elements", name, len(r.list))
				}
				ref := v1alpha1.APIResourceReference{Kind: r.list[0].str, Version: r.list[1].str}
				if len(r.list) == 3 {
					ref.Name = r.list[2].str
				}
				kd.Resources = append(kd.Resources, ref)
			}
		}
		w := walker{types: types}
		if err := w.walk(typeName(specField.Type), "", "spec", kd, map[string]bool{}); err != nil {
			return nil, fmt.Errorf("%s.spec: %w", name, err)
		}
		if statusField != nil {
			if err := w.walk(typeName(statusField.Type), "", "status", kd, map[string]bool{}); err != nil {
				return nil, fmt.Errorf("%s.status: %w", name, err)
			}
		}
		out[name] = kd
	}
	return out, nil
}

type walker struct{ types map[string]*ast.TypeSpec }

// walk visits the fields of the named struct type in declaration order, so descriptors come out
// in the order a reader of the type sees them.
func (w walker) walk(typ, prefix, block string, kd *kindDescription, seen map[string]bool) error {
	ts, ok := w.types[typ]
	if !ok || seen[typ] {
		return nil
	}
	st, ok := ts.Type.(*ast.StructType)
	if !ok {
		return nil
	}
	seen = copySet(seen)
	seen[typ] = true
	for _, f := range st.Fields.List {
		jsonName, inline := jsonTag(f)
		if jsonName == "-" {
			continue
		}
		path := prefix
		if !inline {
			if jsonName == "" || len(f.Names) == 0 {
				continue
			}
			path = joinPath(prefix, jsonName)
		}
		for _, m := range markerArgs(f.Doc) {
			args, err := parseMarker(m)
			if err != nil {
				return fmt.Errorf("field %s: %w", path, err)
			}
			blocks := args["type"].words()
			if len(blocks) == 0 {
				return fmt.Errorf("field %s: marker needs type=spec or type=status", path)
			}
			desc := docText(f.Doc)
			for _, b := range blocks {
				if b != block {
					if b != "spec" && b != "status" {
						return fmt.Errorf("field %s: unknown descriptor type %q", path, b)
					}
					continue
				}
				display := args["displayName"].str
				if display == "" {
					display = splitCamel(jsonName)
				}
				xd := args["xDescriptors"].words()
				if block == "spec" {
					kd.Spec = append(kd.Spec, v1alpha1.SpecDescriptor{Path: path, DisplayName: display, Description: desc, XDescriptors: xd})
				} else {
					kd.Status = append(kd.Status, v1alpha1.StatusDescriptor{Path: path, DisplayName: display, Description: desc, XDescriptors: xd})
				}
			}
		}
		if err := w.walk(typeName(f.Type), path, block, kd, seen); err != nil {
			return err
		}
	}
	return nil
}

func copySet(in map[string]bool) map[string]bool {
	out := make(map[string]bool, len(in)+1)
	for k, v := range in {
		out[k] = v
	}
	return out
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// typeName is the package-local named type behind t (through pointers); "" for anything else,
// so slices and maps are not descended into: a descriptor path cannot index them.
func typeName(t ast.Expr) string {
	switch x := t.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.StarExpr:
		return typeName(x.X)
	}
	return ""
}

func findField(st *ast.StructType, name string) *ast.Field {
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.Name == name {
				return f
			}
		}
	}
	return nil
}

func jsonTag(f *ast.Field) (name string, inline bool) {
	if f.Tag == nil {
		return "", len(f.Names) == 0
	}
	tag, err := strconv.Unquote(f.Tag.Value)
	if err != nil {
		return "", false
	}
	parts := strings.Split(reflect.StructTag(tag).Get("json"), ",")
	for _, p := range parts[1:] {
		if p == "inline" {
			return parts[0], true
		}
	}
	return parts[0], false
}

func hasMarker(doc *ast.CommentGroup, marker string) bool {
	if doc == nil {
		return false
	}
	for _, c := range doc.List {
		if strings.TrimSpace(strings.TrimPrefix(c.Text, "//")) == marker {
			return true
		}
	}
	return false
}

func markerArgs(doc *ast.CommentGroup) []string {
	if doc == nil {
		return nil
	}
	var out []string
	for _, c := range doc.List {
		line := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
		if strings.HasPrefix(line, csvMarker) {
			out = append(out, strings.TrimPrefix(line, csvMarker))
		}
	}
	return out
}

// docText is the comment without marker lines, as one paragraph: the same text the CRD schema
// carries as the field's description.
func docText(doc *ast.CommentGroup) string {
	if doc == nil {
		return ""
	}
	var words []string
	for _, c := range doc.List {
		line := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
		if strings.HasPrefix(line, "+") || line == "" {
			continue
		}
		words = append(words, line)
	}
	return strings.Join(words, " ")
}

// splitCamel turns "MeshInstallation" or "clusterSelector" into "Mesh Installation" /
// "Cluster Selector" for a display name nobody wrote.
func splitCamel(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i == 0 {
			b.WriteString(strings.ToUpper(string(r)))
			continue
		}
		if r >= 'A' && r <= 'Z' && s[i-1] >= 'a' && s[i-1] <= 'z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// markerValue is a parsed marker argument: a string, or a list of values ({...} or [...]).
type markerValue struct {
	str  string
	list []markerValue
}

func (v markerValue) words() []string {
	if v.list == nil {
		if v.str == "" {
			return nil
		}
		return []string{v.str}
	}
	out := make([]string, 0, len(v.list))
	for _, e := range v.list {
		out = append(out, e.str)
	}
	return out
}

// parseMarker parses `key=value,key=value` where a value is a bare word, a Go-quoted string,
// or a list in {} or [] of values.
func parseMarker(s string) (map[string]markerValue, error) {
	p := &markerParser{s: s}
	out := map[string]markerValue{}
	for !p.done() {
		key := p.until("=")
		if !p.eat('=') {
			return nil, fmt.Errorf("marker %q: expected key=value at %q", s, p.rest())
		}
		v, err := p.value()
		if err != nil {
			return nil, fmt.Errorf("marker %q: %w", s, err)
		}
		out[strings.TrimSpace(key)] = v
		if !p.done() && !p.eat(',') {
			return nil, fmt.Errorf("marker %q: expected ',' at %q", s, p.rest())
		}
	}
	return out, nil
}

type markerParser struct {
	s string
	i int
}

func (p *markerParser) done() bool   { return p.i >= len(p.s) }
func (p *markerParser) rest() string { return p.s[p.i:] }

func (p *markerParser) eat(c byte) bool {
	if !p.done() && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *markerParser) until(stops string) string {
	start := p.i
	for !p.done() && !strings.ContainsRune(stops, rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *markerParser) value() (markerValue, error) {
	if p.done() {
		return markerValue{}, fmt.Errorf("missing value")
	}
	switch c := p.s[p.i]; c {
	case '"':
		j := p.i + 1
		for j < len(p.s) && p.s[j] != '"' {
			if p.s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(p.s) {
			return markerValue{}, fmt.Errorf("unterminated string at %q", p.rest())
		}
		str, err := strconv.Unquote(p.s[p.i : j+1])
		if err != nil {
			return markerValue{}, err
		}
		p.i = j + 1
		return markerValue{str: str}, nil
	case '{', '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		p.i++
		v := markerValue{list: []markerValue{}}
		for !p.eat(closing) {
			e, err := p.value()
			if err != nil {
				return markerValue{}, err
			}
			v.list = append(v.list, e)
			if !p.eat(',') && (p.done() || p.s[p.i] != closing) {
				return markerValue{}, fmt.Errorf("expected ',' or '%c' at %q", closing, p.rest())
			}
		}
		return v, nil
	default:
		return markerValue{str: strings.TrimSpace(p.until(",}]"))}, nil
	}
}
