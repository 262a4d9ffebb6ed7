package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// Report is the outcome of one run.
type Report struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Quick   bool      `json:"quick"`
	Machine Machine   `json:"machine"`
	Results []Result  `json:"results"`
	Notes   []string  `json:"notes,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	OS          string            `json:"os"`
	Arch        string            `json:"arch"`
	CPUs        int               `json:"cpus"`
	MemoryBytes uint64            `json:"memory_bytes"`
	GoVersion   string            `json:"go_version"`
	Postgres    string            `json:"postgres"`
	Server      string            `json:"server"` // "private throw-away cluster" or "DATABASE_URL"
	Settings    map[string]string `json:"settings"`
	// LoadAvg is the 1-minute load average at the start and at the end of the run: a
	// busy machine makes every number smaller and the ratios noisier.
	LoadAvg [2]float64 `json:"load_avg"`
}

// Result is one row of the table.
type Result struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	// Raw marks a raw-limit row: PostgreSQL without esgen.
	Raw bool `json:"raw,omitempty"`
	// Baseline marks a row that others compare with but that is esgen too.
	Baseline     bool    `json:"baseline,omitempty"`
	Events       int64   `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// RawName names the raw row this one is compared with; Ratio is this rate over its.
	RawName string  `json:"raw_name,omitempty"`
	Ratio   float64 `json:"ratio_to_raw,omitempty"`
	// RowsScanned counts heap rows read by the reads of the scenario (index fetches plus
	// sequential reads, from pg_stat_user_tables), RowsReturned the events handled.
	RowsScanned  int64 `json:"rows_scanned,omitempty"`
	RowsReturned int64 `json:"rows_returned,omitempty"`
	// PeakMemBytes is the peak Go heap in use (in-process scenarios) or the largest peak
	// RSS of the worker processes (VmHWM, as each worker reads it of itself).
	PeakMemBytes uint64  `json:"peak_mem_bytes,omitempty"`
	P50Ms        float64 `json:"p50_ms,omitempty"`
	P99Ms        float64 `json:"p99_ms,omitempty"`
	// MaxMs is the longest of the times measured (failover rows).
	MaxMs float64 `json:"max_ms,omitempty"`
	// HoldSeconds is how long the scenario kept its transaction open (gap-safety
	// latency rows).
	HoldSeconds float64 `json:"hold_seconds,omitempty"`
	// Holes is the number of holes the checkpoint carried (gap-safety catch-up).
	Holes int    `json:"holes,omitempty"`
	Note  string `json:"note,omitempty"`
	// ClientCPUSeconds is the CPU time of the Go side (this process, or the worker
	// processes together) during the scenario.
	ClientCPUSeconds float64 `json:"client_cpu_seconds,omitempty"`
	// Server is the server's time by statement (with pg_stat_statements only).
	Server *ServerTime `json:"server,omitempty"`
}

// finish fills in the ratios: a row's raw row is the one of its group named RawName.
func (rep *Report) finish() {
	type key struct{ group, name string }
	rates := map[key]float64{}
	for _, r := range rep.Results {
		if r.Raw || r.Baseline {
			rates[key{r.Group, r.Name}] = r.EventsPerSec
		}
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		if raw := rates[key{r.Group, r.RawName}]; raw > 0 && r.EventsPerSec > 0 {
			r.Ratio = r.EventsPerSec / raw
		}
	}
}

