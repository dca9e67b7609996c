// Package logging builds the one zerolog logger each program passes down:
// human console output on a terminal, JSON lines otherwise. It also fixes,
// once for the three programs, how values are written and named:
//
//   - a duration is written in milliseconds (a float) and its key ends in
//     "_ms" (retry_in_ms, duration_ms);
//   - one key per concept: "part" names the part of a program that logs
//     (renew, crl, route, config, api, enroll…), "data_dir" a data
//     directory, "source" the address a request or connection came from.
//
// A test walks the sources and holds every log call to these keys.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Format chooses how log lines look.
type Format string

// Log formats. FormatAuto picks console on a terminal and JSON otherwise.
const (
	FormatAuto    Format = "auto"
	FormatConsole Format = "console"
	FormatJSON    Format = "json"
)

// DurationUnit is the unit every duration field is written in; keys of
// duration fields end in DurationSuffix.
const (
	DurationUnit   = time.Millisecond
	DurationSuffix = "_ms"
)

func init() {
	// zerolog keeps these as package variables; they are set here, once,
	// for every program (all three build their logger with New).
	zerolog.DurationFieldUnit = DurationUnit
	zerolog.DurationFieldInteger = false
}

// Options configure New.
type Options struct {
	Format Format
	Level  string // trace, debug, info (default), warn, error
	Out    io.Writer
}

// New returns a logger writing to opts.Out (stderr by default).
func New(opts Options) (zerolog.Logger, error) {
	out := opts.Out
	if out == nil {
		out = os.Stderr
	}
	lvl := zerolog.InfoLevel
	if opts.Level != "" {
		l, err := zerolog.ParseLevel(opts.Level)
		if err != nil {
			return zerolog.Nop(), fmt.Errorf("log level %q: %w", opts.Level, err)
		}
		lvl = l
	}
	format := opts.Format
	if format == "" || format == FormatAuto {
		format = FormatJSON
		if f, ok := out.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = FormatConsole
		}
	}
	switch format {
	case FormatConsole:
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	case FormatJSON:
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want auto, console or json", opts.Format)
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}
