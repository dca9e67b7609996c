#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (CI runs as root).
# Idempotent and quiet when everything is already there.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
# packaging: install.ps1 is parsed with a tree-sitter grammar from npm; the
# install-time enrollment test runs the agent as the service user (setpriv).
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v setpriv >/dev/null || need+=(util-linux)
# PostgreSQL server binaries (initdb, pg_ctl) for the store's HA tests
# (internal/pgtest starts throwaway clusters; Debian keeps them off PATH).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
# The web console's browser tests drive headless Chromium (chromedp).
command -v chromium >/dev/null || need+=(chromium)
# ... and import an administrator's .p12 into its NSS database (certutil, pk12util).
command -v pk12util >/dev/null || need+=(libnss3-tools)
# promtool checks and unit-tests the Prometheus alert rules in packaging/
# (packaging/monitoring_test.go); Debian ships it in the prometheus package.
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "deps: missing ${need[*]} (not root or no apt-get); tests that need them will skip loudly" >&2
  fi
fi
go mod download
