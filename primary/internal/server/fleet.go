package server

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// fleetSync is how often a node re-reads the fleet's names and CA material
// on a shared store, should a notification have been lost.
const fleetSync = 30 * time.Second

// ErrNotPublished is returned by a rotation that changed this node's CA
// but could not hand it to the other nodes.
var ErrNotPublished = errors.New("the new CA was not published to the other nodes")

// fleet keeps what several primary nodes on one store share — their names
// and their CA — in step: it records this node's names and reserves every
// node's, and it publishes a rotation made here (sealed with the fleet
// key) and adopts one made on another node. It is the admin server's
// Rotator.
type fleet struct {
	dir    string
	node   string
	ca     *ca.CA
	st     *store.Store
	shared bool                  // PostgreSQL: other nodes exist
	key    *ca.FleetKey          // nil: this node can neither publish nor adopt
	after  func(context.Context) // after this node's CA changed (a new TLS certificate, new CRLs)
	log    zerolog.Logger

	mu          sync.Mutex // one rotation or adoption at a time
	unpublished bool       // a change made here could not be published yet (guarded by mu)
}

// setupKey finds this node's fleet key and checks it against the store's.
// A node set up before fleet keys existed makes one when the store has
// none (the operator copies it to the other nodes); a node whose key is
// not the fleet's is refused: it would miss every rotation.
func (f *fleet) setupKey(ctx context.Context) error {
	if !f.shared {
		return nil
	}
	recorded, err := f.st.FleetKeyID(ctx)
	if err != nil {
		return err
	}
	key, err := ca.LoadFleetKey(f.dir)
	switch {
	case errors.Is(err, ca.ErrNoFleetKey) && recorded != "":
		f.log.Warn().Str("path", ca.FleetKeyPath(f.dir)).
			Msg("this node has no fleet key: a ca rotation on another node will not reach it; copy ca/fleet-key from another node and restart")
		return nil
	case errors.Is(err, ca.ErrNoFleetKey):
		if key, err = ca.CreateFleetKey(f.dir); err != nil {
			return err
		}
		f.log.Info().Str("path", ca.FleetKeyPath(f.dir)).Msg("fleet key created; copy it to the other nodes' ca directory")
	case err != nil:
		return err
	}
	got, err := f.st.ClaimFleetKey(ctx, key.ID())
	if err != nil {
		return err
	}
	if got != key.ID() {
		return fmt.Errorf("serve: %s is not the fleet's key (the database records key %s, this one is %s); copy ca/fleet-key from another node", ca.FleetKeyPath(f.dir), got, key.ID())
	}
	f.key = key
	return nil
}

// syncNames records this node's names as the fleet's and reserves every
// name of every node here.
func (f *fleet) syncNames(ctx context.Context) error {
	if err := f.st.RecordPrimaryNames(ctx, f.node, f.ca.PrimaryNames(), time.Now()); err != nil {
		return err
	}
	return f.loadNames(ctx)
}

// loadNames reserves every name the fleet's nodes recorded.
func (f *fleet) loadNames(ctx context.Context) error {
	names, err := f.st.PrimaryNames(ctx)
	if err != nil {
		return err
	}
	f.ca.SetFleetNames(names)
	return nil
}

// syncCA adopts the fleet's CA material when another node published a
// generation this node does not hold yet; changed reports that it did.
func (f *fleet) syncCA(ctx context.Context) (changed bool, err error) {
	if !f.shared {
		return false, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncLocked(ctx)
}

func (f *fleet) syncLocked(ctx context.Context) (bool, error) {
	m, ok, err := f.st.LatestCA(ctx)
	if err != nil || !ok {
		return false, err
	}
	have, err := ca.FleetGeneration(f.dir)
	if err != nil {
		return false, err
	}
	if m.Generation <= have {
		return false, nil
	}
	if f.key == nil {
		return false, fmt.Errorf("adopt the CA of generation %d from node %s: %w", m.Generation, m.Node, ca.ErrNoFleetKey)
	}
	raw, err := f.key.Open(m.Sealed, m.Generation)
	if err != nil {
		return false, fmt.Errorf("adopt the CA of generation %d from node %s: %w", m.Generation, m.Node, err)
	}
	if err := f.ca.Adopt(raw, time.Now()); err != nil {
		return false, err
	}
	if err := ca.SetFleetGeneration(f.dir, m.Generation); err != nil {
		return false, err
	}
	f.log.Info().Int64("generation", m.Generation).Str("from", m.Node).Str("issuing_ca", f.ca.Certificate().Subject.CommonName).
		Str("root", pki.Fingerprint(f.ca.Root())).Msg("adopted the fleet's new ca")
	return true, nil
}

// follow adopts a new CA and reloads the names (after a notification, or
// when the safety-net timer fires), then refreshes what depends on the CA.
func (f *fleet) follow(ctx context.Context, names, caMaterial bool) {
	if names {
		if err := f.loadNames(ctx); err != nil {
			f.log.Warn().Err(err).Msg("reloading the fleet's primary names")
		}
	}
	if caMaterial {
		changed, err := f.syncCA(ctx)
		if err != nil {
			f.log.Error().Err(err).Msg("adopting the fleet's ca")
		}
		if changed && f.after != nil {
			f.after(ctx)
		}
	}
}

// run re-reads the fleet's names and CA every fleetSync until ctx ends.
func (f *fleet) run(ctx context.Context) error {
	if !f.shared {
		return nil
	}
	t := time.NewTicker(fleetSync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.mu.Lock()
			if err := f.retryLocked(ctx); err != nil {
				f.log.Error().Err(err).Msg("publishing this node's ca change")
			}
			f.mu.Unlock()
			f.follow(ctx, true, true)
		}
	}
}

