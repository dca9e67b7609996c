package nettest

import (
	"context"
	"fmt"
	"strings"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Toxi is an in-process toxiproxy proxy on 127.0.0.1:0 in front of upstream,
// for faults on the agent->primary leg.
type Toxi struct {
	proxy *toxiproxy.Proxy
}

// NewToxi starts a proxy to upstream.
func NewToxi(upstream string) (*Toxi, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "primary", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("toxiproxy: %w", err)
	}
	return &Toxi{proxy: p}, nil
}

// Addr is the proxy's listening address.
func (t *Toxi) Addr() string { return t.proxy.Listen }

// Close stops the proxy and its connections.
func (t *Toxi) Close() { t.proxy.Stop() }

// Add adds a toxic from its JSON attributes, e.g.
// Add("blackhole", "timeout", "upstream", `{"timeout":0}`).
func (t *Toxi) Add(name, typ, stream, attrs string) error {
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := t.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		return fmt.Errorf("toxiproxy: add %s: %w", name, err)
	}
	return nil
}

// Remove removes a toxic.
func (t *Toxi) Remove(name string) error {
	return t.proxy.Toxics.RemoveToxic(context.Background(), name)
}

// BlackHole makes the proxy accept connections and drop every byte both ways.
func (t *Toxi) BlackHole() error {
	if err := t.Add("blackhole_up", "timeout", "upstream", `{"timeout":0}`); err != nil {
		return err
	}
	return t.Add("blackhole_down", "timeout", "downstream", `{"timeout":0}`)
}

// Heal removes the black hole.
func (t *Toxi) Heal() error {
	if err := t.Remove("blackhole_up"); err != nil {
		return err
	}
	return t.Remove("blackhole_down")
}
