#!/usr/bin/env bash
# Tests the Linux packages end to end, in a couple of seconds once built:
#  1. systemd-analyze verify of the units as shipped, with the shipped
#     binaries, in a throwaway root: ANY output is a failure;
#  2. lintian on every .deb: any error (E:) is a failure (installs lintian
#     with apt-get when missing and root);
#  3. installs the .debs of this machine's architecture into a throwaway root
#     (dpkg --root, maintainer scripts run chrootless with DPKG_ROOT), checks
#     files, modes, conffiles, the hostcert user, data directories and
#     `--version`; reinstalls over an edited conffile (the edit must survive);
#     purges and checks that nothing is left but a non-empty data directory;
#     then enrollment at installation against the packaged primary serving on
#     127.0.0.1: a refused enrollment, a wrong fingerprint and its retry, and
#     one install that enrolls (docs/packaging.md, "Enrolling at installation");
#  4. RPM metadata when rpm is installed: %config(noreplace), unit, scriptlets.
#
#   scripts/test-packages.sh [DEB_DIR]
#
# Without DEB_DIR it builds this architecture's .debs and .rpms with scripts/packages.sh
# into a temporary directory. VERSION and COMMIT (default: from git, as the
# Makefile does) are what `--version` must print. Needs root and dpkg.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export VERSION COMMIT
programs=(primary agent tunnel)

