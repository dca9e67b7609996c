package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Host name mappings (SPEC §8): `hostcert-primary host mapping
// list|approve|reject|add|remove|auto-approve`.

// Commands of the host name mappings.
const (
	CmdMappingList        = "host.mapping.list"
	CmdMappingApprove     = "host.mapping.approve"
	CmdMappingReject      = "host.mapping.reject"
	CmdMappingAdd         = "host.mapping.add"
	CmdMappingRemove      = "host.mapping.remove"
	CmdMappingAutoApprove = "host.mapping.auto-approve"
)

// NameMappings is what the mapping commands need of the store.
type NameMappings interface {
	ListMappings(ctx context.Context, f store.MappingFilter) ([]store.Mapping, error)
	AddMapping(ctx context.Context, name, hostID string, now time.Time, a store.Audit) (store.Mapping, error)
	DecideMapping(ctx context.Context, name string, approve bool, now time.Time, a store.Audit) (store.Mapping, error)
	RemoveMapping(ctx context.Context, name string, now time.Time, a store.Audit) (store.Mapping, error)
	AutoApprove(ctx context.Context) (bool, error)
	SetAutoApprove(ctx context.Context, on bool, a store.Audit) error
}

// MappingListArgs are the arguments of host.mapping.list: the mappings of
// one host (NAME or HOSTID), or every host's; only pending ones if Pending.
type MappingListArgs struct {
	Host    string `json:"host,omitempty"`
	Pending bool   `json:"pending,omitempty"`
}

// MappingArgs name a mapping: Name, and for host.mapping.add the Host
// (NAME or HOSTID) it is added to.
type MappingArgs struct {
	Name string `json:"name"`
	Host string `json:"host,omitempty"`
}

// AutoApproveArgs: On nil reads the setting, else sets it.
type AutoApproveArgs struct {
	On *bool `json:"on,omitempty"`
}

// AutoApproveInfo answers host.mapping.auto-approve.
type AutoApproveInfo struct {
	On bool `json:"on"`
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

// mappingCommand runs one of the mapping commands.
func (s *Server) mappingCommand(ctx context.Context, now time.Time, req Request, a store.Audit) (any, error) {
	if req.Command == CmdMappingAutoApprove {
		var args AutoApproveArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		if args.On != nil {
			if err := s.store.SetAutoApprove(ctx, *args.On, a); err != nil {
				return nil, err
			}
		}
		on, err := s.store.AutoApprove(ctx)
		return AutoApproveInfo{On: on}, err
	}
	if req.Command == CmdMappingList {
		var args MappingListArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		var f store.MappingFilter
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
			return nil, err
		}
		out := make([]Mapping, 0, len(list))
		for _, m := range list {
			out = append(out, mappingView(m))
		}
		return out, nil
	}

	var args MappingArgs
	if err := decodeArgs(req, &args); err != nil {
		return nil, err
	}
	names, err := s.hostNames([]string{args.Name})
	if err != nil {
		return nil, err
	}
	name := names[0]
	var m store.Mapping
	switch req.Command {
	case CmdMappingAdd:
		h, rerr := s.resolveHost(ctx, args.Host)
		if rerr != nil {
			return nil, rerr
		}
		m, err = s.store.AddMapping(ctx, name, h.ID, now, a)
	case CmdMappingApprove, CmdMappingReject:
		m, err = s.store.DecideMapping(ctx, name, req.Command == CmdMappingApprove, now, a)
	case CmdMappingRemove:
		m, err = s.store.RemoveMapping(ctx, name, now, a)
	default:
		return nil, fmt.Errorf("unknown admin command %q", req.Command)
	}
	switch {
	case errors.Is(err, store.ErrNameConflict):
		return nil, fmt.Errorf("%s: %s belongs to another host ID (a name belongs to one host only)", protocol.CodeNameConflict, name)
	case errors.Is(err, store.ErrLastName):
		return nil, fmt.Errorf("%s is the host's only approved name: add another first (a host keeps at least one)", name)
	case errors.Is(err, store.ErrExists):
		return nil, fmt.Errorf("%s is already an approved name of that host", name)
	case errors.Is(err, store.ErrNotFound) && req.Command == CmdMappingRemove:
		return nil, fmt.Errorf("%s is mapped to no host", name)
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%s has no pending mapping", name)
	case err != nil:
		return nil, err
	}
	return mappingView(m), nil
}

func mappingView(m store.Mapping) Mapping {
	return Mapping{Name: m.Name, HostID: m.HostID, HostName: m.HostName, State: string(m.State), AskedAt: m.AskedAt, DecidedAt: m.DecidedAt}
}
