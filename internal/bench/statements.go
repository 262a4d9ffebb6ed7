package bench

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ServerTime is where the server spent its time during a scenario, from
// pg_stat_statements (when the server has it loaded: the throw-away cluster does).
type ServerTime struct {
	TotalMs    float64         `json:"total_ms"` // execution plus planning, all statements
	Statements []StatementTime `json:"statements"`
}

// StatementTime is one statement's share.
type StatementTime struct {
	Name   string  `json:"name"` // the sqlc query name, or the start of the SQL
	Calls  int64   `json:"calls"`
	ExecMs float64 `json:"exec_ms"`
	PlanMs float64 `json:"plan_ms"`
	Rows   int64   `json:"rows"`
}

// statementSettings load pg_stat_statements into a throw-away cluster.
var statementSettings = map[string]string{
	"shared_preload_libraries":          "pg_stat_statements",
	"pg_stat_statements.track_planning": "on",
	"pg_stat_statements.max":            "1000",
}

// enableStatements creates the extension in a bench database and reports whether it
// can be used (it needs the library preloaded and the right to reset it).
func enableStatements(ctx context.Context, pool *pgxpool.Pool) bool {
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return false
	}
	_, err := pool.Exec(ctx, `SELECT pg_stat_statements_reset()`)
	return err == nil
}

func (r *runner) resetStatements(ctx context.Context, pool *pgxpool.Pool) {
	if r.statements {
		_, _ = pool.Exec(ctx, `SELECT pg_stat_statements_reset()`)
	}
}

var sqlcName = regexp.MustCompile(`^-- name: (\w+)`)

// serverTime reads the statements of the current database since the last reset,
// leaving out the bench's own look-ups of statistics.
func (r *runner) serverTime(ctx context.Context, pool *pgxpool.Pool) *ServerTime {
	if !r.statements {
		return nil
	}
	var st ServerTime
	rows, err := pool.Query(ctx, `
SELECT query, calls, total_exec_time, total_plan_time, rows
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%pg_stat%'
ORDER BY total_exec_time + total_plan_time DESC`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	for rows.Next() {
		var q string
		var s StatementTime
		if err := rows.Scan(&q, &s.Calls, &s.ExecMs, &s.PlanMs, &s.Rows); err != nil {
			return nil
		}
		st.TotalMs += s.ExecMs + s.PlanMs
		if m := sqlcName.FindStringSubmatch(q); m != nil {
			s.Name = m[1]

		} else {
			s.Name = strings.Join(strings.Fields(q), " ")
			if len(s.Name) > 40 {
				s.Name = s.Name[:40] + "…"
			}
		}
		if len(st.Statements) < 6 {
			st.Statements = append(st.Statements, s)
		}
	}
	if rows.Err() != nil {
		return nil
	}
	return &st
}

// String summarizes the server time: total, then the top statements.
func (st *ServerTime) String() string {
	var parts []string
	for _, s := range st.Statements {
		if s.ExecMs+s.PlanMs < st.TotalMs/50 {
			break
		}
		p := fmt.Sprintf("%s ×%d %.0f ms", s.Name, s.Calls, s.ExecMs)
		if s.PlanMs >= 1 {
			p += fmt.Sprintf(" + %.0f ms planning", s.PlanMs)
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("server %.2f s: %s", st.TotalMs/1000, strings.Join(parts, "; "))
}
