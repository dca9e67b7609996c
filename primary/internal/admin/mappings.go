package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Host name mappings (SPEC §8): `hostcert-primary mapping
// list|approve|reject|add|remove|auto-approve|settings`. Their entries are
// in the command table (commands.go); their handlers, arguments and text
// renderings are here.

// Operations of the host name mappings.
const (
	CmdMappingList        = "mapping.list"
	CmdMappingApprove     = "mapping.approve"
	CmdMappingReject      = "mapping.reject"
	CmdMappingAdd         = "mapping.add"
	CmdMappingRemove      = "mapping.remove"
	CmdMappingAutoApprove = "mapping.auto-approve"
	CmdMappingSettings    = "mapping.settings"
)

const mappingLong = `A host ID carries one or more approved names (short name, FQDN, other
interface names); its certificates carry exactly those. A name a host asks for
(its CSR's names: the agent's name and other_names) that it does not hold yet
is a pending claim until approved (or at once with auto-approve on); the
host's next renewal after the approval carries it. A name belongs to at most
one host ID, once approved: another host asking for it is refused with
name_conflict. A pending claim owns nothing: several hosts may claim one
name (give --host to approve or reject one of them), and when the name is
approved for one host — an approval, an add, or another host's enrollment
granted by the usual decision — every other claim on it is dropped, audited.
A host holds at most 16 pending claims; a request that would leave it more
is refused with too_many_pending_names.
Removing a host's main name renames the host to its oldest other approved
name; the host ID stays.`

// NameMappings is what the mapping operations need of the store.
type NameMappings interface {
	ListMappings(ctx context.Context, f store.MappingFilter) ([]store.Mapping, error)
	AddMapping(ctx context.Context, name, hostID string, now time.Time, a store.Audit) (store.Mapping, error)
	DecideMapping(ctx context.Context, name, hostID string, approve bool, now time.Time, a store.Audit) (store.Mapping, error)
	RemoveMapping(ctx context.Context, name, hostID string, now time.Time, a store.Audit) (store.Mapping, error)
	AutoApprove(ctx context.Context) (bool, error)
	SetAutoApprove(ctx context.Context, on bool, a store.Audit) error
}

// MappingListArgs are the arguments of mapping.list: a page of mappings by
// name (then host ID) after After, of one host or of all, only pending ones
// if Pending. After is a name, or "NAME HOSTID" (the key of the last row
// of a page: one name may be claimed by several hosts).
type MappingListArgs struct {
	Host    string `json:"host,omitempty" flag:"host" help:"only the names of this host (NAME or HOSTID)"`
	Pending bool   `json:"pending,omitempty" flag:"pending" help:"only the names waiting for approval"`
	After   string `json:"after,omitempty" flag:"after" help:"start after this name"`
	Limit   int    `json:"limit,omitempty"`
}

// MappingArgs name one mapping (approve, reject, remove): the name, and
// the host when several hosts claim it.
type MappingArgs struct {
	Name string `json:"name" arg:"NAME"`
	Host string `json:"host,omitempty" flag:"host" help:"the host whose mapping it is (NAME or HOSTID), when several hosts claim the name"`
}

// MappingAddArgs are the arguments of mapping.add.
type MappingAddArgs struct {
	Name string `json:"name" arg:"NAME"`
	Host string `json:"host" arg:"HOST"`
}

// AutoApproveArgs are the arguments of mapping.auto-approve.
type AutoApproveArgs struct {
	State string `json:"state" arg:"on|off"`
}

// MappingSettings answers mapping.settings and mapping.auto-approve.
type MappingSettings struct {
	AutoApprove bool `json:"auto_approve"`
}

