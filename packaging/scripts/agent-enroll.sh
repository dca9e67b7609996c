#!/bin/sh
# hostcert-agent install-time enrollment, installed as
# /usr/lib/hostcert-agent/enroll. The package's post-install script runs it;
# an operator runs it again to retry (docs/packaging.md, "Enrolling at
# installation").
#
# Values, each from the environment or else from the answer file
# /etc/hostcert/agent-install.env (KEY=VALUE lines, # comments; owned by
# root and writable by nobody else, since it decides which CA this host
# trusts):
#   HOSTCERT_PRIMARY      the primary's HOST[:PORT]                  (required)
#   HOSTCERT_FINGERPRINT  the CA fingerprint, from `hostcert-primary ca show` (required)
#   HOSTCERT_TOKEN_FILE   a file holding an enrollment token          (optional)
#   HOSTCERT_TUNNELS      tunnels HOST:PORT, separated by spaces      (optional)
#   HOSTCERT_NAME         the host name to request (default: the FQDN) (optional)
#
# Steps: confirm the CA by fingerprint (get-ca-cert, which also records the
# primary and tunnels for the service), get a certificate (get-cert, with the
# token when given), enable and start hostcert-agent.service. The agent runs
# as the service user, so the files it writes belong to the service; the
# token file is read here, as root, and handed over in HOSTCERT_TOKEN.
#
# Exit status: 0 enrolled (or already enrolled); 3 nothing to do: no values
# given (prints the next step); 1 a step failed (the reason is printed;
# nothing is enabled; run this again once fixed). Honours DPKG_ROOT: every
# path, the answer file's included, is inside that root, and the service is
# neither enabled nor started there.
set -u

root="${DPKG_ROOT:-}"
answers=/etc/hostcert/agent-install.env
config=/etc/hostcert/agent.yaml
state=/var/lib/hostcert/agent
agent="$root/usr/bin/hostcert-agent"
me=hostcert-agent

say() { echo "$me: $*"; }
# reason OUTPUT: the agent's one-line reason (its last line, unprefixed).
reason() { printf '%s\n' "$1" | tail -1 | sed "s/^$me: //"; }
fail() {
	echo "$me: enrollment FAILED: $*" >&2
	echo "$me: the package is installed, this host is not enrolled and the service is not enabled; fix the cause and run: sudo /usr/lib/hostcert-agent/enroll" >&2
	exit 1
}

# Answer file: strict KEY=VALUE, known keys only; values may be quoted.
f_primary="" f_fingerprint="" f_token_file="" f_tunnels="" f_name=""
if [ -e "$root$answers" ]; then
	owner_mode=$(stat -L -c '%u %a' "$root$answers") || fail "cannot read $answers"
	owner=${owner_mode% *} mode=${owner_mode#* }
	if [ "$owner" != 0 ] || [ $((0$mode & 022)) -ne 0 ]; then
		fail "$answers must belong to root and be writable only by root (it is uid $owner, mode $mode): chown root: $answers && chmod 600 $answers"
	fi
	n=0
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		line=$(printf '%s' "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
		case $line in '' | '#'*) continue ;; esac
		case $line in *=*) ;; *) fail "$answers line $n: want KEY=VALUE, got: $line" ;; esac
		key=${line%%=*} val=${line#*=}
		case $val in
		\"*\") val=${val#\"} val=${val%\"} ;;
		\'*\') val=${val#\'} val=${val%\'} ;;
		esac
		case $key in
		HOSTCERT_PRIMARY) f_primary=$val ;;
		HOSTCERT_FINGERPRINT) f_fingerprint=$val ;;
		HOSTCERT_TOKEN_FILE) f_token_file=$val ;;
		HOSTCERT_TUNNELS) f_tunnels=$val ;;
		HOSTCERT_NAME) f_name=$val ;;
		*) fail "$answers line $n: unknown key $key (known: HOSTCERT_PRIMARY, HOSTCERT_FINGERPRINT, HOSTCERT_TOKEN_FILE, HOSTCERT_TUNNELS, HOSTCERT_NAME)" ;;
		esac
	done <"$root$answers"
