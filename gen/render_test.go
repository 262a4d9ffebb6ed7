package gen

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

func TestWrapComment(t *testing.T) {
	long := strings.Repeat("word ", 40)
	for _, tc := range []struct {
		text   string
		indent int
	}{
		{long, 0},
		{long, 1},
		{"Package customer_orders_with_a_long_name is the generated side of the projection.", 0},
		{"first paragraph.\n\nsecond " + long, 0},
	} {
		got := wrapComment(tc.text, tc.indent)
		var words []string
		for line := range strings.SplitSeq(got, "\n") {
			rest, ok := strings.CutPrefix(line, "//")
			if !ok {
				t.Fatalf("line %q is not a // comment", line)
			}
			fields := strings.Fields(rest)
			if width := 4*tc.indent + len(line); width > commentWidth && len(fields) > 1 {
				t.Errorf("line %q takes %d columns at indent %d, more than %d", line, width, tc.indent, commentWidth)
			}
			words = append(words, fields...)
		}
		if want := strings.Fields(tc.text); !slices.Equal(words, want) {
			t.Errorf("wrapComment(%q) lost or reordered words:\n%s", tc.text, got)
		}
		if paragraphs := strings.Count(tc.text, "\n\n"); strings.Count(got, "\n//\n") != paragraphs {
			t.Errorf("wrapComment(%q) has not %d empty comment lines:\n%s", tc.text, paragraphs, got)
		}
	}
	if got := wrapComment("a b", 0); got != "// a b" {
		t.Errorf("short comment = %q", got)
	}
}

// TestLiteralsInDeclarationOrder checks that every keyed composite literal in the
// golden outputs lists its fields in the order the struct declares them: the runtime
// structs generated code fills, and the structs a generated file declares itself.
func TestLiteralsInDeclarationOrder(t *testing.T) {
	runtime := map[string][]string{
		"eventstore.EventData":  fieldNames(reflect.TypeFor[eventstore.EventData]()),
		"projection.Projection": fieldNames(reflect.TypeFor[projection.Projection]()),
	}
	checked := 0
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || !strings.Contains(filepath.ToSlash(p), "/want/") {
			return err
		}
		af, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		declared := map[string][]string{}
		ast.Inspect(af, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					for _, f := range st.Fields.List {
						for _, name := range f.Names {
							declared[ts.Name.Name] = append(declared[ts.Name.Name], name.Name)
						}
					}
				}
			}
			return true
		})
		ast.Inspect(af, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			var typeName string
			switch t := lit.Type.(type) {
			case *ast.Ident:
				typeName = t.Name
			case *ast.SelectorExpr:
				if x, ok := t.X.(*ast.Ident); ok {
					typeName = x.Name + "." + t.Sel.Name
				}
			}
			order, ok := runtime[typeName]
			if !ok {
				order, ok = declared[typeName]
			}
			if !ok {
				return true
			}
			var keys []string
			for _, el := range lit.Elts {
				if kv, ok := el.(*ast.KeyValueExpr); ok {
					keys = append(keys, kv.Key.(*ast.Ident).Name)
				}
			}
			last := -1
			for _, k := range keys {
				i := slices.Index(order, k)
				if i < last {
					t.Errorf("%s: %s literal lists %v; the struct declares %v", p, typeName, keys, order)
					break
				}
				last = i
			}
			if len(keys) > 0 {
				checked++
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 3 {
		t.Errorf("checked %d keyed literals; want at least those of Encode, New and the dispatcher", checked)
	}
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		names = append(names, t.Field(i).Name)
	}
	return names
}
