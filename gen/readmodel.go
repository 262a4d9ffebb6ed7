package gen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// queriesDir is the folder of the module's read-model queries, the input of sqlc.
const queriesDir = "sql/queries"

// firstModuleMigration is the number of a module's first own migration; lower numbers
// are esgen's (migrate.FirstModuleVersion).
const firstModuleMigration = 100

// readModelFiles are a projection's read-model files, by path relative to the module
// folder ("" when it has none).
type readModelFiles struct {
	migration string // e.g. sql/migrations/100_balances.sql
	queries   string // e.g. sql/queries/balances.sql, with sqlc: true
	query     string // the starter query's name, e.g. SaveBalances
}

var migrationName = regexp.MustCompile(`^(\d+)_([a-z0-9_]+)\.sql$`)

// migrationNumbers tracks the module's own migration numbers while a run plans new
// ones.
type migrationNumbers struct {
	next   int
	byName map[string]string // projection name → its existing migration file
}

// scanMigrations reads the module's own migrations (numbered from 100) in folder.
func scanMigrations(dir, folder string) (*migrationNumbers, error) {
	mn := &migrationNumbers{next: firstModuleMigration, byName: map[string]string{}}
	entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(folder)))
	if errors.Is(err, fs.ErrNotExist) {
		return mn, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if e.IsDir() || m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if n < firstModuleMigration {
			continue
		}
		mn.next = max(mn.next, n+1)
		mn.byName[m[2]] = path.Join(folder, e.Name())
	}
	return mn, nil
}

// readModelPlan returns the write-once files of a new projection's read model: a
// migration with a starter table, numbered after the module's last own migration
// (unless a migration named after the projection exists), and with sqlc: true a
// query file using it (unless it exists).
func readModelPlan(dir string, spec *Spec, pr *Projection, mn *migrationNumbers) ([]plannedFile, readModelFiles, error) {
	table := readModelTable(pr.Name)
	rm := readModelFiles{migration: mn.byName[pr.Name]}
	var files []plannedFile
	if rm.migration == "" {
		name := fmt.Sprintf("%03d_%s.sql", mn.next, pr.Name)
		mn.next++
		rm.migration = path.Join(spec.Output.Migrations, name)
		mn.byName[pr.Name] = rm.migration
		content, err := renderTemplate("readmodel.sql.tmpl", map[string]string{
			"Projection": pr.Name, "Handlers": path.Join(spec.Output.Handlers, pr.Name), "File": name, "Table": table,
		})
		if err != nil {
			return nil, rm, err
		}
		files = append(files, plannedFile{path: rm.migration, content: content, kind: userOwned})
	}
	if !spec.Sqlc {
		return files, rm, nil
	}
	rm.queries = path.Join(queriesDir, pr.Name+".sql")
	rm.query = "Save" + goFieldName(pr.Name)
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rm.queries))); err == nil {
		return files, rm, nil
	}
	content, err := renderTemplate("queries.sql.tmpl", map[string]string{
		"Projection": pr.Name, "Spec": specBase(spec), "Query": rm.query, "Table": table,
	})
	if err != nil {
		return nil, rm, err
	}
	return append(files, plannedFile{path: rm.queries, content: content, kind: userOwned}), rm, nil
}

// readModelTable is the starter table of a projection: its name, unless PostgreSQL
// reserves that word.
func readModelTable(projection string) string {
	if pgReserved[projection] {
		return projection + "_model"
	}
	return projection
}

// pgReserved are PostgreSQL's reserved key words that are valid projection names (Go
// keywords are not).
var pgReserved = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`all analyse analyze and any array as asc asymmetric both cast check
		collate column constraint create current_catalog current_date current_role current_time
		current_timestamp current_user deferrable desc distinct do end except false fetch foreign
		from grant group having in initially intersect into lateral leading limit localtime
		localtimestamp not null offset on only or order placing primary references returning
		select session_user some symmetric system_user table then to trailing true union unique
		user using variadic when where window with`) {
		pgReserved[w] = true
	}
}

// SqlcTool is the command line that adds sqlc to a module's tools, in the version
// esgen's own code is generated with.
const SqlcTool = "go get -tool github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1"

// RunSqlc runs `go tool sqlc generate` for the sqlc.yaml at config (Result.SqlcConfig),
// in its folder, with the output going to stdout and stderr. When the module does not
// have sqlc as a tool, the error says how to add it.
func RunSqlc(ctx context.Context, config string, stdout, stderr io.Writer) error {
	var errBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "tool", "sqlc", "generate", "-f", filepath.Base(config))
	cmd.Dir = filepath.Dir(config)
	cmd.Stdout = stdout
	cmd.Stderr = io.MultiWriter(stderr, &errBuf)
	if err := cmd.Run(); err != nil {
		if strings.Contains(errBuf.String(), `no such tool "sqlc"`) {
			return fmt.Errorf("sqlc: true needs sqlc as a tool of this module; add it with: %s", SqlcTool)
		}
		return fmt.Errorf("go tool sqlc generate: %w", err)
	}
	return nil
}
