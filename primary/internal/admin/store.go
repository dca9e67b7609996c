package admin

import (
	"context"
	"time"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// What the admin surface needs of the store, by concern. *store.Store
// satisfies all of them, on SQLite and on PostgreSQL alike.

// Registry is the host registry and the host IDs.
type Registry interface {
	AddKnown(ctx context.Context, names []string, a store.Audit) (int, error)
	RemoveKnown(ctx context.Context, name string, a store.Audit) error
	IsKnown(ctx context.Context, name string) (bool, error)
	HostByName(ctx context.Context, name string) (store.Host, error)
	HostByID(ctx context.Context, id string) (store.Host, error)
	ListHostsPage(ctx context.Context, p store.HostPage) ([]store.Host, error)
	SetReissueWindow(ctx context.Context, hostID string, until time.Time, a store.Audit) error
}

// TokenBook creates, lists and removes tokens.
type TokenBook interface {
	CreateToken(ctx context.Context, tok store.Token, a store.Audit) error
	ListTokens(ctx context.Context) ([]store.Token, error)
	DeleteToken(ctx context.Context, name string, a store.Audit) error
	CleanupTokens(ctx context.Context, now time.Time, a store.Audit) (int, error)
}

// CertBook lists and revokes issued certificates.
type CertBook interface {
	ListCerts(ctx context.Context, f store.CertFilter) ([]store.Cert, error)
	ListCertsPage(ctx context.Context, p store.CertPage) ([]store.Cert, error)
	EachLiveCert(ctx context.Context, now time.Time, fn func(store.LiveCert) error) error
	RevokeHost(ctx context.Context, hostID string, reason int, now time.Time, a store.Audit) (int, error)
	RevokeByToken(ctx context.Context, tokenName string, reason int, now time.Time, a store.Audit) (int, error)
}

// AuditLog appends to and reads the audit log.
type AuditLog interface {
	AppendAudit(ctx context.Context, a store.Audit) error
	ListAuditPage(ctx context.Context, since time.Time, after int64, limit int) ([]store.Audit, error)
}

// Inventory counts the fleet.
type Inventory interface {
	Inventory(ctx context.Context, now, expiringBefore, staleBefore time.Time) (store.Inventory, error)
}

// Store is everything the admin server reads and changes.
type Store interface {
	Registry
	NameMappings
	TokenBook
	CertBook
	AuditLog
	Inventory
	Levels
	Admins
}
