package server

import (
	"context"
	"crypto/x509"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/crl"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// How the fleet collector bounds its work at a scrape.
const (
	// inventoryMaxAge: the certificate and token counts are recomputed at a
	// scrape only when the last ones are older than this. They read every
	// current certificate (a million rows for a million hosts), so several
	// Prometheus servers scraping every 15s cost one query a minute.
	inventoryMaxAge = time.Minute
	// inventoryTimeout bounds that query; on timeout or error the last
	// counts stay exported (their timestamp tells their age).
	inventoryTimeout = 10 * time.Second
	// readyTimeout bounds the readiness check of a scrape.
	readyTimeout = 2 * time.Second
)

// expiryBounds split the current certificates by remaining life; the
// labels name the buckets (one more than the bounds: beyond the last).
var (
	expiryBounds = []time.Duration{7 * 24 * time.Hour, 30 * 24 * time.Hour, 90 * 24 * time.Hour, 180 * 24 * time.Hour}
	expiryLabels = []string{"0-7d", "7-30d", "30-90d", "90-180d", "180d+"}
)

// What the fleet collector reads, each declared here by its consumer.
type (
	inventorySource interface {
		ExpiryCounts(ctx context.Context, now time.Time, bounds []time.Duration) (store.ExpiryCounts, error)
	}
	crlSource interface {
		Current() *crl.List
		Roots() []*crl.List
	}
	caSource  interface{ Bundle() []*x509.Certificate }
	readiness interface {
		Ready(ctx context.Context) error
	}
)

var (
	descCerts = prometheus.NewDesc("hostcert_primary_certificates",
		"Current, unrevoked host certificates (one per host) by remaining life: expired, 0-7d, 7-30d, 30-90d, 90-180d, 180d+.",
		[]string{"expires_in"}, nil)
	descTokens = prometheus.NewDesc("hostcert_primary_tokens_active",
		"Tokens neither expired nor used up, by kind (standard, reissue).", []string{"kind"}, nil)
	descInventoryTime = prometheus.NewDesc("hostcert_primary_inventory_timestamp_seconds",
		"When the certificate and token counts were taken (recomputed at most once a minute).", nil, nil)
	descInventoryErrors = prometheus.NewDesc("hostcert_primary_inventory_errors_total",
		"Failed certificate and token counts (the previous counts stay exported).", nil, nil)
	descCRLAge = prometheus.NewDesc("hostcert_primary_crl_age_seconds",
		"Seconds since the served CRL was generated (its thisUpdate).", nil, nil)
	descCRLEntries = prometheus.NewDesc("hostcert_primary_crl_entries",
		"Revoked certificates listed in the served CRL.", nil, nil)
	descCRLNext = prometheus.NewDesc("hostcert_primary_crl_next_update_timestamp_seconds",
		"The served CRL's nextUpdate: agents treat it as stale after this.", nil, nil)
	descCRLInterval = prometheus.NewDesc("hostcert_primary_crl_refresh_interval_seconds",
		"How often the primary regenerates the CRL at the latest.", nil, nil)
	descRootCRLNext = prometheus.NewDesc("hostcert_primary_root_crl_next_update_timestamp_seconds",
		"Each root's CRL's nextUpdate (it lists revoked issuing CAs): after it, agents under that root cannot tell their certificate's state. An offline root's CRL is signed again with ca sign-root-crl --root-key FILE.",
		[]string{"root"}, nil)
	descCAExpiry = prometheus.NewDesc("hostcert_primary_ca_expiry_seconds",
		"Seconds until the CA certificate's NotAfter (negative once expired), for every CA in the bundle.",
		[]string{"subject", "serial"}, nil)
	descReady = prometheus.NewDesc("hostcert_primary_ready",
		"1 when this node can serve (CA loaded, store answering), as /readyz says; else 0.", nil, nil)
)

// fleetCollector reads what the fleet looks like at scrape time.
type fleetCollector struct {
	inv      inventorySource
	crls     crlSource
	ca       caSource
	ready    readiness
	interval time.Duration // the CRL publisher's regeneration interval
	now      func() time.Time
	maxAge   time.Duration
	log      zerolog.Logger

	mu     sync.Mutex // one inventory query at a time; guards the fields below
	last   store.ExpiryCounts
	lastAt time.Time
	errors float64
}

func newFleetCollector(inv inventorySource, crls crlSource, ca caSource, ready readiness, log zerolog.Logger) *fleetCollector {
	return &fleetCollector{
		inv: inv, crls: crls, ca: ca, ready: ready, interval: crl.DefaultInterval,
		now: time.Now, maxAge: inventoryMaxAge, log: log,
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCerts, descTokens, descInventoryTime, descInventoryErrors,
		descCRLAge, descCRLEntries, descCRLNext, descCRLInterval, descRootCRLNext, descCAExpiry, descReady} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	c.collectInventory(ch, now)

	ch <- prometheus.MustNewConstMetric(descCRLInterval, prometheus.GaugeValue, c.interval.Seconds())
	if l := c.crls.Current(); l != nil {
		ch <- prometheus.MustNewConstMetric(descCRLAge, prometheus.GaugeValue, now.Sub(l.ThisUpdate).Seconds())
		ch <- prometheus.MustNewConstMetric(descCRLEntries, prometheus.GaugeValue, float64(l.Entries))
		ch <- prometheus.MustNewConstMetric(descCRLNext, prometheus.GaugeValue, unixSeconds(l.NextUpdate))
	}
	for _, l := range c.crls.Roots() {
		ch <- prometheus.MustNewConstMetric(descRootCRLNext, prometheus.GaugeValue, unixSeconds(l.NextUpdate), l.Issuer)
	}
	for _, cert := range c.ca.Bundle() {
		ch <- prometheus.MustNewConstMetric(descCAExpiry, prometheus.GaugeValue, cert.NotAfter.Sub(now).Seconds(),
			cert.Subject.CommonName, cert.SerialNumber.Text(16))
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	ready := 1.0
	if err := c.ready.Ready(ctx); err != nil {
		ready = 0
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
}

// collectInventory exports the certificate and token counts, recomputing
// them when older than maxAge; a failed query keeps the last ones.
func (c *fleetCollector) collectInventory(ch chan<- prometheus.Metric, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastAt.IsZero() || now.Sub(c.lastAt) >= c.maxAge {
		ctx, cancel := context.WithTimeout(context.Background(), inventoryTimeout)
		inv, err := c.inv.ExpiryCounts(ctx, now, expiryBounds)
		cancel()
		if err != nil {
			c.errors++
			c.log.Warn().Err(err).Msg("counting certificates and tokens for metrics")
		} else {
			c.last, c.lastAt = inv, now
		}
	}
	ch <- prometheus.MustNewConstMetric(descInventoryErrors, prometheus.CounterValue, c.errors)
	if c.lastAt.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(descInventoryTime, prometheus.GaugeValue, unixSeconds(c.lastAt))
	ch <- prometheus.MustNewConstMetric(descCerts, prometheus.GaugeValue, float64(c.last.Expired), "expired")
	for i, n := range c.last.Within {
		ch <- prometheus.MustNewConstMetric(descCerts, prometheus.GaugeValue, float64(n), expiryLabels[i])
	}
	for _, kind := range []string{"standard", "reissue"} {
		ch <- prometheus.MustNewConstMetric(descTokens, prometheus.GaugeValue, float64(c.last.LiveTokens[kind]), kind)
	}
}

// unixSeconds is t as a Prometheus timestamp value.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
