package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// WorkerEnv, set in the environment to a JSON catch-up spec, makes
// RunWorkerIfRequested run one catch-up worker instead of the program.
const WorkerEnv = "ESGEN_BENCH_WORKER"

// workerResult is what a worker prints when it is done.
type workerResult struct {
	Events  int64 `json:"events"`
	StartNs int64 `json:"start_ns"` // unix time when it got "go"
	EndNs   int64 `json:"end_ns"`   // unix time when projection.Run returned
	// PeakRSS is the worker's own peak resident set size (VmHWM of /proc/self/status;
	// 0 where there is none), read when it is done.
	PeakRSS uint64 `json:"peak_rss_bytes,omitempty"`
	Error   string `json:"error,omitempty"`
}

// peakRSS returns this process's peak resident set size, VmHWM in /proc/self/status
// (0 where there is none). A parent's rusage of its child (ru_maxrss from wait4) is
// not that: on Linux it can count the parent's own size, copied into the child
// between fork and exec.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// RunWorkerIfRequested runs a catch-up worker and exits when WorkerEnv is set, and
// returns at once otherwise. Call it first thing in main (or TestMain) of a binary
// that runs the benchmarks.
func RunWorkerIfRequested() {
	runProjectorIfRequested()
	specJSON := os.Getenv(WorkerEnv)
	if specJSON == "" {
		return
	}
	os.Exit(WorkerMain(context.Background(), specJSON, os.Stdin, os.Stdout))
}

// WorkerMain is a catch-up worker process: it connects, prints "ready", waits for a
// line on in, runs the spec's partitions with projection.Run until they have handled
// the spec's target and prints a JSON result. It returns the exit code.
func WorkerMain(ctx context.Context, specJSON string, in io.Reader, out io.Writer) int {
	var spec catchUpSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintf(out, "%s\n", mustJSON(workerResult{Error: fmt.Sprintf("bad %s: %v", WorkerEnv, err)}))
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(out, "%s\n", mustJSON(workerResult{Error: err.Error()}))
		return 1
	}
	pool, err := newPool(ctx, spec.Database, int32(len(spec.Partitions)+2))
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fail(err)
	}
	fmt.Fprintln(out, "ready")
	if _, err := bufio.NewReader(in).ReadString('\n'); err != nil {
		return fail(fmt.Errorf("waiting for go: %w", err))
	}
	start := time.Now()
	n, elapsed, err := catchUp(ctx, pool, spec)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(out, "%s\n", mustJSON(workerResult{Events: n, StartNs: start.UnixNano(), EndNs: start.Add(elapsed).UnixNano(), PeakRSS: peakRSS()}))
	return 0
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// processes runs one worker process per partition of spec's layout, all started
// together once every one has connected, and times them from "go" until the last one
// has handled its partition's share of spec.Target.
func (r *runner) processes(ctx context.Context, statsPool *pgxpool.Pool, spec catchUpSpec, perPartition []int64, streamLen int64) (Result, error) {
	bin := r.cfg.WorkerBinary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return Result{}, fmt.Errorf("find this binary for the worker processes: %w", err)
		}
	}
	before, err := tableReads(ctx, statsPool)
	if err != nil {
		return Result{}, err
	}
	total := len(perPartition)
	procs := make([]*workerProc, 0, total)
	defer func() {
		for _, p := range procs {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	}()
	for k := range total {
		s := spec
		s.Partitions, s.Total = []int{k}, total
		// Each worker handles its partition's share of the target.
		s.Target = max(1, (spec.Target*perPartition[k]+streamLen/2)/streamLen)
		if spec.Target == streamLen {
			s.Target = perPartition[k]
		}
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(os.Environ(), WorkerEnv+"="+string(mustJSON(s)))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return Result{}, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return Result{}, err
		}
		if err := cmd.Start(); err != nil {
			return Result{}, fmt.Errorf("start worker %s: %w", bin, err)
		}
		p := &workerProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
		procs = append(procs, p)
	}
	for k, p := range procs {
		line, err := p.out.ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			return Result{}, fmt.Errorf("worker %d did not start (is RunWorkerIfRequested called in %s?): %q %v", k, bin, strings.TrimSpace(line), err)
		}
	}
	r.resetStatements(ctx, statsPool)
	goTime := time.Now()
	for _, p := range procs {
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			return Result{}, err
		}
	}
	var handled int64
	var end time.Time
	var peak uint64 // the largest peak RSS a worker reported of itself
	var cpu time.Duration
	var errs []error
	for k, p := range procs {
		line, _ := p.out.ReadString('\n')
		werr := p.cmd.Wait()
		var res workerResult
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %q: %v (exit: %v)", k, strings.TrimSpace(line), err, werr))
			continue
		}
		if res.Error != "" || werr != nil {
			errs = append(errs, fmt.Errorf("worker %d: %s (exit: %v)", k, res.Error, werr))
			continue
		}
		handled += res.Events
		if e := time.Unix(0, res.EndNs); e.After(end) {
			end = e
		}
		peak = max(peak, res.PeakRSS)
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	elapsed := end.Sub(goTime)
	after, err := tableReads(ctx, statsPool)
	if err != nil {
		return Result{}, err
	}
	return Result{Group: GroupCatchUp, Events: handled, Seconds: elapsed.Seconds(), EventsPerSec: float64(handled) / elapsed.Seconds(),
		RowsScanned: after - before, RowsReturned: handled, PeakMemBytes: peak, ClientCPUSeconds: cpu.Seconds(),
		Server: r.serverTime(ctx, statsPool)}, nil
}
