// Command esgen generates event-sourcing code from esgen.yaml and operates esgen's
// PostgreSQL schema and projections.
//
//	esgen init                              write a starter esgen.yaml and the go:generate line
//	esgen generate                          generate migrations, typed events, projections and stubs
//	esgen migrate                           apply esgen's migrations and the module's (--dry-run prints the SQL)
//	esgen status [projection]               checkpoints, stream head, lag, skips and rebuilds per projection
//	esgen rescale <projection> <count>      change a projection's partition count on purpose
//	esgen skip <projection> --event <id>    pass a poison event without handling it (--reason, recorded)
//	esgen rebuild <projection>              replay a projection from the start, its read model cleared
//	esgen accept-skip <projection> <Type>   let a projection handle a new event type without its earlier events
//	esgen reset <projection>                delete a projection's checkpoints (--yes to confirm)
//	esgen devdb                             run a throw-away PostgreSQL and print its DATABASE_URL
//	esgen demo                              run the partitioned demo end to end
//	esgen bench                             measure esgen against PostgreSQL's raw limit
//	esgen version                           print esgen's version (also --version)
//	esgen help [command]                    print this list, or a command's usage and flags
//
// esgen help <command> and esgen <command> -h print the usage on stdout and exit 0;
// a mistake in the command line exits 2, a failure 1. Database commands read
// DATABASE_URL or --database; no output shows a password.
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

	"github.com/esgen-dev/esgen/internal/buildinfo"
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
	fmt.Fprintln(w, "Run 'esgen help <command>' (or 'esgen <command> -h') for a command's usage and flags.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the process exit code: 0 done (also for -h),
// 1 failed, 2 a mistake in the command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "esgen: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "esgen %s: %v\n", name, err)
			return 2
		}
		fmt.Fprintf(stderr, "esgen %s: %v\n", name, err)
		return 1
	}
	return 0
}

// runHelp implements `esgen help [command]`.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch len(args) {
	case 0:
		usage(stdout)
		return nil
	case 1:
		if args[0] == "help" {
			fmt.Fprintln(stdout, "usage: esgen help [command]\n\nPrints the list of commands, or a command's usage and flags.")
			return nil
		}
		cmd, ok := commands[args[0]]
		if !ok {
			usage(stderr)
			return usageError{fmt.Errorf("unknown command %q", args[0])}
		}
		return cmd.run(ctx, []string{"-h"}, stdout, stderr)
	default:
		return usageError{fmt.Errorf("name one command: esgen help <command>")}
	}
}

// runVersion implements `esgen version` and `esgen --version`.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "usage: esgen version\n\nPrints esgen's module version and the version control information of its build.", stdout)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	fmt.Fprintf(stdout, "esgen %s\n", buildinfo.Read())
	return nil
}

// usageError is an error in the command line (exit code 2).
type usageError struct{ error }

func init() {
	register("generate", "generate code from esgen.yaml", runGenerate)
	register("init", "write a starter esgen.yaml", runInit)
	register("help", "print the commands, or a command's usage and flags", runHelp)
	register("version", "print esgen's version and build information (also --version)", runVersion)
}
