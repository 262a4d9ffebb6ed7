// Package examples_test runs every example the way its README says.
//
// A README is a script: its ```sh blocks run in order with bash, in the example's
// folder, with DATABASE_URL pointing at a fresh, empty database. HTML comments, which
// a Markdown viewer does not show, tell the test what a reader does between commands:
//
//	<!-- test: skip -->             the next ```sh block is not run (e.g. esgen devdb)
//	<!-- test: background NAME -->  the next ```sh block keeps running (a projector): it is
//	                                started in the background and its output kept as NAME
//	<!-- test: wait CHECK -->       the example's test checks CHECK, polling until it holds
//	<!-- test: stop NAME -->        Ctrl+C (or SIGTERM) for NAME, which must exit 0
//	<!-- test: exits NAME CODE -->  NAME must end by itself with exit code CODE
//	<!-- test: do NAME -->          what the reader does by hand here (edits a file,
//	                                appends events): the test's action NAME, run once
//	<!-- test: walkthrough NAME --> the steps after it, up to the next walkthrough
//	                                directive, are the walk-through NAME
//
// Each example's test names its checks (and actions); a check the README never uses,
// or a check the README names that does not exist, fails the test. Whatever runs in the background at
// the end gets Ctrl+C / SIGTERM and must exit 0.
//
// A README with walk-throughs (runWalkthroughs) begins with their setup: commands that
// build, without a database, run once in the example's folder. Each walk-through then
// runs as a subtest of its own, in parallel with the others, against a fresh database.
package examples_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// step is one thing the README asks the reader to do.
type step struct {
	kind string // "run", "background", "wait", "stop", "exits"
	name string // background name, check name
	code string // shell code of run and background steps
	exit int    // expected exit code of an exits step
	line int    // line in README.md
	walk string // the walk-through the step belongs to; "" before the first
}

var (
	directiveRE = regexp.MustCompile(`^<!--\s*test:\s*(.*?)\s*-->$`)
	fenceRE     = regexp.MustCompile("^```\\s*([A-Za-z0-9_+-]*)")
)

// parseReadme returns the steps of an example's README.md.
func parseReadme(path string) ([]step, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseSteps(path, strings.Split(string(data), "\n"), 0)
}

// parseReadmeSection returns the steps of the section "## heading" of a README: its
// lines up to the next heading of the same level.
func parseReadmeSection(path, heading string) ([]step, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if l != "## "+heading {
			continue
		}
		end := i + 1
		for end < len(lines) && !strings.HasPrefix(lines[end], "## ") {
			end++
		}
		return parseSteps(path, lines[i:end], i)
	}
	return nil, fmt.Errorf("%s has no section %q", path, heading)
}

