#!/usr/bin/env bash
# Builds the .deb and .rpm packages of hostcert-primary, hostcert-agent and
# hostcert-tunnel into dist/ with nfpm (pinned in tools/go.mod).
#
#   scripts/packages.sh [ARCH...]      ARCH: amd64 arm64 (default: both)
#
# Environment: VERSION, COMMIT, LDFLAGS (`make packages` passes the Makefile's,
# which stamp common/version), DIST (output directory, default dist),
# FORMATS (default "deb rpm"), GO (default go), BIN_DIR (use prebuilt
# binaries BIN_DIR/ARCH/hostcert-PROGRAM instead of building them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
LDFLAGS=${LDFLAGS:-"-s -w -X github.com/hostcert/hostcert/common/version.Version=$VERSION -X github.com/hostcert/hostcert/common/version.Commit=$COMMIT"}
DIST=${DIST:-$root/dist}
FORMATS=${FORMATS:-deb rpm}
programs=(primary agent tunnel)
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64)

# Package version: Debian and RPM versions must start with a digit and RPM's
# must not contain '-'. v1.2.3 -> 1.2.3; v1.2.3-4-gabcdef -> 1.2.3+4.gabcdef;
# anything else (a bare commit, "dev") -> 0.0.0+git.<it>.
pkg_version() {
	local v=${1#v}
	if [[ $v =~ ^([0-9]+(\.[0-9]+)+)(.*)$ ]]; then
		local base=${BASH_REMATCH[1]} rest=${BASH_REMATCH[3]}
		rest=${rest#[-+~.]}
		rest=$(printf '%s' "$rest" | tr -c 'A-Za-z0-9.' '.')
		if [ -n "$rest" ]; then echo "$base+$rest"; else echo "$base"; fi
	else
		echo "0.0.0+git.$(printf '%s' "$1" | tr -c 'A-Za-z0-9.' '.')"
	fi
}
PKG_VERSION=$(pkg_version "$VERSION")
export PKG_VERSION

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
mkdir -p "$DIST"
ln -s "$root/packaging" "$build/packaging"

echo "packages: building nfpm (tools/go.mod)"
(cd tools && "$GO" build -o "$build/nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm)

# Debian wants a changelog in every binary package; one entry per build,
# dated with the commit so the packages are reproducible.
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
mkdir -p "$build/changelog"
for p in "${programs[@]}"; do
	printf 'hostcert-%s (%s-1) unstable; urgency=medium\n\n  * hostcert %s (commit %s).\n\n -- hostcert maintainers <hostcert@example.com>  %s\n' \
		"$p" "$PKG_VERSION" "$VERSION" "$COMMIT" "$date" | gzip -9n >"$build/changelog/hostcert-$p.changelog.Debian.gz"
done

for p in "${programs[@]}"; do
	state="" enroll=""
	case $p in primary | agent) state=/var/lib/hostcert/$p ;; esac
	[ "$p" != agent ] || enroll=/usr/lib/hostcert-agent/enroll
	mkdir -p "$build/scripts/hostcert-$p"
	for s in postinst prerm postrm; do
		sed -e "s#@NAME@#hostcert-$p#g" -e "s#@STATE@#$state#g" -e "s#@ENROLL@#$enroll#g" \
			"packaging/scripts/$s.in" >"$build/scripts/hostcert-$p/$s"
		chmod 0755 "$build/scripts/hostcert-$p/$s"
	done
done

for arch in "${archs[@]}"; do
	mkdir -p "$build/bin/$arch"
	for p in "${programs[@]}"; do
		bin="$build/bin/$arch/hostcert-$p"
		if [ -n "${BIN_DIR:-}" ]; then
			cp "$BIN_DIR/$arch/hostcert-$p" "$bin"
		else
			echo "packages: building hostcert-$p $VERSION linux/$arch"
			CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$bin" "./$p"
		fi
		for f in $FORMATS; do
			(cd "$build" && ARCH=$arch ./nfpm package --config "packaging/nfpm/hostcert-$p.yaml" \
				--packager "$f" --target "$DIST/" >/dev/null)
		done
	done
done
echo "packages: version $PKG_VERSION in $DIST:"
for f in "$DIST"/*_"$PKG_VERSION"-1_*.deb "$DIST"/*-"$PKG_VERSION"-1.*.rpm; do
	[ -e "$f" ] && echo "  $(du -k "$f" | cut -f1)K  ${f##*/}"
done
exit 0
