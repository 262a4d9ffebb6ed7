package gen

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// updateGolden rewrites the expected outputs under testdata instead of comparing.
var updateGolden = os.Getenv("ESGEN_UPDATE_GOLDEN") != ""

// goldenModule is the module path the golden cases generate for.
const goldenModule = "example.com/app"

// TestGolden runs every case under testdata: a folder with an esgen.yaml, optionally
// the module's files before generating under input/ (e.g. the lock of published
// schemas, esgen.lock.json), and either the expected output tree under want/ or the
// expected error text in error.txt.
// esgen's own migrations are checked by TestMigrationsAreEsgensWithAHeader, not copied
// into every case; the read-model migrations written for the module are.
func TestGolden(t *testing.T) {
	cases, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			caseDir := filepath.Join("testdata", c.Name())
			dir := t.TempDir()
			copyFile(t, filepath.Join(caseDir, "esgen.yaml"), filepath.Join(dir, "esgen.yaml"))
			inputs := []string{"esgen.yaml"} // the spec first, then the input files
			for _, rel := range listFiles(t, filepath.Join(caseDir, "input")) {
				copyFile(t, filepath.Join(caseDir, "input", filepath.FromSlash(rel)), filepath.Join(dir, filepath.FromSlash(rel)))
				inputs = append(inputs, rel)
			}

			_, genErr := Generate(Options{Dir: dir, ModulePath: goldenModule})
			errFile := filepath.Join(caseDir, "error.txt")
			_, statErr := os.Stat(errFile)
			wantError := statErr == nil
			if genErr != nil {
				var list ErrorList
				if !errors.As(genErr, &list) {
					t.Fatalf("Generate: %v (want an ErrorList)", genErr)
				}
				if got := listFiles(t, dir); !slices.Equal(got, slices.Sorted(slices.Values(inputs))) {
					t.Errorf("a failing spec wrote files: %v, want only %v", got, inputs)
				}
				for _, rel := range inputs[1:] {
					if !bytes.Equal(readFile(t, filepath.Join(dir, rel)), readFile(t, filepath.Join(caseDir, "input", rel))) {
						t.Errorf("a failing spec changed %s", rel)
					}
				}
				compareGolden(t, errFile, []byte(genErr.Error()+"\n"))
				return
			}
			if wantError && !updateGolden {
				t.Fatalf("Generate succeeded; want the error in %s", errFile)
			}
			spec, err := Load(filepath.Join(dir, "esgen.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			wantDir := filepath.Join(caseDir, "want")
			got := map[string][]byte{}
			for _, rel := range listFiles(t, dir) {
				content := readFile(t, filepath.Join(dir, rel))
				if rel == "esgen.yaml" || strings.HasPrefix(rel, spec.Output.Migrations+"/") && bytes.HasPrefix(content, []byte("-- "+generatedHeader)) {
					continue // esgen's own migrations: TestMigrationsAreEsgensWithAHeader
				}
				got[rel] = content
			}
			if updateGolden {
				if err := os.RemoveAll(wantDir); err != nil {
					t.Fatal(err)
				}
			}
			for rel, content := range got {
				compareGolden(t, filepath.Join(wantDir, filepath.FromSlash(rel)), content)
			}
			if !updateGolden {
				for _, rel := range listFiles(t, wantDir) {
					if _, ok := got[rel]; !ok {
						t.Errorf("%s: expected file was not generated", rel)
					}
				}
			}
		})
	}
}

// compareGolden checks got against the file want, or rewrites it under
// ESGEN_UPDATE_GOLDEN=1.
func compareGolden(t *testing.T, want string, got []byte) {
	t.Helper()
	if updateGolden {
		if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(want, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("%v (run with ESGEN_UPDATE_GOLDEN=1 to create it)", err)
	}
	if !bytes.Equal(w, got) {
		t.Errorf("%s differs from the generated output:\n%s", want, lineDiff(string(w), string(got)))
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(wl), len(gl)) && shown < 10; i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + w + "\n  got:  " + g + "\n")
			shown++
		}
	}
	return b.String()
}

// listFiles returns the files under dir, slash-separated and sorted.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, readFile(t, from), 0o644); err != nil {
		t.Fatal(err)
	}
}
