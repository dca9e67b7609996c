//go:build windows

package route

import "golang.org/x/sys/windows"

var platformErrnos = []error{
	windows.WSAECONNREFUSED, windows.WSAECONNRESET, windows.WSAECONNABORTED,
	windows.WSAEHOSTUNREACH, windows.WSAENETUNREACH, windows.WSAETIMEDOUT,
}
