//go:build !linux

package connect

// spliceBursts: elsewhere ReadFrom would copy through a fresh buffer; the
// pooled big buffer does better.
const spliceBursts = false
