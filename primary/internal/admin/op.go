package admin

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// Op is one admin operation, declared once in the command table (ops.go).
// Every front end is generated from it and dispatches through it: the
// admin socket (Server.Do) and the hostcert-primary command line (package
// cli); the web console is meant to be the next one.
//
// Its arguments are a struct A whose fields carry their own declaration:
//
//	json:"name"              the wire name (json:"-": a front-end-only option, e.g. --pem)
//	arg:"NAME"               a positional argument (a []string field: NAME..., one or more)
//	arg:"NAME,optional"      an optional positional argument
//	flag:"name"              a flag --name
//	default:"24h"            its default, applied by every front end and by the server
//	                         to a request that leaves the field out
//	help:"..."               its help text
//	internal:"..."           filled in by the front end itself, never by the operator
//	                         (e.g. the CSR of a key the CLI generates); the text says what
//
// A *A with a Check() error method is checked by the front end before it
// sends the request and by the server before the handler runs. A paged
// operation's arguments have After (the key of the last row already seen)
// and Limit (rows per page) fields; its result is a slice, and an empty
// page is the end.
type Op struct {
	Name  string // wire name; the CLI path is the name split at '.' ("host.allow-reissue": host allow-reissue)
	Use   string // CLI usage after the command's own name ("NAME|HOSTID [--for 48h]")
	Short string // one line of help
	Long  string // more help (optional)
	// Mutates: the operation changes state. It is then Audited too (a
	// test over the table checks it); the console is to accept it only as
	// a POST with a CSRF token.
	Mutates bool
	// Audited: the handler writes an audit row with Action = Name when it
	// succeeds (in the transaction of its change, if any). When an
	// operation that Mutates fails, the server writes one with outcome
	// "error". Audits says what the row records, for the documentation.
	Audited bool
	Audits  string
	Paged   bool

	args, result reflect.Type
	run          func(s *Server, ctx context.Context, c *Call, args any) (any, error)
	text         func(o Output, args, res any) error
	pageKey      func(res any) (n int, last string)
}

// Call is what a handler knows of the request besides its arguments.
type Call struct {
	Actor string
	Now   time.Time
	// Audit is the row an audited handler writes: At, Actor, Action,
	// Outcome "ok" and an empty Detail filled in; the handler adds the
	// names, IDs and facts of the change.
	Audit store.Audit
}

// Output is where a text rendering goes. First is set for the first page
// of a paged listing (print the header then).
type Output struct {
	Out, Err io.Writer
	First    bool
}

// define builds a table entry from its typed handler and text rendering
// (nil: the front end prints JSON).
func define[A, R any](o Op, run func(s *Server, ctx context.Context, c *Call, a *A) (R, error), text func(o Output, a *A, r R) error) *Op {
	o.args = reflect.TypeFor[A]()
	o.result = reflect.TypeFor[R]()
	o.run = func(s *Server, ctx context.Context, c *Call, args any) (any, error) {
		return run(s, ctx, c, args.(*A))
	}
	if text != nil {
		o.text = func(out Output, args, res any) error { return text(out, args.(*A), res.(R)) }
	}
	return &o
}

// paged marks o as paged; key gives a page's length and the key of its
// last row (what After takes next).
func paged[R any](o *Op, key func(r R) (int, string)) *Op {
	o.Paged = true
	o.pageKey = func(res any) (int, string) { return key(res.(R)) }
	return o
}

// Path is the CLI path of the operation.
func (o *Op) Path() []string { return strings.Split(o.Name, ".") }

// NewArgs returns a new *A with its defaults applied.
func (o *Op) NewArgs() any {
	p := reflect.New(o.args)
	if err := applyDefaults(p.Elem()); err != nil {
		panic(fmt.Sprintf("admin: %s: %v", o.Name, err)) // a table error: TestTable catches it
	}
	return p.Interface()
}

// NewResult returns a new *R to decode an answer into.
func (o *Op) NewResult() any { return reflect.New(o.result).Interface() }

// Check runs the arguments' own checks (a no-op when they have none).
func (o *Op) Check(args any) error {
	if c, ok := args.(interface{ Check() error }); ok {
		return c.Check()
	}
	return nil
}

// HasText reports whether the operation has a text rendering.
func (o *Op) HasText() bool { return o.text != nil }

// Text renders a result (res: *R or R) for a terminal.
func (o *Op) Text(out Output, args, res any) error {
	return o.text(out, args, deref(res))
}

// PageSize sets how many rows the next call of a paged operation asks for.
func (o *Op) PageSize(args any, n int) {
	reflect.ValueOf(args).Elem().FieldByName("Limit").SetInt(int64(n))
}

