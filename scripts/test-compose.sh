#!/usr/bin/env bash
# The docker-compose demo as a test, on this machine's Docker engine (run by scripts/test.sh):
# builds the image under a unique tag (scripts/build-image.sh), starts docker-compose.yml under
# a unique project name, asserts that the three agents converge and that the client on node0
# gets answers from the server on node2 through the overlay, then removes everything it created
# (containers, network, volumes, image) and checks that nothing is left.
#
# Without a Docker engine (or docker-compose) it fails, saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

started_at=$SECONDS
say() { echo "compose test: $*"; }
fail() { echo "compose test: FAIL: $*" >&2; exit 1; }
unavailable() { fail "$1: this test needs Docker"; }
command -v docker >/dev/null 2>&1 || unavailable "docker is not installed"
docker info >/dev/null 2>&1 || unavailable "the Docker engine does not answer (docker info)"
if command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  unavailable "neither docker-compose nor the docker compose plugin is installed"
fi
ensure_packages jq:jq

id="$(date +%s)-$$"
project="ovltest-$id"
tag="overlay:test-$id"
export OVERLAY_IMAGE="$tag"
compose() { "${compose_cmd[@]}" -p "$project" -f docker-compose.yml "$@"; }
up=0

cleanup() {
  local rc=$? left
  if [ "$rc" != 0 ] && [ "$up" = 1 ]; then
    echo "---- compose ps / last log lines of each service (for the failure above) ----" >&2
    compose ps >&2 || true
    compose logs --no-color --tail 25 >&2 || true
  fi
  if [ "$up" = 1 ]; then
    compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || echo "compose test: docker-compose down failed" >&2
  fi
  docker image rm "$tag" >/dev/null 2>&1 || true
  left="$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(
    docker network ls -q --filter "label=com.docker.compose.project=$project")$(
    docker volume ls -q --filter "label=com.docker.compose.project=$project")$(
    docker image ls -q "$tag")"
  if [ -n "$left" ]; then
    echo "compose test: FAIL: left behind after teardown: $left" >&2
    rc=1
  elif [ "$up" = 1 ] || [ "$rc" = 0 ]; then
    say "removed containers, network, volumes and image $tag"
  fi
  exit "$rc"
}
trap cleanup EXIT

say "building image $tag (scripts/build-image.sh)"
scripts/build-image.sh "$tag"

say "starting project $project"
up=1
compose up -d 2>&1 | sed 's/^/  /'
up_at=$SECONDS

# status NODE: the JSON status of NODE's agent, via docker-compose exec (empty if not up yet).
status() { compose exec -T "$1" overlay-agent status --json 2>/dev/null || true; }

# 1. All three agents converge: each is ready and sees the two others reachable with a subnet.
deadline=$((SECONDS + 90))
for node in node0 node1 node2; do
  until status "$node" | jq -e '.ready and ([.peers[] | select(.reachable and .subnet != null)]
                                  | length) == 2' >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] ||
      fail "$node did not see two reachable peers with subnets within 90 s: $(status "$node")"
    sleep 1
  done
done
say "all three agents converged $((SECONDS - up_at)) s after docker-compose up; node0's status:"
compose exec -T node0 overlay-agent status | sed 's/^/  /'

s0="$(status node0)"
s2="$(status node2)"
cluster="$(jq -r .cluster <<<"$s2")"
addr0="$(jq -r .address <<<"$s0")"
addr2="$(jq -r .address <<<"$s2")"

ip2int() { local IFS=.; set -- $1; echo $((($1 << 24) | ($2 << 16) | ($3 << 8) | $4)); }
in_cidr() {
  local len=${2#*/} mask
  mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
  ((($(ip2int "$1") & mask) == ($(ip2int "${2%/*}") & mask)))
}
for a in "$addr0" "$addr2"; do
  in_cidr "$a" "$cluster" || fail "node address $a is not in the overlay range $cluster"
done

# 2. The client (node0) got answers from the server (node2), addressed to node2's overlay
#    address and seen by the server as coming from node0's overlay address.
want="client@node0 -> $addr2 (node2): hello from node2 ($addr2) to $addr0"
client="$(compose ps -q client)"
[ -n "$client" ] || fail "no client container"
deadline=$((SECONDS + 60))
while :; do
  answers="$(docker logs "$client" 2>&1 | grep -cxF -- "$want" || true)"
  [ "$answers" -ge 3 ] && break
  [ "$SECONDS" -lt "$deadline" ] || {
    docker logs --tail 10 "$client" >&2
    fail "the client got $answers answers (want 3) like \"$want\" within 60 s"
  }
  sleep 1
done
say "the client got $answers answers over the overlay $((SECONDS - up_at)) s after up, e.g.:"
docker logs "$client" 2>&1 | grep -xF -- "$want" | tail -n 1 | sed 's/^/  /'

# 3. And the agents carried them: node2 received inner packets from node0, node0 sent to node2.
rx="$(status node2 | jq '[.peers[] | select(.name == "node0") | .rx_packets] | add // 0')"
tx="$(status node0 | jq '[.peers[] | select(.name == "node2") | .tx_packets] | add // 0')"
[ "$rx" -gt 0 ] || fail "node2's agent shows no packets received from node0"
[ "$tx" -gt 0 ] || fail "node0's agent shows no packets sent to node2"
say "node2's agent received $rx packets from node0, node0's agent sent $tx to node2"

say "PASS in $((SECONDS - started_at)) s (image build included)"
