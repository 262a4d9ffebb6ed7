package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
)

// flagSet is a command's flag set. -h (or esgen help <command>) prints the command's
// usage on stdout; a bad flag is a usage error (exit code 2) that names esgen help.
type flagSet struct {
	*flag.FlagSet
	usage  string
	stdout io.Writer
}

// newFlags returns the flag set of command name; usage is its text before the flags
// (the usage line, a blank line, what it does).
func newFlags(name, usage string, stdout io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, usage: usage, stdout: stdout}
}

// parse parses args; with -h it prints the usage on stdout and returns flag.ErrHelp.
func (f *flagSet) parse(args []string) error {
	err := f.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		f.printUsage(f.stdout)
		return err
	}
	if err != nil {
		return usageError{fmt.Errorf("%v (esgen help %s shows the flags)", err, f.Name())}
	}
	return nil
}

// parseInterspersed parses flags before and after the positional arguments, which it
// returns.
func (f *flagSet) parseInterspersed(args []string) ([]string, error) {
	if err := f.parse(args); err != nil {
		return nil, err
	}
	var rest []string
	for f.NArg() > 0 {
		rest = append(rest, f.Arg(0))
		if err := f.parse(f.Args()[1:]); err != nil {
			return nil, err
		}
	}
	return rest, nil
}

func (f *flagSet) printUsage(w io.Writer) {
	fmt.Fprintln(w, f.usage)
	fmt.Fprintln(w)
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
}

// databaseFlag adds --database. Its default is DATABASE_URL, read when the command
// runs (see databaseURL), so that -h never prints the URL and its password.
func databaseFlag(fs *flagSet) *string {
	return fs.String("database", "", "PostgreSQL connection URL (default: $DATABASE_URL)")
}

// databaseURL is the --database value, or DATABASE_URL.
func databaseURL(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("DATABASE_URL")
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redact hides the password of a connection URL (or key=value string), for output.
func redact(conn string) string {
	if u, err := url.Parse(conn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsnPassword.ReplaceAllString(conn, "${1}xxxxx")
}

// hasPassword reports whether a connection URL or key=value string carries a password.
func hasPassword(conn string) bool { return redact(conn) != conn }