say() { echo "test-packages: $*"; }
fail() {
	echo "test-packages: FAIL: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (dpkg --root installs files owned by other users)"
command -v dpkg >/dev/null || fail "needs dpkg"
arch=$(dpkg --print-architecture)

work=$(mktemp -d)
primary_pid=""
cleanup() {
	[ -z "$primary_pid" ] || kill "$primary_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

debs=${1:-}
if [ -z "$debs" ]; then
	debs=$work/dist
	DIST=$debs FORMATS="deb rpm" bash scripts/packages.sh "$arch" >/dev/null
fi
pkgs=()
for p in "${programs[@]}"; do
	f=$(ls "$debs"/hostcert-"${p}"_*_"$arch".deb 2>/dev/null | head -1)
	[ -n "$f" ] || fail "no hostcert-${p}_*_$arch.deb in $debs"
	pkgs+=("$f")
done

# 1. systemd-analyze verify, units and binaries exactly as shipped, plus the
# distribution's own units (sysinit.target, ...) so dependencies resolve.
if command -v systemd-analyze >/dev/null; then
	v=$work/verify
	mkdir -p "$v/usr/lib/systemd"
	cp -a /usr/lib/systemd/system "$v/usr/lib/systemd/"
	for f in "${pkgs[@]}"; do dpkg-deb -x "$f" "$v"; done
	units=()
	for p in "${programs[@]}"; do units+=("hostcert-$p.service"); done
	out=$(systemd-analyze verify --root="$v" "${units[@]}" 2>&1) || fail "systemd-analyze verify:"$'\n'"$out"
	[ -z "$out" ] || fail "systemd-analyze verify printed (warnings count as failures):"$'\n'"$out"
	say "systemd-analyze verify: clean ($(systemd-analyze --version | head -1))"
else
	say "SKIP systemd-analyze verify: systemd-analyze not installed"
fi

# 2. lintian.
if ! command -v lintian >/dev/null && command -v apt-get >/dev/null; then
	say "installing lintian"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null; }
fi
if command -v lintian >/dev/null; then
	out=$(lintian --allow-root "$debs"/*.deb 2>&1 || true)
	[ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/  /'
	if echo "$out" | grep -q '^E:'; then fail "lintian reported errors"; fi
	say "lintian: no errors ($(echo "$out" | grep -c '^W:' || true) warnings)"
else
	fail "lintian is missing and could not be installed"
fi

# 3. install into a throwaway root.
# newroot DIR: an empty system for dpkg --root: a dpkg database and root's
# passwd/group entries.
newroot() {
	mkdir -p "$1/var/lib/dpkg/info" "$1/var/lib/dpkg/updates" "$1/var/lib/dpkg/triggers" "$1/etc"
	touch "$1/var/lib/dpkg/status" "$1/var/lib/dpkg/available"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$1/etc/passwd"
	printf 'root:x:0:\n' >"$1/etc/group"
	printf 'root:*:20000:0:99999:7:::\n' >"$1/etc/shadow"
	printf 'root:*::\n' >"$1/etc/gshadow"
	chmod 0640 "$1/etc/shadow" "$1/etc/gshadow"
}
# dpkgin DIR ARGS...: dpkg on that root, maintainer scripts run chrootless.
dpkgin() {
	local dir=$1
	shift
	dpkg --root="$dir" --force-script-chrootless --ignore-depends=passwd "$@"
}
r=$work/root
newroot "$r"
seed=$(cd "$r" && find . -path ./var/lib/dpkg -prune -o -print | sort)
dpkgr() { dpkgin "$r" "$@"; }

out=$(dpkgr -i "${pkgs[@]}" 2>&1) || fail "dpkg -i:"$'\n'"$out"
say "installed ${pkgs[*]##*/}"
echo "$out" | grep -q 'hostcert-agent: installed; this host is not enrolled yet. Next, as root:' ||
	fail "an install without enrollment values did not print the next step:"$'\n'"$out"
echo "$out" | grep -q 'HOSTCERT_PRIMARY=.* /usr/lib/hostcert-agent/enroll' || fail "no enroll command in:"$'\n'"$out"

# expect MODE OWNER GROUP PATH (owner and group by name or number)
expect() {
	[ -e "$r$4" ] || fail "$4 missing"
	local got got_num want="$1 $2 $3"
	got=$(stat -c '%a %U %G' "$r$4")
	got_num=$(stat -c '%a %u %g' "$r$4")
	[ "$got" = "$want" ] || [ "$got_num" = "$want" ] || fail "$4: mode/owner $got_num, want $want"
}
pw=$(grep '^hostcert:' "$r/etc/passwd") || fail "no hostcert user created"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] || fail "hostcert uid $uid is not a system uid"
grep -q "^hostcert:x:$gid:" "$r/etc/group" || fail "no hostcert group with gid $gid"
[ "$home" = /var/lib/hostcert ] || fail "hostcert home $home, want /var/lib/hostcert"
case $shell in */nologin) ;; *) fail "hostcert shell $shell, want nologin" ;; esac
[ ! -e "$r/var/lib/hostcert/.profile" ] || fail "a home directory skeleton was created"

for p in "${programs[@]}"; do
	expect 755 root root "/usr/bin/hostcert-$p"
	expect 644 root root "/lib/systemd/system/hostcert-$p.service"
	cmp -s "$r/lib/systemd/system/hostcert-$p.service" "packaging/systemd/hostcert-$p.service" ||
		fail "hostcert-$p.service differs from packaging/systemd/"
	expect 644 root root "/usr/share/doc/hostcert-$p/copyright"
	out=$("$r/usr/bin/hostcert-$p" --version 2>&1) || fail "hostcert-$p --version failed: $out"
	want="hostcert-$p $VERSION (commit $COMMIT)"
	[ "$out" = "$want" ] || fail "hostcert-$p --version = $out, want $want"
