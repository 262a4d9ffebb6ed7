// Command esgen generates event-sourcing code from esgen.yaml and operates esgen's
// PostgreSQL schema and projections.
//
//	esgen init                  write a starter esgen.yaml and the go:generate line
//	esgen generate              generate migrations, typed events, projections and stubs
//	esgen migrate               apply esgen's migrations and the module's (--dry-run prints the SQL)
//	esgen status                checkpoints, stream head and lag per projection partition
//	esgen reset <projection>    delete a projection's checkpoints (--yes to confirm)
//	esgen rebuild <projection>  replay a projection from the start, its read model cleared
//	esgen accept-skip <p> <T>   let a projection handle a new event type without its earlier events
//	esgen demo                  run the partitioned demo end to end
//	esgen bench                 measure esgen against PostgreSQL's raw limit
//
// Every command takes -h for its flags. Database commands read DATABASE_URL or --database.
//
// The command is thin: it parses flags and calls the packages that do the work (gen,
// migrate, projection, internal/demo, internal/bench). It must not hold SQL, the
// runtime's logic or the generator's rules itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

type command struct {
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	summary string
}

// commands is filled by the files of this package, one per command.
var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	commands[name] = command{run: run, summary: summary}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: esgen <command> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'esgen <command> -h' for a command's flags.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "esgen: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "esgen %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "esgen %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is an error in the command line (exit code 2).
type usageError struct{ error }

func init() {
	register("generate", "generate code from esgen.yaml", runGenerate)
	register("init", "write a starter esgen.yaml", runInit)
}
