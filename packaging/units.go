// Package packaging holds what installs hostcert on a machine: the systemd
// units of the primary, the agent and the tunnel (embedded here so that
// `service install` writes exactly the unit the .deb/.rpm ships), the nfpm
// package definitions, default configs and the Windows install script.
//
// The unit files in systemd/ are the one source of truth. The packages ship
// them as they are, with fixed /usr/bin paths; SystemdUnit turns the same
// file into a kardianos/service SystemdScript template by replacing the
// ExecStart= line with the executable and arguments kardianos fills in.
package packaging

import (
	"embed"
	"strings"
)

//go:embed systemd/*.service
var units embed.FS

//go:embed config/agent.yaml config/tunnel.yaml config/primary.env
var configs embed.FS

// Programs are the service names a unit exists for.
var Programs = []string{"hostcert-primary", "hostcert-agent", "hostcert-tunnel"}

// execStartTemplate is the ExecStart line in kardianos/service v1.3.0's own
// template language (service_systemd_linux.go: keys without a leading dot,
// the cmdEscape/cmd functions, {{range Arguments}}).
const execStartTemplate = "ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}"

// ExampleConfig returns the default config file the packages install as
// /etc/hostcert/NAME ("agent.yaml", "tunnel.yaml", "primary.env"), or "" for
// an unknown name. The agent and tunnel tests load it to keep it valid.
func ExampleConfig(name string) string {
	b, err := configs.ReadFile("config/" + name)
	if err != nil {
		return ""
	}
	return string(b)
}

// SystemdUnitFile returns the unit file as the packages install it
// (/usr/lib/systemd/system/NAME.service), or "" for an unknown name. name is
// "hostcert-agent", with or without ".service".
func SystemdUnitFile(name string) string {
	name = strings.TrimSuffix(name, ".service")
	b, err := units.ReadFile("systemd/" + name + ".service")
	if err != nil {
		return ""
	}
	return string(b)
}

// SystemdUnit returns the unit for name as a kardianos/service SystemdScript
// template (pass it as svc.Config.SystemdUnit): the packaged unit with its
// ExecStart= line replaced by the path and arguments of the installing
// executable. It returns "" for an unknown name, which makes kardianos fall
// back to its built-in unit.
func SystemdUnit(name string) string {
	unit := SystemdUnitFile(name)
	if unit == "" {
		return ""
	}
	lines := strings.SplitAfter(unit, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "ExecStart=") {
			lines[i] = execStartTemplate + "\n"
		}
	}
	return strings.Join(lines, "")
}
