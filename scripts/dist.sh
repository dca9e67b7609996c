#!/usr/bin/env bash
# Builds dist/hostcert-windows-amd64.zip: hostcert-agent.exe and
# hostcert-tunnel.exe (stamped with the version, like every build), the
# installer packaging/windows/install.ps1 and example configs for Windows.
# Then checks that install.ps1 parses (tree-sitter PowerShell grammar through
# npm; skipped with a notice when node/npm are missing).
#
# Environment: VERSION, COMMIT, LDFLAGS (`make dist` passes the Makefile's),
# DIST (default dist), GO (default go), BIN_DIR (use prebuilt
# BIN_DIR/windows-amd64/hostcert-PROGRAM.exe instead of building them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
LDFLAGS=${LDFLAGS:-"-s -w -X github.com/hostcert/hostcert/common/version.Version=$VERSION -X github.com/hostcert/hostcert/common/version.Commit=$COMMIT"}
DIST=${DIST:-$root/dist}
name=hostcert-windows-amd64

if ! command -v zip >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "dist: installing zip"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -qq --no-install-recommends zip >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends zip >/dev/null; }
	else
		echo "dist: zip is missing (install it, or run as root to have it installed)" >&2
		exit 1
	fi
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
stage=$build/$name
mkdir -p "$stage" "$DIST"

for p in agent tunnel; do
	if [ -n "${BIN_DIR:-}" ]; then
		cp "$BIN_DIR/windows-amd64/hostcert-$p.exe" "$stage/"
	else
		echo "dist: building hostcert-$p.exe $VERSION windows/amd64"
		CGO_ENABLED=0 GOOS=windows GOARCH=amd64 "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$stage/hostcert-$p.exe" "./$p"
	fi
done
cp packaging/windows/install.ps1 "$stage/"
# The Linux example configs, with Windows paths.
sed -e "s#^data_dir: /var/lib/hostcert/agent#data_dir: 'C:\\\\ProgramData\\\\hostcert\\\\agent'#" \
	packaging/config/agent.yaml >"$stage/agent.yaml"
cp packaging/config/tunnel.yaml "$stage/"
grep -q "^data_dir: 'C:\\\\ProgramData\\\\hostcert\\\\agent'" "$stage/agent.yaml" ||
	{ echo "dist: could not set the Windows data_dir in agent.yaml" >&2; exit 1; }
# Windows tools expect CRLF in text files.
for f in install.ps1 agent.yaml tunnel.yaml; do sed -i 's/$/\r/' "$stage/$f"; done
cp docs/packaging.md "$stage/README.md"

# Reproducible: fixed timestamps (the commit's), sorted entries, no extra fields.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
find "$stage" -exec touch -d "@$epoch" {} +
rm -f "$DIST/$name.zip"
(cd "$build" && find "$name" -type f | LC_ALL=C sort | zip -q -X -9 "$DIST/$name.zip" -@)

if command -v node >/dev/null && command -v npm >/dev/null; then
	# Outside the source tree: a node_modules under packaging/ could hold .go
	# files that ./... would pick up.
	mkdir -p "$build/psparse"
	cp packaging/windows/psparse/{package.json,package-lock.json,check.mjs} "$build/psparse/"
	(cd "$build/psparse" && npm ci --no-audit --no-fund --ignore-scripts --legacy-peer-deps >/dev/null 2>&1 &&
		node check.mjs "$stage/install.ps1") || { echo "dist: install.ps1 does not parse" >&2; exit 1; }
else
	echo "dist: NOTICE: node/npm missing, install.ps1 parse check skipped" >&2
fi
echo "dist: $(du -k "$DIST/$name.zip" | cut -f1)K $DIST/$name.zip"
unzip -l "$DIST/$name.zip" | sed 's/^/  /'