// parseSteps returns the steps of lines, the README's lines from offset on.
func parseSteps(path string, lines []string, offset int) ([]step, error) {
	var err error
	var (
		steps   []step
		pending *step // a skip or background directive waiting for its block
		walk    string
		walks   = map[string]bool{}
	)
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if m := directiveRE.FindStringSubmatch(line); m != nil {
			f := strings.Fields(m[1])
			if len(f) == 0 {
				return nil, fmt.Errorf("%s:%d: empty test directive", path, offset+i+1)
			}
			if pending != nil {
				return nil, fmt.Errorf("%s:%d: directive %q before the ```sh block of the one on line %d", path, offset+i+1, m[1], pending.line)
			}
			s := step{kind: f[0], line: offset + i + 1, walk: walk}
			switch {
			case f[0] == "walkthrough" && len(f) == 2:
				if walks[f[1]] {
					return nil, fmt.Errorf("%s:%d: walk-through %q named twice", path, offset+i+1, f[1])
				}
				walk, walks[f[1]] = f[1], true
			case f[0] == "skip" && len(f) == 1:
				pending = &s
			case f[0] == "background" && len(f) == 2:
				s.name = f[1]
				pending = &s
			case (f[0] == "wait" || f[0] == "stop" || f[0] == "do") && len(f) == 2:
				s.name = f[1]
				steps = append(steps, s)
			case f[0] == "exits" && len(f) == 3:
				s.name = f[1]
				if s.exit, err = strconv.Atoi(f[2]); err != nil {
					return nil, fmt.Errorf("%s:%d: exit code %q", path, offset+i+1, f[2])
				}
				steps = append(steps, s)
			default:
				return nil, fmt.Errorf("%s:%d: unknown test directive %q", path, offset+i+1, m[1])
			}
			continue
		}
		m := fenceRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		start := i
		var code []string
		for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
			code = append(code, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("%s:%d: code block never closed", path, offset+start+1)
		}
		if m[1] != "sh" {
			if pending != nil {
				return nil, fmt.Errorf("%s:%d: the directive on line %d needs a ```sh block, got ```%s", path, offset+start+1, pending.line, m[1])
			}
			continue
		}
		s := step{kind: "run", line: offset + start + 1, walk: walk}
		if pending != nil {
			s = *pending
			pending = nil
		}
		s.code = strings.Join(code, "\n") + "\n"
		steps = append(steps, s) // skip steps too: a test may run them its own way
	}
	if pending != nil {
		return nil, fmt.Errorf("%s:%d: directive without a ```sh block after it", path, pending.line)
	}
	if len(walks) > 0 {
		for _, s := range steps {
			if s.walk == "" && s.kind != "run" && s.kind != "skip" {
				return nil, fmt.Errorf("%s:%d: %s before the first walk-through: its setup runs commands only", path, s.line, s.kind)
			}
		}
	}
	return steps, nil
}

// walkthroughs returns the names of the README's walk-throughs in order, and the
// steps of each; the setup before the first is under "".
func walkthroughs(steps []step) ([]string, map[string][]step) {
	var names []string
	byWalk := map[string][]step{}
	for _, s := range steps {
		if _, seen := byWalk[s.walk]; !seen && s.walk != "" {
			names = append(names, s.walk)
		}
		byWalk[s.walk] = append(byWalk[s.walk], s)
	}
	return names, byWalk
}

// check is an example's assertion at a wait step. It returns nil when the condition
// holds; the runner retries it until it holds or the wait times out.
type check func(ctx context.Context, r *runner) error

// runner runs one example's README.
type runner struct {
	t    *testing.T
	dir  string // the example's folder
	url  string // DATABASE_URL
	pool *pgxpool.Pool
	env  []string

	mu      sync.Mutex
	outputs []string             // output of each run step, in order
	bg      map[string]*bgProc   // background processes by name
	checks  map[string]check     // the example's checks
	used    map[string]bool      // checks the README used
	ran     map[string]time.Time // start time per background name
	ended   map[string]string    // logs of background commands that ended
	exitsOK map[string]bool      // background commands a later exits step expects to end
}

type bgProc struct {
	name    string
	code    string
	cmd     *exec.Cmd
	log     *lockedFile
	done    chan struct{}
	err     error
	stopped bool
	execed  bool // bash exec'd the command: the process is the command itself
}

// lockedFile collects a process's output.
type lockedFile struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedFile) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runExample runs the README of examples/<name> against a fresh database, with the
// given checks, and returns the runner for final assertions.
func runExample(t *testing.T, name string, checks map[string]check) *runner {
	t.Helper()
	return runExampleOn(t, name, "", checks)
}

// runExampleOn is runExample with the database at url ("": a fresh one).
func runExampleOn(t *testing.T, name, url string, checks map[string]check) *runner {
	t.Helper()
	dir, steps := readExample(t, name)
	if names, _ := walkthroughs(steps); len(names) > 0 {
		t.Fatalf("%s/README.md has walk-throughs %v: run it with runWalkthroughs", name, names)
	}
	return runSteps(t, dir, steps, url, checks)
}

// walkthrough is the test of one walk-through: its checks and the assertions after
// its last step.
type walkthrough struct {
	checks map[string]check
	after  func(t *testing.T, r *runner)
}