fi
# The environment wins over the file.
primary=${HOSTCERT_PRIMARY:-$f_primary}
fingerprint=${HOSTCERT_FINGERPRINT:-$f_fingerprint}
token_file=${HOSTCERT_TOKEN_FILE:-$f_token_file}
tunnels=${HOSTCERT_TUNNELS:-$f_tunnels}
name=${HOSTCERT_NAME:-$f_name}

if [ -z "$primary" ] && [ -z "$fingerprint" ]; then
	say "installed; this host is not enrolled yet. Next, as root:"
	say "  HOSTCERT_PRIMARY=hostcert.example.com:1556 HOSTCERT_FINGERPRINT='AB:CD:...' HOSTCERT_TOKEN_FILE=/root/token /usr/lib/hostcert-agent/enroll"
	say "(the fingerprint is in \`hostcert-primary ca show\`; the token only if the primary's level needs one; or write the values to $answers before installing: docs/packaging.md)"
	exit 3
fi
[ -n "$primary" ] || fail "HOSTCERT_FINGERPRINT is set but HOSTCERT_PRIMARY is not: both are needed"
[ -n "$fingerprint" ] || fail "HOSTCERT_PRIMARY is set but HOSTCERT_FINGERPRINT is not: the CA is trusted only by fingerprint"

if [ -e "$root$state/host.pem" ]; then
	say "already enrolled ($state/host.pem exists); nothing to enroll"
else
	# The service user's uid and gid, from NSS or, under DPKG_ROOT, the files.
	if [ -n "$root" ]; then
		pw=$(grep '^hostcert:' "$root/etc/passwd") || fail "no hostcert user in $root/etc/passwd"
	else
		pw=$(getent passwd hostcert) || fail "no hostcert user (the package creates it; reinstall the package)"
	fi
	uid=$(echo "$pw" | cut -d: -f3) gid=$(echo "$pw" | cut -d: -f4)
	install -d -o "$uid" -g "$gid" -m 0700 "$root$state" || fail "cannot create $state"

	token=""
	if [ -n "$token_file" ]; then
		[ -r "$root$token_file" ] || fail "token file $token_file does not exist or is not readable"
		token=$(tr -d ' \t\r\n' <"$root$token_file")
		[ -n "$token" ] || fail "token file $token_file is empty"
	fi

	# as_service CMD...: the agent as the service user, bounded in time;
	# with_token set: with the token in its environment (never in argv).
	with_token=""
	as_service() {
		set -- "$agent" --config "$root$config" ${root:+--data "$root$state"} "$@"
		if command -v timeout >/dev/null; then set -- timeout 120 "$@"; fi
		if [ -n "$with_token" ]; then set -- env "HOSTCERT_TOKEN=$token" "$@"; fi
		if command -v setpriv >/dev/null; then
			HOME="$root$state" setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$@"
		else
			# No setpriv: run as root and hand the files to the service.
			"$@"
			rc=$?
			chown -R "$uid:$gid" "$root$state"
			return $rc
		fi
	}

	set -- --primary "$primary"
	for t in $tunnels; do set -- "$@" --tunnel "$t"; done
	say "confirming the CA of $primary by fingerprint"
	out=$(as_service "$@" get-ca-cert --fingerprint "$fingerprint" 2>&1) || fail "get-ca-cert: $(reason "$out")"
	echo "$out" | sed "s/^/$me: /"

	set -- --primary "$primary"
	for t in $tunnels; do set -- "$@" --tunnel "$t"; done
	[ -z "$name" ] || set -- "$@" --name "$name"
	say "requesting this host's certificate${token:+ (with the token from $token_file)}"
	with_token=$token
	out=$(as_service "$@" get-cert 2>&1) || fail "get-cert: $(reason "$out")"
	echo "$out" | sed "s/^/$me: /"
fi

if [ -n "$root" ]; then
	say "installing into $root (DPKG_ROOT): the service is not enabled or started there; on the running system: systemctl enable --now hostcert-agent"
elif [ -d /run/systemd/system ]; then
	systemctl enable --now hostcert-agent.service >/dev/null 2>&1 || fail "systemctl enable --now hostcert-agent: see journalctl -u hostcert-agent"
	say "enrolled; hostcert-agent.service enabled and started (hostcert-agent status shows the certificate)"
else
	say "enrolled; systemd is not running here: start the agent with your service manager (hostcert-agent run --config $config)"
fi
exit 0