// Advance moves the arguments of a paged operation past the page res and
// returns how many rows it held (0: the listing is over).
func (o *Op) Advance(args, res any) (int, error) {
	n, last := o.pageKey(deref(res))
	if n == 0 {
		return 0, nil
	}
	return n, setField(reflect.ValueOf(args).Elem().FieldByName("After"), last)
}

func deref(v any) any {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer {
		return rv.Elem().Interface()
	}
	return v
}

// decode reads a request's arguments: defaults first, then the JSON
// (unknown fields refused), then Check.
func (o *Op) decode(raw json.RawMessage) (any, error) {
	args := o.NewArgs()
	if len(raw) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(args); err != nil {
			return nil, fmt.Errorf("%s: bad arguments: %w", o.Name, err)
		}
	}
	if err := o.Check(args); err != nil {
		return nil, err
	}
	return args, nil
}

// Field is one declared argument of an operation, for a front end.
type Field struct {
	Name      string // Go field name
	Flag      string // flag name, "" for a positional argument or an internal field
	Arg       string // positional placeholder (NAME), "" for a flag
	Optional  bool   // positional: may be left out
	Variadic  bool   // positional: one or more
	Default   string
	Help      string
	FrontOnly bool // json:"-": never sent
	Internal  bool // filled in by the front end, not an operator's flag or argument
	// Path: a file the server reads or writes, which must be absolute; a
	// front end that runs on the server's machine (the CLI) makes a
	// relative one absolute from its working directory.
	Path       bool
	Type       reflect.Type
	fieldIndex []int
}

// Value is the field's value in args (a *A).
func (f Field) Value(args any) reflect.Value {
	return reflect.ValueOf(args).Elem().FieldByIndex(f.fieldIndex)
}

// Set parses s into the field (appending to a []string field).
func (f Field) Set(args any, s string) error { return setField(f.Value(args), s) }

// Fields lists the declared arguments of the operation, in order.
func (o *Op) Fields() []Field {
	var out []Field
	for i := range o.args.NumField() {
		sf := o.args.Field(i)
		f := Field{Name: sf.Name, Flag: sf.Tag.Get("flag"), Default: sf.Tag.Get("default"), Help: sf.Tag.Get("help"),
			Type: sf.Type, fieldIndex: sf.Index, FrontOnly: sf.Tag.Get("json") == "-"}
		_, f.Internal = sf.Tag.Lookup("internal")
		_, f.Path = sf.Tag.Lookup("path")
		if a, ok := sf.Tag.Lookup("arg"); ok {
			name, opt, _ := strings.Cut(a, ",")
			f.Arg, f.Optional = name, opt == "optional"
			f.Variadic = sf.Type.Kind() == reflect.Slice
		}
		out = append(out, f)
	}
	return out
}

func applyDefaults(v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		d, ok := t.Field(i).Tag.Lookup("default")
		if !ok {
			continue
		}
		if err := setField(v.Field(i), d); err != nil {
			return fmt.Errorf("default of %s: %w", t.Field(i).Name, err)
		}
	}
	return nil
}

// setField parses s into v: a string, an integer, a bool, a []string
// (appended to), or a type that reads itself (encoding.TextUnmarshaler).
func setField(v reflect.Value, s string) error {
	if tu, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return tu.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported argument type %s", v.Type())
		}
		v.Set(reflect.Append(v, reflect.ValueOf(s).Convert(v.Type().Elem())))
	default:
		return fmt.Errorf("unsupported argument type %s", v.Type())
	}
	return nil
}

// When is a point in time given as an RFC 3339 time, a date (2006-01-02,
// local time) or a duration back from now (90m, 24h, 7d). On the wire it
// is an RFC 3339 time.
type When struct{ time.Time }

// UnmarshalText parses s as of now.
func (w *When) UnmarshalText(b []byte) error {
	t, err := ParseWhen(string(b), time.Now())
	if err != nil {
		return err
	}
	w.Time = t
	return nil
}

// UnmarshalJSON reads a JSON string as UnmarshalText does.
func (w *When) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a time: %w", err)
	}
	return w.UnmarshalText([]byte(s))
}

// MarshalJSON writes an RFC 3339 time.
func (w When) MarshalJSON() ([]byte, error) { return json.Marshal(w.Time) }

// String is the flag's default in --help.
func (w When) String() string {
	if w.IsZero() {
		return ""
	}
	return w.Format(time.RFC3339)
}

// ParseWhen reads an RFC 3339 time, a date, or a duration ago ("" is the
// zero time: the beginning).
func ParseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time, a date (2006-01-02) or a duration ago (24h, 7d)", s)
	}
	return now.Add(-d), nil
}

// errNoHost is a host argument left empty.
var errNoHost = errors.New("no host given (NAME or HOSTID)")