// Mapping is one name of a host ID as the admin sees it.
type Mapping struct {
	Name      string     `json:"name"`
	HostID    string     `json:"host_id"`
	HostName  string     `json:"host_name"` // the host's main name
	State     string     `json:"state"`     // pending or approved
	AskedAt   time.Time  `json:"asked_at"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
}

// Check refuses a bad page size.
func (a *MappingListArgs) Check() error { return checkLimit(a.Limit) }

// Check refuses an empty name.
func (a *MappingArgs) Check() error {
	if a.Name == "" {
		return errors.New("no name given")
	}
	return nil
}

// Check refuses an empty name or host.
func (a *MappingAddArgs) Check() error {
	switch {
	case a.Name == "":
		return errors.New("no name given")
	case a.Host == "":
		return errNoHost
	}
	return nil
}

// Check accepts on or off.
func (a *AutoApproveArgs) Check() error {
	if a.State != "on" && a.State != "off" {
		return fmt.Errorf("auto-approve %q: want on or off", a.State)
	}
	return nil
}

func (s *Server) mappingList(ctx context.Context, _ *Call, args *MappingListArgs) ([]Mapping, error) {
	f := store.MappingFilter{Limit: pageLimit(args.Limit, MaxPageRows)}
	f.After, f.AfterHost, _ = strings.Cut(args.After, " ")
	if args.Pending {
		f.State = store.MappingPending
	}
	if args.Host != "" {
		h, err := s.resolveHost(ctx, args.Host)
		if err != nil {
			return nil, err
		}
		f.HostID = h.ID
	}
	list, err := s.store.ListMappings(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list mappings: %w", err)
	}
	out := make([]Mapping, 0, len(list))
	for _, m := range list {
		out = append(out, mappingView(m))
	}
	return out, nil
}

// mappingName is the canonical form of a name to map, refusing reserved
// names (the primary's, loopback, addresses, token-like values).
func (s *Server) mappingName(raw string) (string, error) {
	names, err := normalizeNames([]string{raw})
	if err != nil {
		return "", err
	}
	if s.ca != nil && s.ca.IsPrimaryName(names[0]) {
		return "", fmt.Errorf("%w: %s is a name of the primary; no host certificate carries it", hostname.ErrReserved, names[0])
	}
	return names[0], nil
}

func (s *Server) mappingAdd(ctx context.Context, c *Call, args *MappingAddArgs) (Mapping, error) {
	name, err := s.mappingName(args.Name)
	if err != nil {
		return Mapping{}, err
	}
	h, err := s.resolveHost(ctx, args.Host)
	if err != nil {
		return Mapping{}, err
	}
	m, err := s.store.AddMapping(ctx, name, h.ID, c.Now, c.Audit)
	return mappingView(m), mappingError(name, err)
}

func (s *Server) mappingApprove(ctx context.Context, c *Call, args *MappingArgs) (Mapping, error) {
	return s.mappingDecide(ctx, c, args, true)
}

func (s *Server) mappingReject(ctx context.Context, c *Call, args *MappingArgs) (Mapping, error) {
	return s.mappingDecide(ctx, c, args, false)
}

// mappingHost is the host ID args.Host names ("" when none is given).
func (s *Server) mappingHost(ctx context.Context, args *MappingArgs) (string, error) {
	if args.Host == "" {
		return "", nil
	}
	h, err := s.resolveHost(ctx, args.Host)
	return h.ID, err
}

func (s *Server) mappingDecide(ctx context.Context, c *Call, args *MappingArgs, approve bool) (Mapping, error) {
	name, err := s.mappingName(args.Name)
	if err != nil {
		return Mapping{}, err
	}
	hostID, err := s.mappingHost(ctx, args)
	if err != nil {
		return Mapping{}, err
	}
	m, err := s.store.DecideMapping(ctx, name, hostID, approve, c.Now, c.Audit)
	if errors.Is(err, store.ErrNotFound) {
		return Mapping{}, fmt.Errorf("%s has no pending mapping", name)
	}
	return mappingView(m), mappingError(name, err)
}

func (s *Server) mappingRemove(ctx context.Context, c *Call, args *MappingArgs) (Mapping, error) {
	name, err := s.mappingName(args.Name)
	if err != nil {
		return Mapping{}, err
	}
	hostID, err := s.mappingHost(ctx, args)
	if err != nil {
		return Mapping{}, err
	}
	m, err := s.store.RemoveMapping(ctx, name, hostID, c.Now, c.Audit)
	if errors.Is(err, store.ErrNotFound) {
		return Mapping{}, fmt.Errorf("%s is mapped to no host", name)
	}
	return mappingView(m), mappingError(name, err)
}

func (s *Server) mappingAutoApprove(ctx context.Context, c *Call, args *AutoApproveArgs) (MappingSettings, error) {
	on := args.State == "on"
	if err := s.store.SetAutoApprove(ctx, on, c.Audit); err != nil {
		return MappingSettings{}, err
	}
	return MappingSettings{AutoApprove: on}, nil
}

func (s *Server) mappingSettings(ctx context.Context, _ *Call, _ *NoArgs) (MappingSettings, error) {
	on, err := s.store.AutoApprove(ctx)
	return MappingSettings{AutoApprove: on}, err
}

// mappingError is the one-line answer to a refused mapping change.
func mappingError(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNameConflict):
		return fmt.Errorf("%s: %s belongs to another host ID (a name belongs to one host only)", protocol.CodeNameConflict, name)
	case errors.Is(err, store.ErrAmbiguous):
		return fmt.Errorf("%s: several hosts claim it: say which with --host NAME|HOSTID (mapping list shows them)", name)
	case errors.Is(err, store.ErrLastName):
		return fmt.Errorf("%s is the host's only approved name: add another first (a host keeps at least one)", name)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%s is already an approved name of that host", name)
	}
	return err
}

func mappingView(m store.Mapping) Mapping {
	return Mapping{Name: m.Name, HostID: m.HostID, HostName: m.HostName, State: string(m.State), AskedAt: m.AskedAt, DecidedAt: m.DecidedAt}
}

func textMappings(o Output, _ *MappingListArgs, ms []Mapping) error {
	w := tabw(o.Out)
	if o.First {
		fmt.Fprintln(w, "NAME\tSTATE\tHOST\tHOST ID\tASKED\tDECIDED")
	}
	for _, m := range ms {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.State, m.HostName, m.HostID, fmtTime(m.AskedAt), fmtTimePtr(m.DecidedAt))
	}
	return w.Flush()
}

func textMapping[A any](verb string) func(o Output, _ *A, m Mapping) error {
	return func(o Output, _ *A, m Mapping) error {
		_, err := fmt.Fprintf(o.Out, "%s %s (host %s, %s)\n", verb, m.Name, m.HostName, m.HostID)
		return err
	}
}

func textMappingSettings[A any](o Output, _ *A, r MappingSettings) error {
	state := "off"
	if r.AutoApprove {
		state = "on"
	}
	_, err := fmt.Fprintf(o.Out, "auto-approve %s\n", state)
	return err
}