// runWalkthroughs runs the setup of examples/<name>'s README, then each walk-through
// as a parallel subtest named after it, against a fresh database each. Every
// walk-through of the README needs a test in walks, and every test a walk-through.
func runWalkthroughs(t *testing.T, name string, walks map[string]walkthrough) {
	t.Helper()
	dir, steps := readExample(t, name)
	names, byWalk := walkthroughs(steps)
	for _, n := range names {
		if _, ok := walks[n]; !ok {
			t.Errorf("%s/README.md: walk-through %q has no test", name, n)
		}
	}
	for n := range walks {
		if _, ok := byWalk[n]; !ok {
			t.Errorf("%s/README.md has no walk-through %q", name, n)
		}
	}
	if t.Failed() {
		return
	}
	warmUp(t)
	env := exampleEnv(t, "")
	for _, s := range byWalk[""] {
		if s.kind != "run" {
			continue
		}
		start := time.Now()
		out, err := runShell(dir, env, s.code)
		t.Logf("README.md:%d: setup ran in %s:\n%s%s", s.line, time.Since(start).Round(time.Millisecond), indent(s.code), indent(out))
		if err != nil {
			t.Fatalf("README.md:%d: %v", s.line, err)
		}
	}
	for _, n := range names {
		w := walks[n]
		t.Run(n, func(t *testing.T) {
			t.Parallel()
			r := runSteps(t, dir, byWalk[n], "", w.checks)
			if !t.Failed() && w.after != nil {
				w.after(t, r)
			}
		})
	}
}

// readExample returns the folder of examples/<name> and the steps of its README. It
// skips the test with -short.
func readExample(t *testing.T, name string) (string, []step) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the example's programs; skipped with -short")
	}
	dir, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseReadme(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, steps
}