// rotate runs one change of this node's CA (op) and publishes the result
// to the other nodes: first it adopts what they published, so that the
// change builds on the fleet's latest CA.
func (f *fleet) rotate(op func() (*x509.Certificate, error)) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shared {
		if f.key == nil {
			return nil, fmt.Errorf("%w: the other nodes would keep the old CA; copy ca/fleet-key from another node and restart this one", ca.ErrNoFleetKey)
		}
		if err := f.retryLocked(ctx); err != nil {
			return nil, fmt.Errorf("before changing the CA: %w", err)
		}
		if _, err := f.syncLocked(ctx); err != nil {
			return nil, fmt.Errorf("before changing the CA: %w", err)
		}
	}
	cert, err := op()
	if err != nil || !f.shared {
		return cert, err
	}
	if err := f.publishLocked(ctx); err != nil {
		f.unpublished = true
		return nil, fmt.Errorf("%w (this node uses it; it is published again every %v until it succeeds): %w", ErrNotPublished, fleetSync, err)
	}
	return cert, nil
}

// retryLocked publishes a change that could not be published when it was
// made. Another node's newer generation wins: the change made here is then
// lost to the fleet (this node adopts theirs), which is logged.
func (f *fleet) retryLocked(ctx context.Context) error {
	if !f.unpublished {
		return nil
	}
	err := f.publishLocked(ctx)
	if errors.Is(err, store.ErrCAConflict) {
		f.unpublished = false
		f.log.Error().Err(err).Msg("a ca change made on this node was never published and another node changed the ca meanwhile: adopting theirs; make the change again")
		return nil
	}
	if err == nil {
		f.unpublished = false
	}
	return err
}

// publishLocked seals this node's CA material as the fleet's next
// generation and records the current root as the fleet's.
func (f *fleet) publishLocked(ctx context.Context) error {
	raw, err := f.ca.Material()
	if err != nil {
		return err
	}
	prev, err := ca.FleetGeneration(f.dir)
	if err != nil {
		return err
	}
	gen, err := f.st.PublishCA(ctx, prev, f.node, time.Now(), func(g int64) ([]byte, error) { return f.key.Seal(raw, g) })
	if err != nil {
		return err
	}
	if err := ca.SetFleetGeneration(f.dir, gen); err != nil {
		return err
	}
	var roots []string
	for _, r := range f.ca.Bundle() {
		roots = append(roots, pki.Fingerprint(r))
	}
	if err := f.st.ClaimCA(ctx, f.ca.Fingerprint(), roots); err != nil {
		return err
	}
	f.log.Info().Int64("generation", gen).Msg("published the new ca to the fleet")
	return nil
}

// RotateIssuing, RotateRoot and RetireRoot are the admin server's Rotator:
// the CA's, published to the fleet.
func (f *fleet) RotateIssuing(opts ca.RotateOptions, now time.Time) (*x509.Certificate, error) {
	return f.rotate(func() (*x509.Certificate, error) { return f.ca.RotateIssuing(opts, now) })
}

func (f *fleet) RotateRoot(opts ca.RotateOptions, now time.Time) (*x509.Certificate, error) {
	return f.rotate(func() (*x509.Certificate, error) { return f.ca.RotateRoot(opts, now) })
}

func (f *fleet) RetireRoot(fingerprint string) (*x509.Certificate, error) {
	return f.rotate(func() (*x509.Certificate, error) { return f.ca.RetireRoot(fingerprint) })
}

// RevokeIssuing and SignRootCRL are the admin server's RootSigner: they
// change the roots' CRLs, which the other nodes adopt too (a revoked
// issuing CA must stop renewing on every node).
func (f *fleet) RevokeIssuing(id string, reason int, rootKey crypto.Signer, now time.Time) (ca.RevokedCA, error) {
	var rc ca.RevokedCA
	_, err := f.rotate(func() (*x509.Certificate, error) {
		var err error
		rc, err = f.ca.RevokeIssuing(id, reason, rootKey, now)
		return rc.Cert, err
	})
	return rc, err
}

func (f *fleet) SignRootCRL(rootKey crypto.Signer, now time.Time) (*x509.Certificate, error) {
	return f.rotate(func() (*x509.Certificate, error) { return f.ca.SignRootCRL(rootKey, now) })
}

func (f *fleet) RootCRLs() ([]ca.SignedCRL, error) { return f.ca.RootCRLs() }
