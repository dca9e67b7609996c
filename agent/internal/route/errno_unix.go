//go:build !windows

package route

var platformErrnos []error