// Result returns the row with this group and name.
func (rep *Report) Result(group, name string) (Result, bool) {
	for _, r := range rep.Results {
		if r.Group == group && r.Name == name {
			return r, true
		}
	}
	return Result{}, false
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteTable writes the machine line, the table and the notes.
func (rep *Report) WriteTable(w io.Writer) error {
	m := rep.Machine
	fmt.Fprintf(w, "%s/%s, %d CPUs, %s memory, %s; PostgreSQL %s (%s)\n",
		m.OS, m.Arch, m.CPUs, bytesString(m.MemoryBytes), m.GoVersion, m.Postgres, m.Server)
	if len(m.Settings) > 0 {
		fmt.Fprintf(w, "settings: %s\n", settingsString(m.Settings))
	}
	fmt.Fprintf(w, "load average: %.2f at the start, %.2f at the end\n", m.LoadAvg[0], m.LoadAvg[1])
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\tscenario\tevents\tevents/s\tvs raw\tscanned/returned\tpeak mem\tp50 ms\tp99 ms\t")
	for _, r := range rep.Results {
		name := r.Name
		ratio := ""
		switch {
		case r.Raw:
			ratio = "raw"
		case r.Baseline:
			ratio = "base"
		case r.Ratio > 0:
			ratio = fmt.Sprintf("%.0f%%", 100*r.Ratio)
		}
		scan := ""
		if r.RowsReturned > 0 && r.RowsScanned > 0 {
			scan = fmt.Sprintf("%.2f", float64(r.RowsScanned)/float64(r.RowsReturned))
		}
		mem := ""
		if r.PeakMemBytes > 0 {
			mem = bytesString(r.PeakMemBytes)
		}
		rate := rateString(r.EventsPerSec)
		if r.P50Ms > 0 {
			rate = "" // a latency row: its rate is only the load offered
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Group, name, r.Events, rate,
			ratio, scan, mem, msString(r.P50Ms), msString(r.P99Ms))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	first := true
	for _, r := range rep.Results {
		if r.Server == nil && r.ClientCPUSeconds == 0 {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nwhere the time went (client: this process or the workers; server: pg_stat_statements):")
			first = false
		}
		line := fmt.Sprintf("- %s: %.2f s wall; client CPU %.2f s", r.Name, r.Seconds, r.ClientCPUSeconds)
		if r.Server != nil {
			line += "; " + r.Server.String()
		}
		fmt.Fprintln(w, line)
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
	fmt.Fprintf(w, "\ntotal %.1f s\n", rep.Seconds)
	return nil
}

func rateString(r float64) string {
	if r <= 0 {
		return ""
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

func msString(ms float64) string {
	if ms <= 0 {
		return ""
	}
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 2, 64)
	}
	return strconv.FormatFloat(ms, 'f', 0, 64)
}

func bytesString(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// reportedSettings are the server settings that decide the numbers.
var reportedSettings = []string{"fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
	"work_mem", "max_wal_size", "wal_level", "jit"}

func settingsString(s map[string]string) string {
	var parts []string
	for _, k := range reportedSettings {
		if v, ok := s[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ", ")
}

func describeMachine(ctx context.Context, srv *pgtest.Server) (Machine, error) {
	m := Machine{
		OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		MemoryBytes: memTotal(), Server: "DATABASE_URL", Settings: map[string]string{},
		LoadAvg: [2]float64{loadAvg(), 0},
	}
	if srv.Private() {
		m.Server = "private throw-away cluster"
	}
	conn, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		return m, fmt.Errorf("bench: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SHOW server_version`).Scan(&m.Postgres); err != nil {
		return m, fmt.Errorf("bench: server version: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name = ANY($1)`, reportedSettings)
	if err != nil {
		return m, fmt.Errorf("bench: settings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, setting, unit string
		if err := rows.Scan(&name, &setting, &unit); err != nil {
			return m, err
		}
		m.Settings[name] = withUnit(setting, unit)
	}
	return m, rows.Err()
}

// withUnit turns pg_settings' (setting, unit) into a readable size where it is one.
func withUnit(setting, unit string) string {
	n, err := strconv.ParseUint(setting, 10, 64)
	if err != nil {
		return setting
	}
	switch unit {
	case "8kB":
		return bytesString(n * 8192)
	case "kB":
		return bytesString(n << 10)
	case "MB":
		return bytesString(n << 20)
	}
	return setting + unit
}

// loadAvg reads the 1-minute load average (0 where there is none).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// memTotal reads MemTotal from /proc/meminfo (0 where there is none).
func memTotal() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
