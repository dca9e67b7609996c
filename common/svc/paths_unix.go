//go:build !windows

package svc

const sep = "/"

func configDir() string { return "/etc/hostcert" }
func dataDir() string   { return "/var/lib/hostcert" }
