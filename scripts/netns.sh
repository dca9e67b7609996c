#!/usr/bin/env bash
# Builds, breaks and removes the test network of the partition tests (root only).
#
#   scripts/netns.sh up PREFIX     create the namespaces below
#   scripts/netns.sh down PREFIX   remove everything PREFIX created (safe to repeat)
#   scripts/netns.sh cut PREFIX LINK / heal PREFIX LINK   take a link down / up
#                                  LINK: media-primary | primary
#
# Topology (addresses from 198.18.0.0/15, the benchmarking range; nothing leaves the machine):
#
#   host(test) 198.18.9.1 ── 198.18.9.2 ┐
#   primary    198.18.1.2 ── 198.18.1.1 ┤
#   lan        198.18.2.2 ── 198.18.2.1 ┤ router (forwards)
#   media      198.18.3.2 ── 198.18.3.1 ┤
#   natgw      198.18.4.2 ── 198.18.4.1 ┘
#   nathost    198.18.5.2 ── 198.18.5.1 natgw (nftables masquerade out of 198.18.4.2)
#   dmz        198.18.6.2 ── 198.18.6.1 media (second interface; media does not forward)
#
# The DMZ host has no route beyond 198.18.6.0/24: it reaches only the media server.
# /etc/netns/PREFIX-{lan,nat,media}/hosts make the primary's name (primary.hc.test)
# resolve there; the DMZ host cannot resolve it.
set -euo pipefail
cmd=${1:?usage: netns.sh up|down|cut|heal PREFIX [LINK]}
p=${2:?prefix}
ns() { echo "$p-$1"; }
x() { ip netns exec "$(ns "$1")" "${@:2}"; }

link() { # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B   (NS "host" = the root namespace)
  local a=$1 ia=$2 aa=$3 b=$4 ib=$5 ab=$6
  ip link add "$ia" type veth peer name "$ib"
  if [ "$a" = host ]; then ip addr add "$aa" dev "$ia"; ip link set "$ia" up
  else ip link set "$ia" netns "$(ns "$a")"; x "$a" ip addr add "$aa" dev "$ia"; x "$a" ip link set "$ia" up; fi
  ip link set "$ib" netns "$(ns "$b")"; x "$b" ip addr add "$ab" dev "$ib"; x "$b" ip link set "$ib" up
}

up() {
  for n in rt pri lan media natgw nat dmz; do
    ip netns add "$(ns $n)"
    x $n ip link set lo up
    x $n sysctl -qw net.ipv4.ip_forward=0
  done
  # interface names are short: the prefix is at most 6 characters
  link host "${p}h" 198.18.9.1/24 rt "${p}rh" 198.18.9.2/24
  link pri  "${p}p" 198.18.1.2/24 rt "${p}rp" 198.18.1.1/24
  link lan  "${p}l" 198.18.2.2/24 rt "${p}rl" 198.18.2.1/24
  link media "${p}m" 198.18.3.2/24 rt "${p}rm" 198.18.3.1/24
  link natgw "${p}g" 198.18.4.2/24 rt "${p}rg" 198.18.4.1/24
  link nat  "${p}n" 198.18.5.2/24 natgw "${p}gn" 198.18.5.1/24
  link dmz  "${p}d" 198.18.6.2/24 media "${p}md" 198.18.6.1/24
  x rt sysctl -qw net.ipv4.ip_forward=1
  x natgw sysctl -qw net.ipv4.ip_forward=1
  for n in pri lan media natgw; do x $n ip route add default via "$(rtaddr $n)"; done
  ip route add 198.18.0.0/16 via 198.18.9.2 dev "${p}h" 2>/dev/null || true
  x nat ip route add default via 198.18.5.1
  # the DMZ host: no default route at all
  x natgw nft add table ip nat
  x natgw nft 'add chain ip nat post { type nat hook postrouting priority 100 ; }'
  x natgw nft add rule ip nat post oifname "${p}g" masquerade
  mkdir -p "/etc/netns/$(ns lan)"
  echo "198.18.1.2 primary.hc.test" >"/etc/netns/$(ns lan)/hosts"
  for n in nat media; do
    mkdir -p "/etc/netns/$(ns $n)"
    echo "198.18.1.2 primary.hc.test" >"/etc/netns/$(ns $n)/hosts"
  done
  mkdir -p "/etc/netns/$(ns dmz)"
  echo "127.0.0.1 localhost" >"/etc/netns/$(ns dmz)/hosts"
}

rtaddr() {
  case $1 in pri) echo 198.18.1.1;; lan) echo 198.18.2.1;; media) echo 198.18.3.1;; natgw) echo 198.18.4.1;; esac
}

down() {
  for n in rt pri lan media natgw nat dmz; do
    ip netns del "$(ns $n)" 2>/dev/null || true
    rm -rf "/etc/netns/$(ns $n)"
  done
  ip link del "${p}h" 2>/dev/null || true
  rmdir /etc/netns 2>/dev/null || true # only when no other namespace uses it
}

case $cmd in
  up) down; up ;;
  down) down ;;
  cut|heal)
    # A cut is a black hole: the router silently drops the link's packets, so
    # peers see timeouts, not quick errors, as with a real partition.
    case ${3:?link} in
      media-primary) ifc="${p}rm" ;;
      primary) ifc="${p}rp" ;;
      *) echo "unknown link $3 (want media-primary or primary)" >&2; exit 2 ;;
    esac
    x rt nft add table inet cut
    x rt nft "add chain inet cut $3 { type filter hook forward priority 0 ; }"
    x rt nft flush chain inet cut "$3"
    if [ "$cmd" = cut ]; then
      x rt nft add rule inet cut "$3" iifname "$ifc" drop
      x rt nft add rule inet cut "$3" oifname "$ifc" drop
    fi ;;
  *) echo "usage: netns.sh up|down|cut|heal PREFIX [LINK]" >&2; exit 2 ;;
esac
