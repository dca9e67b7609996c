package cli

import "golang.org/x/term"

func termCheck(fd int) bool { return term.IsTerminal(fd) }

// StdTerminal reports whether the process's stdin and stdout are a terminal.
func StdTerminal() bool { return isTerminal(stdin()) && isTerminal(stdout()) }
