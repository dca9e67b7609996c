module github.com/hostcert/hostcert

go 1.26.8

require (
	github.com/fsnotify/fsnotify v1.10.1
	github.com/kardianos/service v1.3.0
	github.com/mattn/go-isatty v0.0.24
	github.com/rs/zerolog v1.35.1
	golang.org/x/sys v0.49.0
)

require github.com/mattn/go-colorable v0.1.14 // indirect
