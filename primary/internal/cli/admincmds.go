package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hostcert/hostcert/primary/internal/admin"
)

// The admin commands are generated from the admin package's command
// table: one cobra command per operation, at the path its name spells
// (host.allow-reissue: host allow-reissue), with its positional arguments,
// flags, defaults and help, checked by the operation's own Check before it
// is sent. Paged operations page through the server's answer (--limit N
// stops after N rows). Only host import is written here: it streams a file
// through host.add in batches.

// adminCmds builds every admin command, grouped by the first word.
func adminCmds() []*cobra.Command {
	var out []*cobra.Command
	groups := map[string]*cobra.Command{}
	for _, op := range admin.Ops() {
		path := op.Path()
		leaf := opCommand(op, path[len(path)-1])
		if len(path) == 1 {
			out = append(out, leaf)
			continue
		}
		g := groups[path[0]]
		if g == nil {
			g = &cobra.Command{Use: path[0], Short: admin.Groups[path[0]]}
			groups[path[0]] = g
			out = append(out, g)
		}
		g.AddCommand(leaf)
	}
	groups["host"].AddCommand(hostImportCmd())
	// The mappings are documented as "host mapping ..."; the top-level
	// "mapping ..." stays as an alias, hidden from the help.
	hm := &cobra.Command{Use: "mapping", Short: admin.Groups["mapping"]}
	for _, op := range admin.Ops() {
		if path := op.Path(); len(path) == 2 && path[0] == "mapping" {
			hm.AddCommand(opCommand(op, path[1]))
		}
	}
	groups["host"].AddCommand(hm)
	groups["mapping"].Hidden = true
	groups["mapping"].Short += ` (alias of "host mapping")`
	return out
}

// opCommand builds the command of one operation.
func opCommand(op *admin.Op, name string) *cobra.Command {
	args := op.NewArgs()
	fields := op.Fields()
	var positional []admin.Field
	for _, f := range fields {
		if f.Arg != "" {
			positional = append(positional, f)
		}
	}
	use := name
	if op.Use != "" {
		use += " " + op.Use
	} else {
		for _, f := range positional {
			use += " " + f.Arg
		}
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: op.Short,
		Long:  op.Long,
		Args:  positionalArgs(positional),
	}
	if op.Audited {
		cmd.Long = strings.TrimSpace(cmd.Long + "\n\nAudited: " + op.Audits + ".")
		if !strings.Contains(cmd.Long, "\n") {
			cmd.Long = op.Short + ".\n\n" + cmd.Long
		}
	}
	for _, f := range fields {
		if f.Flag == "" {
			continue
		}
		fl := cmd.Flags().VarPF(fieldValue{f, args}, f.Flag, "", f.Help)
		if f.Type.Kind() == reflect.Bool {
			fl.NoOptDefVal = "true"
		}
	}
	var limit int
	if op.Paged {
		cmd.Flags().IntVar(&limit, "limit", 0, "stop after this many rows (0: all)")
	}
	addJSON(cmd)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		if err := setPositional(args, positional, argv); err != nil {
			return err
		}
		if err := absPaths(args, fields); err != nil {
			return err
		}
		var after func(res any) error
		if l := locals[op.Name]; l != nil {
			var err error
			if after, err = l(cmd, args); err != nil {
				return err
			}
		}
		if err := op.Check(args); err != nil {
			return err
		}
		if op.Paged {
			return runPaged(cmd, op, args, limit)
		}
		res := op.NewResult()
		if err := call(cmd, op.Name, args, res); err != nil {
			return err
		}
		if after != nil {
			if err := after(res); err != nil {
				return err
			}
		}
		if wantJSON(cmd) || !op.HasText() {
			return printJSON(cmd, res)
		}
		return op.Text(admin.Output{Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr(), First: true}, args, res)
	}
	return cmd
}

// absPaths makes the path arguments absolute: the CLI runs on the
// server's machine, so a path relative to the operator's working directory
// names the file the server is to read or write.
func absPaths(args any, fields []admin.Field) error {
	for _, f := range fields {
		v := f.Value(args)
		if !f.Path || v.Kind() != reflect.String || v.String() == "" {
			continue
		}
		abs, err := filepath.Abs(v.String())
		if err != nil {
			return fmt.Errorf("--%s %s: %w", f.Flag, v.String(), err)
		}
		v.SetString(abs)
	}
	return nil
}