// runSteps runs steps in dir against the database at url ("": a fresh one), with the
// given checks and extra environment variables, and returns the runner for final
// assertions.
func runSteps(t *testing.T, dir string, steps []step, url string, checks map[string]check, env ...string) *runner {
	t.Helper()
	warmUp(t)
	if url == "" {
		url = pgtest.NewEmptyDatabase(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	r := &runner{t: t, dir: dir, url: url, pool: pool, env: append(exampleEnv(t, url), env...),
		bg: map[string]*bgProc{}, checks: checks, used: map[string]bool{}, ran: map[string]time.Time{}}
	t.Cleanup(r.killAll)
	r.run(steps)
	for name := range checks {
		if !r.used[name] {
			t.Errorf("README.md never uses the check %q", name)
		}
	}
	return r
}

var (
	warmOnce sync.Once
	warmErr  error
)

// warmUp builds esgen once through go run, which caches the executable, before the
// examples run go generate and esgen status in parallel.
func warmUp(t *testing.T) {
	warmOnce.Do(func() {
		out, err := exec.Command("go", "run", "github.com/esgen-dev/esgen/cmd/esgen", "help").CombinedOutput()
		if err != nil {
			warmErr = fmt.Errorf("go run github.com/esgen-dev/esgen/cmd/esgen help: %v\n%s", err, out)
		}
	})
	if warmErr != nil {
		t.Fatal(warmErr)
	}
}

// exampleEnv is the environment of the README's commands: this process's, without
// esgen's settings, with psql on PATH and DATABASE_URL (none if url is "").
func exampleEnv(t *testing.T, url string) []string {
	psql, err := pgtest.Bin("psql")
	if err != nil {
		t.Fatalf("the examples need psql: %v", err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DATABASE_URL", "PARTITION_KEY", "TOTAL_PARTITIONS", "LOG_LEVEL", "LOG_FORMAT", "BATCH_SIZE",
			"POLL_INTERVAL", "NO_NOTIFY", "MAX_RETRIES", "RESCALE", "METRICS_ADDR", "HEALTH_THRESHOLD", "SHUTDOWN_TIMEOUT", "PROGRESS_INTERVAL", "PATH":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+filepath.Dir(psql)+string(os.PathListSeparator)+os.Getenv("PATH"))
	if url != "" {
		env = append(env, "DATABASE_URL="+url)
	}
	return env
}

func (r *runner) run(steps []step) {
	t := r.t
	r.exitsOK = map[string]bool{}
	for _, s := range steps {
		if s.kind == "exits" {
			r.exitsOK[s.name] = true
		}
	}
	for _, s := range steps {
		if t.Failed() {
			return
		}
		code := s.code
		switch s.kind {
		case "run":
			start := time.Now()
			out, err := r.shell(code)
			t.Logf("README.md:%d: ran in %s:\n%s%s", s.line, time.Since(start).Round(time.Millisecond), indent(code), indent(out))
			if err != nil {
				t.Fatalf("README.md:%d: %v\n%s", s.line, err, r.bgLogs())
			}
			r.mu.Lock()
			r.outputs = append(r.outputs, out)
			r.mu.Unlock()
		case "background":
			r.start(s, code)
		case "wait":
			r.wait(s)
		case "do":
			r.do(s)
		case "stop":
			r.stop(s.line, s.name)
		case "exits":
			r.exits(s)
		}
	}
	// What still runs gets Ctrl+C / SIGTERM, like a reader closing the terminals.
	for _, name := range r.running() {
		r.stop(0, name)
	}
}

// shell runs code with bash in the example's folder, with -e: the first failing
// command fails the step.
func (r *runner) shell(code string) (string, error) { return runShell(r.dir, r.env, code) }

// runShell runs code with bash -e in dir with the environment env.
func runShell(dir string, env []string, code string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", code)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var singleCommandRE = regexp.MustCompile(`^(?:[A-Z_]+=\S*\s+)*[./a-z]`)

func (r *runner) start(s step, code string) {
	t := r.t
	if _, dup := r.bg[s.name]; dup {
		t.Fatalf("README.md:%d: background %q started twice", s.line, s.name)
	}
	body := strings.TrimSpace(stripComments(code))
	execed := false
	if !strings.Contains(body, "\n") && singleCommandRE.MatchString(body) {
		// One command: exec it, so that the signal reaches it and its exit code is
		// the step's, as in a terminal.
		body, execed = execPrefix(body), true
	}
	cmd := exec.Command("bash", "-e", "-c", body)
	cmd.Dir, cmd.Env = r.dir, r.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &bgProc{name: s.name, code: body, cmd: cmd, log: &lockedFile{}, done: make(chan struct{}), execed: execed}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("README.md:%d: start %s: %v", s.line, s.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	r.mu.Lock()
	r.bg[s.name] = p
	r.ran[s.name] = time.Now()
	r.mu.Unlock()
	t.Logf("README.md:%d: started %s in the background: %s", s.line, s.name, body)
}

// execPrefix puts exec after the leading VAR=value assignments of a command.
func execPrefix(cmd string) string {
	f := strings.Fields(cmd)
	i := 0
	for i < len(f) && regexp.MustCompile(`^[A-Z_]+=`).MatchString(f[i]) {
		i++
	}
	return strings.Join(append(append(f[:i:i], "exec"), f[i:]...), " ")
}

func stripComments(code string) string {
	var keep []string
	for _, l := range strings.Split(code, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func (r *runner) wait(s step) {
	t := r.t
	c, ok := r.checks[s.name]
	if !ok {
		t.Fatalf("README.md:%d: no check %q in the example's test", s.line, s.name)
	}
	r.used[s.name] = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	for {
		err := c(ctx, r)
		if err == nil {
			t.Logf("README.md:%d: %s holds after %s", s.line, s.name, time.Since(start).Round(time.Millisecond))
			return
		}
		var fatal fatalError
		if errors.As(err, &fatal) {
			t.Fatalf("README.md:%d: %s: %v\n%s", s.line, s.name, err, r.bgLogs())
		}
		// A background process that died fails the wait at once.
		for _, p := range r.procs() {
			select {
			case <-p.done:
				if !p.stopped && p.err != nil && !r.exitsOK[p.name] {
					t.Fatalf("README.md:%d: while waiting for %s, %s ended: %v\n%s", s.line, s.name, p.name, p.err, r.bgLogs())
				}
			default:
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("README.md:%d: %s does not hold after %s: %v\n%s", s.line, s.name, time.Since(start).Round(time.Millisecond), err, r.bgLogs())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// do runs the action of a do step once.
func (r *runner) do(s step) {
	t := r.t
	action, ok := r.checks[s.name]
	if !ok {
		t.Fatalf("README.md:%d: no action %q in the test", s.line, s.name)
	}
	r.used[s.name] = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := action(ctx, r); err != nil {
		t.Fatalf("README.md:%d: %s: %v\n%s", s.line, s.name, err, r.bgLogs())
	}
	t.Logf("README.md:%d: did %s", s.line, s.name)
}

// fatalError makes a check fail at once instead of being retried.
type fatalError struct{ error }

func fatalf(format string, args ...any) error { return fatalError{fmt.Errorf(format, args...)} }

func (r *runner) stop(line int, name string) {
	t := r.t
	r.mu.Lock()
	p := r.bg[name]
	r.mu.Unlock()
	if p == nil {
		t.Fatalf("README.md:%d: stop %s: no such background command", line, name)
	}
	p.stopped = true
	sig := "SIGTERM"
	if strings.Contains(p.code, "go run") {
		// Ctrl+C in a terminal: SIGINT for the whole process group. go run passes it
		// on to the program by letting it through, and exits with its code.
		sig = "Ctrl+C"
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	} else if p.execed {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	} else {
		// A script: its commands get the signal, as from a terminal's kill of the group.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Fatalf("README.md:%d: %s did not stop within 45s of %s\n%s", line, name, sig, p.log.String())
	}
	if p.err != nil && !(sig == "Ctrl+C" && goRunInterrupted(p)) {
		t.Fatalf("README.md:%d: %s after %s: %v\n%s", line, name, sig, p.err, p.log.String())
	}
	r.mu.Lock()
	delete(r.bg, name)
	r.mu.Unlock()
	r.keepLog(p)
	t.Logf("README.md:%d: %s stopped with %s after %s; exit 0", line, name, sig, time.Since(r.ran[name]).Round(time.Millisecond))
}

func (r *runner) exits(s step) {
	t := r.t
	r.mu.Lock()
	p := r.bg[s.name]
	if p != nil {
		p.stopped = true
	}
	r.mu.Unlock()
	if p == nil {
		t.Fatalf("README.md:%d: exits %s: no such background command", s.line, s.name)
	}
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		t.Fatalf("README.md:%d: %s still runs 45s later; expected it to exit with %d\n%s", s.line, s.name, s.exit, p.log.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != s.exit {
		t.Fatalf("README.md:%d: %s exited with %d, want %d\n%s", s.line, s.name, code, s.exit, p.log.String())
	}
	r.mu.Lock()
	delete(r.bg, s.name)
	r.mu.Unlock()
	r.keepLog(p)
	t.Logf("README.md:%d: %s exited by itself with %d", s.line, s.name, s.exit)
}

// goRunInterrupted reports whether p, a go run stopped with Ctrl+C, ended as a program
// that exited 0: go run itself then exits 1 (it was interrupted), but prints no
// "exit status N" line, which it does when the program fails.
func goRunInterrupted(p *bgProc) bool {
	return p.cmd.ProcessState.ExitCode() == 1 && !regexp.MustCompile(`(?m)^exit status \d+$`).MatchString(p.log.String())
}

// keepLog keeps the output of a background command that ended.
func (r *runner) keepLog(p *bgProc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended == nil {
		r.ended = map[string]string{}
	}
	r.ended[p.name] = p.log.String()
}

func (r *runner) procs() []*bgProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []*bgProc
	for _, p := range r.bg {
		ps = append(ps, p)
	}
	return ps
}

func (r *runner) running() []string {
	var names []string
	for _, p := range r.procs() {
		names = append(names, p.name)
	}
	return names
}

// logOf returns the output of a background command, running or ended.
func (r *runner) logOf(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.bg[name]; p != nil {
		return p.log.String()
	}
	return r.ended[name]
}

// lastOutput is the output of the last run step.
func (r *runner) lastOutput() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.outputs) == 0 {
		return ""
	}
	return r.outputs[len(r.outputs)-1]
}

func (r *runner) bgLogs() string {
	var b strings.Builder
	for _, p := range r.procs() {
		fmt.Fprintf(&b, "--- %s (%s):\n%s", p.name, p.code, lastLines(p.log.String(), 40))
	}
	return b.String()
}

func (r *runner) killAll() {
	for _, p := range r.procs() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

func indent(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		b.WriteString("    " + sc.Text() + "\n")
	}
	return b.String()
}

// count runs a query returning one integer.
func (r *runner) count(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := r.pool.QueryRow(ctx, query, args...).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// logRecords parses the text log lines of slog (key=value or key="quoted value") in
// out; other lines are ignored.
func logRecords(out string) []map[string]string {
	var recs []map[string]string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "time=") {
			continue
		}
		rec := map[string]string{}
		for s := line; s != ""; {
			s = strings.TrimLeft(s, " ")
			k, rest, ok := strings.Cut(s, "=")
			if !ok {
				break
			}
			var v string
			if strings.HasPrefix(rest, `"`) {
				q, err := strconv.QuotedPrefix(rest)
				if err != nil {
					break
				}
				v, _ = strconv.Unquote(q)
				rest = rest[len(q):]
			} else {
				v, rest, _ = strings.Cut(rest, " ")
			}
			rec[k] = v
			s = rest
		}
		recs = append(recs, rec)
	}
	return recs
}

// findLogs returns the records with message msg whose attributes include want
// (given as key, value pairs).
func findLogs(out, msg string, want ...string) []map[string]string {
	var found []map[string]string
next:
	for _, rec := range logRecords(out) {
		if rec["msg"] != msg {
			continue
		}
		for i := 0; i+1 < len(want); i += 2 {
			if rec[want[i]] != want[i+1] {
				continue next
			}
		}
		found = append(found, rec)
	}
	return found
}

// TestReadmes checks, without running anything, that every example's README (each
// of its walk-throughs, if it has some) parses into steps, applies every migration and
// stops what it starts in the background, and that no file of the examples relies on
// a container runtime.
func TestReadmes(t *testing.T) {
	readmes, err := filepath.Glob(filepath.Join("*", "README.md"))
	if err != nil || len(readmes) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, readme := range readmes {
		name := filepath.Dir(readme)
		steps, err := parseReadme(readme)
		if err != nil {
			t.Error(err)
			continue
		}
		names, byWalk := walkthroughs(steps)
		parts := map[string][]step{"README.md": steps}
		if len(names) > 0 {
			parts = map[string][]step{}
			for _, n := range names {
				parts["README.md, walk-through "+n] = byWalk[n]
			}
		}
		files, _ := filepath.Glob(filepath.Join(name, "sql", "migrations", "*.sql"))
		if m := regexp.MustCompile(`esgen migrate -C (\.\./[\w-]+)`).FindStringSubmatch(readmeCode(steps)); len(files) == 0 && m != nil {
			// An example that deploys another one's projection applies its migrations.
			files, _ = filepath.Glob(filepath.Join(name, m[1], "sql", "migrations", "*.sql"))
		}
		if len(files) < 3 {
			t.Errorf("%s: %d migrations; want esgen's and the read model's", name, len(files))
		}
		for part, steps := range parts {
			checkReadmePart(t, name+"/"+part, steps, files)
		}
	}
	for path, b := range exampleFiles(t, ".") {
		if strings.Contains(strings.ToLower(string(b)), "dock"+"er") {
			t.Errorf("%s mentions Dock"+"er", path)
		}
	}
}

// readmeCode returns the shell code of every step, run or skipped.
func readmeCode(steps []step) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString(s.code)
	}
	return b.String()
}

// exampleFiles returns the content of every file under dir, by path, but those in
// bin/ folders (the programs the READMEs build).
func exampleFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if err == nil && d.Name() == "bin" {
				return filepath.SkipDir
			}
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkReadmePart checks the steps of a README, or of one of its walk-throughs: some
// commands, background commands that are stopped, and every migration, esgen's (a
// new one appears with go generate) and the read model's, applied by esgen migrate or
// by its psql command.
func checkReadmePart(t *testing.T, part string, steps []step, migrations []string) {
	t.Helper()
	running := map[string]bool{}
	runs := 0
	for _, s := range steps {
		switch s.kind {
		case "run":
			runs++
		case "background":
			running[s.name] = true
		case "stop", "exits":
			if !running[s.name] {
				t.Errorf("%s:%d: %s %s, which does not run", part, s.line, s.kind, s.name)
			}
			delete(running, s.name)
		}
	}
	if runs == 0 || len(steps) < 4 {
		t.Errorf("%s: %d steps, %d commands", part, len(steps), runs)
	}
	for n := range running {
		t.Errorf("%s: %s is started in the background but never stopped", part, n)
	}
	var psql string
	for _, s := range steps {
		if s.kind == "run" && strings.Contains(s.code, "esgen migrate") {
			return // esgen's migrations and the example's own, in one command
		}
		if s.kind == "run" && strings.Contains(s.code, "psql") && strings.Contains(s.code, "ON_ERROR_STOP") {
			psql += s.code
		}
	}
	for _, f := range migrations {
		if !strings.Contains(psql, "-f sql/migrations/"+filepath.Base(f)) {
			t.Errorf("%s applies %s neither with esgen migrate nor with psql", part, f)
		}
	}
}

func TestParseReadmeDirectives(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "README.md")
	readme := "text\n<!-- test: skip -->\n```sh\nexport X=1\n```\n```sh\necho a\n```\n```text\nnot run\n```\n" +
		"<!-- test: background p -->\n```sh\n./bin/p --flag\n```\n<!-- test: wait ok -->\n<!-- test: exits p 1 -->\n"
	if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
		t.Fatal(err)
	}
	steps, err := parseReadme(path)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, s := range steps {
		got += fmt.Sprintf("%s:%s:%q:%d;", s.kind, s.name, s.code, s.exit)
	}
	want := `skip::"export X=1\n":0;run::"echo a\n":0;background:p:"./bin/p --flag\n":0;wait:ok:"":0;exits:p:"":1;`
	if got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
	readme = "```sh\ngo build\n```\n<!-- test: walkthrough one -->\n```sh\necho 1\n```\n<!-- test: wait ok -->\n" +
		"<!-- test: walkthrough two -->\n<!-- test: background p -->\n```sh\n./bin/p\n```\n<!-- test: stop p -->\n"
	if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
		t.Fatal(err)
	}
	if steps, err = parseReadme(path); err != nil {
		t.Fatal(err)
	}
	names, byWalk := walkthroughs(steps)
	got = fmt.Sprint(names) + ";"
	for _, n := range []string{"", "one", "two"} {
		for _, s := range byWalk[n] {
			got += fmt.Sprintf("%s:%s:%s:%d;", n, s.kind, s.name, s.line)
		}
	}
	if want := "[one two];:run::1;one:run::5;one:wait:ok:8;two:background:p:10;two:stop:p:14;"; got != want {
		t.Errorf("walk-throughs:\n got %s\nwant %s", got, want)
	}
	for _, bad := range []string{
		"<!-- test: fly -->\n",
		"<!-- test: walkthrough -->\n",
		"<!-- test: walkthrough a -->\n```sh\necho\n```\n<!-- test: walkthrough a -->\n",
		"<!-- test: background p -->\n```sh\n./bin/p\n```\n<!-- test: walkthrough a -->\n<!-- test: stop p -->\n",
		"<!-- test: background p -->\n```text\nx\n```\n",
		"<!-- test: background p -->\n",
		"```sh\necho never closed\n",
		"<!-- test: exits p x -->\n",
	} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := parseReadme(path); err == nil {
			t.Errorf("parseReadme accepts %q", bad)
		}
	}
	if got := execPrefix("A=1 B=x ./bin/p --k=1"); got != "A=1 B=x exec ./bin/p --k=1" {
		t.Errorf("execPrefix = %q", got)
	}
}