done
expect 755 root root /etc/hostcert
expect 755 root root /usr/lib/hostcert-agent/enroll
for c in agent:agent.yaml tunnel:tunnel.yaml primary:primary.env; do
	p=${c%%:*} f=/etc/hostcert/${c#*:}
	expect 644 root root "$f"
	grep -qx "$f" "$r/var/lib/dpkg/info/hostcert-$p.conffiles" || fail "$f is not a conffile of hostcert-$p"
done
expect 755 root root /var/lib/hostcert
expect 700 "$uid" "$gid" /var/lib/hostcert/agent
expect 700 "$uid" "$gid" /var/lib/hostcert/primary
[ ! -e "$r/var/lib/hostcert/tunnel" ] || fail "the tunnel got a data directory it does not use"
[ ! -e "$r/etc/systemd/system/multi-user.target.wants" ] || fail "a service was enabled on install"
say "files, modes, conffiles, user, data directories and --version: ok"

# Reinstall (upgrade path) over an edited conffile: the edit survives, the
# user is not duplicated.
echo "# edited by the operator" >>"$r/etc/hostcert/agent.yaml"
out=$(dpkgr -i "${pkgs[@]}" 2>&1) || fail "dpkg -i (reinstall):"$'\n'"$out"
tail -1 "$r/etc/hostcert/agent.yaml" | grep -q 'edited by the operator' || fail "reinstall replaced an edited conffile"
[ "$(grep -c '^hostcert:' "$r/etc/passwd")" = 1 ] || fail "reinstall duplicated the hostcert user"
say "reinstall keeps an edited conffile: ok"

# Purge: a data directory holding files is kept (keys are never deleted by
# the package manager), everything else goes.
echo key >"$r/var/lib/hostcert/primary/stand-in-key"
out=$(dpkgr --purge hostcert-agent hostcert-primary hostcert-tunnel 2>&1) || fail "dpkg --purge:"$'\n'"$out"
echo "$out" | grep -q 'keeping /var/lib/hostcert/primary' || fail "purge did not say it keeps the primary's data: $out"
[ -e "$r/var/lib/hostcert/primary/stand-in-key" ] || fail "purge deleted the primary's data"
rm -r "$r/var/lib/hostcert"
left=$(cd "$r" && find . -path ./var/lib/dpkg -prune -o -print | grep -v '^\./etc/\(passwd\|group\|shadow\|gshadow\)-$' | sort)
extra=$(comm -13 <(echo "$seed") <(echo "$left"))
[ -z "$extra" ] || fail "purge left files behind:"$'\n'"$extra"
if dpkg --root="$r" -l 'hostcert-*' 2>/dev/null | grep '^[a-z][a-z] ' | grep -qv '^[up]n '; then
	fail "packages still installed or half-removed after purge: $(dpkg --root="$r" -l 'hostcert-*' 2>&1)"
fi
say "purge: clean (non-empty data directory kept, as documented)"

# 3b. Enrollment at installation (docs/packaging.md), against a real primary
# (the packaged hostcert-primary) serving on 127.0.0.1: a refused enrollment
# and a wrong fingerprint leave the package installed and the host
# unenrolled; a retry and a complete answer file enroll it.
agent_deb=${pkgs[1]}
pbin=$work/pbin
dpkg-deb -x "${pkgs[0]}" "$pbin"
P=$pbin/usr/bin/hostcert-primary
chmod 0755 "$work" # the agent runs as each root's hostcert uid
pd=$work/primary-data
fp=$("$P" init --data "$pd" --name localhost --json | sed -n 's/.*"fingerprint": *"\([^"]*\)".*/\1/p')
[ -n "$fp" ] || fail "hostcert-primary init printed no fingerprint"
"$P" serve --data "$pd" --listen 127.0.0.1:0 >"$work/primary.log" 2>&1 &
primary_pid=$!
addr=""
for _ in $(seq 100); do
	addr=$(sed -n 's/.*"addr":"\(127\.0\.0\.1:[0-9]*\)".*"message":"serving".*/\1/p' "$work/primary.log")
	[ -n "$addr" ] && break
	sleep 0.1
done
[ -n "$addr" ] || fail "hostcert-primary serve did not start:"$'\n'"$(cat "$work/primary.log")"
primary=localhost:${addr##*:}
token=$("$P" token create --name pkgtest --max-uses 5 --data "$pd" 2>/dev/null) || fail "token create failed"
wrong=$( [ "${fp:0:2}" = 00 ] && echo "11${fp:2}" || echo "00${fp:2}" )
data=/var/lib/hostcert/agent
# answers ROOT LINES...: the answer file, as the docs say (root, 0600).
answers() {
	local dir=$1
	shift
	mkdir -p "$dir/etc/hostcert"
	printf '%s\n' "# hostcert-agent install answers" "$@" >"$dir/etc/hostcert/agent-install.env"
	chmod 0600 "$dir/etc/hostcert/agent-install.env"
}
# installed ROOT: dpkg says installed (not half-configured).
installed() {
	dpkg --root="$1" -s hostcert-agent 2>/dev/null | grep -qx 'Status: install ok installed' ||
		fail "hostcert-agent in $1 is not 'install ok installed': $(dpkg --root="$1" -s hostcert-agent 2>&1 | grep ^Status)"
}
# enrolled ROOT NAME: the data directory holds a certificate for NAME that
# this primary issued, owned by the root's hostcert user, and the primary is
# recorded for the service.
enrolled() {
	local dir=$1 name=$2 huid st serial issued
	[ -s "$dir$data/host.pem" ] || fail "$dir: no $data/host.pem after enrollment"
	huid=$(grep '^hostcert:' "$dir/etc/passwd" | cut -d: -f3)
	for f in "$dir$data"/*; do
		[ "$(stat -c %u "$f")" = "$huid" ] || fail "$f belongs to uid $(stat -c %u "$f"), want the service user $huid"
	done
	st=$("$dir/usr/bin/hostcert-agent" status --config "$dir/etc/hostcert/agent.yaml" --data "$dir$data" --json)
	echo "$st" | grep -q "\"primary\": *\"$primary\"" || fail "$dir: status does not show the recorded primary $primary:"$'\n'"$st"
	serial=$(echo "$st" | sed -n 's/.*"serial": *"\([^"]*\)".*/\1/p' | head -1)
	issued=$("$P" host show "$name" --data "$pd" --json) || fail "the primary has no host $name"
	[ -n "$serial" ] && echo "$issued" | grep -q "\"serial\": *\"$serial\"" ||
		fail "$dir: certificate serial '$serial' is not one the primary issued to $name:"$'\n'"$issued"
}

# A refused enrollment: no token, and the level (high) needs one here.
ra=$work/root-refused
newroot "$ra"
answers "$ra" "HOSTCERT_PRIMARY=$primary" "HOSTCERT_FINGERPRINT='$fp'" "HOSTCERT_NAME=web01.example.com"
out=$(dpkgin "$ra" -i "$agent_deb" 2>&1) || fail "dpkg -i with a refused enrollment failed:"$'\n'"$out"
installed "$ra"
echo "$out" | grep -q 'hostcert-agent: enrollment FAILED: get-cert: .*token' || fail "no refusal reason in:"$'\n'"$out"
echo "$out" | grep -q 'run: sudo /usr/lib/hostcert-agent/enroll' || fail "no retry command in:"$'\n'"$out"
[ ! -e "$ra$data/host.pem" ] || fail "a refused enrollment left a certificate"
# The answer file decides which CA is trusted: one others can write is refused.
chmod 0646 "$ra/etc/hostcert/agent-install.env"
out=$(DPKG_ROOT=$ra "$ra/usr/lib/hostcert-agent/enroll" 2>&1) && fail "enroll with a world-writable answer file succeeded: $out"
echo "$out" | grep -q 'must belong to root and be writable only by root' || fail "world-writable answer file: $out"
say "install with a refused enrollment: package installed, not enrolled, reason and retry printed: ok"

# A wrong fingerprint, then a retry with the right one.
rb=$work/root-retry
newroot "$rb"
mkdir -p -m 0700 "$rb/root"
(umask 077 && echo "$token" >"$rb/root/token")
answers "$rb" "HOSTCERT_PRIMARY=$primary" "HOSTCERT_FINGERPRINT=$wrong" "HOSTCERT_TOKEN_FILE=/root/token" "HOSTCERT_NAME=web02.example.com"
out=$(dpkgin "$rb" -i "$agent_deb" 2>&1) || fail "dpkg -i with a wrong fingerprint failed:"$'\n'"$out"
installed "$rb"
echo "$out" | grep -q 'hostcert-agent: enrollment FAILED: get-ca-cert: .*fingerprint does not match' || fail "no mismatch reason in:"$'\n'"$out"
left=$(ls -A "$rb$data")
[ -z "$left" ] || fail "a wrong fingerprint left files in $data: $left"
out=$(DPKG_ROOT=$rb HOSTCERT_FINGERPRINT=$fp "$rb/usr/lib/hostcert-agent/enroll" 2>&1) || fail "retry with the right fingerprint:"$'\n'"$out"
echo "$out" | grep -q 'not enabled or started there' || fail "no DPKG_ROOT note in:"$'\n'"$out"
enrolled "$rb" web02.example.com
case $out in *"$token"*) fail "the enrollment printed the token" ;; esac
say "install with a wrong fingerprint: installed, nothing trusted; retry enrolled: ok"

# One command: the answer file, and the token file (in /root, which only root
# reads) given in the environment of dpkg, which passes it on.
rc=$work/root-enroll
newroot "$rc"
mkdir -p -m 0700 "$rc/root"
(umask 077 && echo "$token" >"$rc/root/token")
answers "$rc" "HOSTCERT_PRIMARY=$primary" "HOSTCERT_FINGERPRINT=\"$fp\"" "HOSTCERT_NAME=web03.example.com"
out=$(HOSTCERT_TOKEN_FILE=/root/token dpkgin "$rc" -i "$agent_deb" 2>&1) || fail "dpkg -i with an answer file:"$'\n'"$out"
installed "$rc"
echo "$out" | grep -q 'hostcert-agent: certificate issued' || fail "no certificate issued in:"$'\n'"$out"
enrolled "$rc" web03.example.com
case $out in *"$token"*) fail "the install printed the token" ;; esac
out=$(dpkgin "$rc" --purge hostcert-agent 2>&1) || fail "purge after enrollment:"$'\n'"$out"
[ ! -e "$rc/etc/hostcert/agent-install.env" ] || fail "purge kept the answer file"
[ -e "$rc$data/host.pem" ] || fail "purge deleted the host key"
say "install with an answer file enrolled this root against the primary; purge keeps the key: ok"
kill "$primary_pid" 2>/dev/null || true
wait "$primary_pid" 2>/dev/null || true
primary_pid=""

# 4. RPM metadata (no install: rpm --root would run the scriptlets chrooted).
rpms=("$debs"/hostcert-*.rpm)
if ! command -v rpm >/dev/null; then
	say "SKIP rpm checks: rpm not installed (apt-get install rpm)"
elif [ ! -e "${rpms[0]}" ]; then
	say "SKIP rpm checks: no .rpm in $debs"
else
	for c in agent:agent.yaml tunnel:tunnel.yaml primary:primary.env; do
		p=${c%%:*} f=/etc/hostcert/${c#*:}
		rpm=$(ls "$debs"/hostcert-"$p"-*.rpm | head -1)
		flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null)
		echo "$flags" | grep -qx "cn $f" || fail "$f is not %config(noreplace) in ${rpm##*/}: $flags"
		echo "$flags" | grep -q " /usr/lib/systemd/system/hostcert-$p.service$" || fail "no unit in ${rpm##*/}"
		scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
		for s in postinstall preuninstall postuninstall; do
			echo "$scripts" | grep -q "^$s scriptlet" || fail "${rpm##*/} has no $s scriptlet"
		done
	done
	say "rpm: config files %config(noreplace), units and scriptlets: ok"
fi
say "PASS"
