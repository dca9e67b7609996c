//go:build windows

package server

// modesMeaningful: on Windows, access is an ACL that Go's file mode does not
// describe; CheckPermissions checks nothing there (docs/primary.md).
const modesMeaningful = false
