package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tandem-run/tandem/internal/sidecarflag"
)

// flagSet is the sidecar's command line while it is parsed: the flag
// package's set, whose numbers are checked against their bounds as they are
// parsed, and once it is parsed, the flags given.
type flagSet struct {
	*flag.FlagSet
	// refused keeps the first refusal of a checked number: the flag
	// package rewords the errors of Set.
	refused error
	given   map[string]bool
}

func newFlagSet() *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("sidecar", flag.ContinueOnError)}
	fs.SetOutput(io.Discard)
	return fs
}

// int defines the flag name, a number within r, and def when not given.
func (fs *flagSet) int(p *int, name string, def int, r sidecarflag.Int, usage string) {
	*p = def
	fs.Var(&intFlag{p: p, name: name, r: r, refused: &fs.refused}, name, usage+"; accepted: "+r.Accepted)
}

// parse parses args. An empty argument is skipped, and parsing goes on
// after it: the Dapr CLI passes one where it blanked a flag it takes the
// runtime not to know (--scheduler-host-address, for a runtime version
// before 1.14), and leaves that flag's value after it, which is skipped too
// and returned in blanked. --help is a usageError with the flags' list.
func (fs *flagSet) parse(args []string) (blanked []string, err error) {
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				var b strings.Builder
				b.WriteString("Usage: sidecar --app-id ID [--app-port PORT] [flags]\n\n")
				fs.SetOutput(&b)
				fs.PrintDefaults()
				return nil, &usageError{b.String()}
			}
			if fs.refused != nil {
				return nil, fs.refused
			}
			return nil, flagError(err)
		}
		if rest = fs.Args(); len(rest) == 0 {
			break
		}
		if rest[0] != "" {
			return nil, fmt.Errorf("unexpected argument %q: every option is a flag (--name value)", rest[0])
		}
		if rest = rest[1:]; len(rest) > 0 && rest[0] != "" && !strings.HasPrefix(rest[0], "-") {
			blanked, rest = append(blanked, rest[0]), rest[1:]
		}
	}
	fs.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { fs.given[f.Name] = true })
	return blanked, nil
}

// intFlag is a numeric flag checked against its bounds as it is parsed.
type intFlag struct {
	p       *int
	name    string
	r       sidecarflag.Int
	refused *error
}

func (f *intFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	return strconv.Itoa(*f.p)
}

func (f *intFlag) Set(s string) error {
	n, err := f.r.Parse("--"+f.name, s)
	if err != nil {
		if *f.refused == nil {
			*f.refused = err
		}
		return err
	}
	*f.p = n
	return nil
}

// usageError carries the text asked for with --help or --version, which
// main prints before it exits without running.
type usageError struct{ text string }

func (e *usageError) Error() string { return e.text }

// flagError rewrites the flag package's errors so they name the flag and say
// what to do.
func flagError(err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, "flag provided but not defined: ") {
		return fmt.Errorf("unknown flag %s; run with --help for the list", strings.TrimPrefix(msg, "flag provided but not defined: "))
	}
	return err
}
