package enroll

import "context"

type routeKey struct{}

// WithRoute records on a connection's context how its requests reach the
// primary: store.RouteDirect, or store.RouteTunnel when the TCP peer is a
// declared tunnel (which must relay the client with PROXY protocol). The
// HTTPS server sets it per connection; issuance records it with the
// certificate, for the inventory.
func WithRoute(ctx context.Context, route string) context.Context {
	return context.WithValue(ctx, routeKey{}, route)
}

// routeOf is the route WithRoute recorded, "" when none was.
func routeOf(ctx context.Context) string {
	r, _ := ctx.Value(routeKey{}).(string)
	return r
}