// runPaged calls a paged operation until the server answers an empty page
// or limit rows (0: no limit) are printed, streaming the rows: one JSON
// array, or table rows under one header.
func runPaged(cmd *cobra.Command, op *admin.Op, args any, limit int) error {
	if limit < 0 {
		return fmt.Errorf("--limit %d: want 0 (all rows) or a positive number", limit)
	}
	out := cmd.OutOrStdout()
	asJSON := wantJSON(cmd)
	if asJSON {
		fmt.Fprint(out, "[")
	}
	n := 0
	for limit == 0 || n < limit {
		page := admin.MaxPageRows
		if limit > 0 {
			page = min(page, limit-n)
		}
		op.PageSize(args, page)
		res := op.NewResult()
		if err := call(cmd, op.Name, args, res); err != nil {
			return err
		}
		got, err := op.Advance(args, res)
		if err != nil {
			return err
		}
		if got == 0 {
			break
		}
		if limit > 0 && n+got > limit { // a server that ignored the page size
			got = limit - n
			reflect.ValueOf(res).Elem().SetLen(got)
		}
		if asJSON {
			err = printJSONElems(out, res, n == 0)
		} else {
			err = op.Text(admin.Output{Out: out, Err: cmd.ErrOrStderr(), First: n == 0}, args, res)
		}
		if err != nil {
			return err
		}
		n += got
	}
	if asJSON {
		if n > 0 {
			fmt.Fprint(out, "\n")
		}
		_, err := fmt.Fprintln(out, "]")
		return err
	}
	if n == 0 { // the header alone
		return op.Text(admin.Output{Out: out, Err: cmd.ErrOrStderr(), First: true}, args, op.NewResult())
	}
	return nil
}

// printJSONElems prints the elements of the slice *res as elements of a
// JSON array (first: no leading comma).
func printJSONElems(out io.Writer, res any, first bool) error {
	v := reflect.ValueOf(res).Elem()
	for i := range v.Len() {
		b, err := json.MarshalIndent(v.Index(i).Interface(), "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if first && i == 0 {
			sep = "\n  "
		}
		if _, err := fmt.Fprint(out, sep, string(b)); err != nil {
			return err
		}
	}
	return nil
}

// positionalArgs checks the number of positional arguments.
func positionalArgs(fields []admin.Field) cobra.PositionalArgs {
	minN, maxN := 0, 0
	for _, f := range fields {
		switch {
		case f.Variadic:
			if !f.Optional {
				minN++
			}
			maxN = -1
		case f.Optional:
			if maxN >= 0 {
				maxN++
			}
		default:
			minN++
			if maxN >= 0 {
				maxN++
			}
		}
	}
	switch {
	case maxN < 0:
		return cobra.MinimumNArgs(minN)
	case minN == maxN:
		return cobra.ExactArgs(minN)
	default:
		return cobra.RangeArgs(minN, maxN)
	}
}

func setPositional(args any, fields []admin.Field, argv []string) error {
	for _, f := range fields {
		if len(argv) == 0 {
			break
		}
		n := 1
		if f.Variadic {
			n = len(argv)
		}
		for _, a := range argv[:n] {
			if err := f.Set(args, a); err != nil {
				return fmt.Errorf("%s: %w", f.Arg, err)
			}
		}
		argv = argv[n:]
	}
	return nil
}

// fieldValue is an argument field as a pflag.Value.
type fieldValue struct {
	f    admin.Field
	args any
}

var _ pflag.Value = fieldValue{}

func (v fieldValue) String() string {
	if v.args == nil {
		return ""
	}
	rv := v.f.Value(v.args)
	if rv.Kind() == reflect.Slice {
		if rv.Len() == 0 {
			return ""
		}
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = rv.Index(i).String()
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	if rv.IsZero() && v.f.Default == "" {
		return ""
	}
	if v.f.Default != "" {
		return v.f.Default
	}
	return fmt.Sprint(rv.Interface())
}

func (v fieldValue) Set(s string) error { return v.f.Set(v.args, s) }

func (v fieldValue) Type() string {
	switch v.f.Type.Kind() {
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Slice:
		return "stringArray"
	}
	return "string"
}

func hostImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "add every name of a file (one per line, or separated by spaces or commas; # comments; - for stdin)",
		Long: `import adds every name of FILE to the registry through host.add, in batches
(one per line, or separated by spaces or commas; # starts a comment; - reads
standard input). A regular file is checked whole first: a bad name anywhere
imports nothing.

Audited: one host.add row per batch.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := importHosts(cmd, args[0])
			if err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, r)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "added %d of %d names (the others were already known)\n", r.Added, r.Total)
			return err
		},
	}
	addJSON(cmd)
	return cmd
}
