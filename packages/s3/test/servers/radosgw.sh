#!/usr/bin/env bash
# Starts/stops a throwaway single-node Ceph cluster (mon + memstore OSD + radosgw) on loopback,
# with all state under <dir>, for @walship/s3's integration tests.
#
#   radosgw.sh start <dir>   # prints `export WALSHIP_RADOSGW_*=…` lines on stdout (logs on stderr)
#   radosgw.sh stop <dir>    # kills the daemons and removes <dir>
#
# Typical use (CI):
#   eval "$(packages/s3/test/servers/radosgw.sh start /tmp/walship-rgw)"
#   npm test -w @walship/s3
#   packages/s3/test/servers/radosgw.sh stop /tmp/walship-rgw
#
# Needs (Debian 12): apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd
# Ceph Pacific 16.2.x; ~15 s to start, ~450 MB RSS. Ports are chosen free at start.
set -euo pipefail

log() { echo "radosgw.sh: $*" >&2; }
die() { log "$*"; exit 1; }

cmd=${1:-}
dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || die "usage: $0 start|stop <dir>"

MARKER=.walship-radosgw

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

stop_daemons() {
  local d=$1 pids=() f pid
  shopt -s nullglob
  for f in "$d"/run/*.pid; do
    pid=$(cat "$f" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] && pids+=("$pid")
  done
  shopt -u nullglob
  ((${#pids[@]})) || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

case "$cmd" in
start)
  for b in monmaptool ceph-mon ceph-osd ceph radosgw radosgw-admin; do
    command -v "$b" >/dev/null || die "$b not found; install with: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -e "$dir/$MARKER" ]]; then stop_daemons "$dir"; fi
  [[ -z "$(ls -A "$dir")" || -e "$dir/$MARKER" ]] || die "$dir is not empty"
  find "$dir" -mindepth 1 -delete
  touch "$dir/$MARKER"
  mkdir -p "$dir/run" "$dir/log" "$dir/mon" "$dir/osd/ceph-0"

  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  mon_port=$(free_port)
  rgw_port=$(free_port)
  while [[ "$rgw_port" == "$mon_port" ]]; do rgw_port=$(free_port); done
  access_key=WALSHIP$(head -c 64 /dev/urandom | tr -dc 'A-Z0-9' | head -c 13)
  secret_key=$(head -c 256 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 40)
  conf="$dir/ceph.conf"

  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
keyring = $dir/keyring
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = 127.0.0.1
rgw data = $dir/rgw
EOF
  : >"$dir/keyring"
  mkdir -p "$dir/rgw"

  log "creating monitor on 127.0.0.1:$mon_port"
  monmaptool --create --add a "v1:127.0.0.1:$mon_port" --fsid "$fsid" "$dir/monmap" >&2
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >&2
  ceph-mon -c "$conf" -i a >&2

  log "creating osd.0 (memstore)"
  ok=0
  for _ in $(seq 1 60); do
    if timeout 10 ceph -c "$conf" osd new "$osd_uuid" >"$dir/osd-id" 2>>"$dir/log/setup.log"; then ok=1; break; fi
    sleep 0.5
  done
  ((ok)) || die "monitor did not answer (see $dir/log)"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/setup.log" 2>&1
  up=0
  for attempt in $(seq 1 5); do
    ceph-osd -c "$conf" -i 0 >>"$dir/log/setup.log" 2>&1 || true
    for _ in $(seq 1 40); do
      if timeout 10 ceph -c "$conf" osd stat 2>/dev/null | grep -q '1 up'; then up=1; break; fi
      sleep 0.5
    done
    ((up)) && break
    log "osd.0 not up yet (attempt $attempt), restarting it"
    if [[ -f "$dir/run/osd.0.pid" ]]; then kill "$(cat "$dir/run/osd.0.pid")" 2>/dev/null || true; sleep 1; fi
  done
  ((up)) || die "osd.0 did not come up (see $dir/log)"

  log "starting radosgw on 127.0.0.1:$rgw_port"
  radosgw -c "$conf" -n client.rgw >>"$dir/log/setup.log" 2>&1
  ready=0
  for _ in $(seq 1 240); do
    if node -e "fetch('http://127.0.0.1:$rgw_port/').then(r=>process.exit(r.status<500?0:1),()=>process.exit(1))" 2>/dev/null; then
      ready=1; break
    fi
    sleep 0.5
  done
  ((ready)) || die "radosgw did not answer on 127.0.0.1:$rgw_port (see $dir/log)"

  radosgw-admin -c "$conf" -n client.rgw user create --uid=walship --display-name=walship \
    --access-key="$access_key" --secret-key="$secret_key" >>"$dir/log/setup.log" 2>&1 \
    || die "radosgw-admin user create failed (see $dir/log/setup.log)"

  cat >"$dir/env" <<EOF
export WALSHIP_RADOSGW_ENDPOINT=http://127.0.0.1:$rgw_port
export WALSHIP_RADOSGW_ACCESS_KEY=$access_key
export WALSHIP_RADOSGW_SECRET_KEY=$secret_key
EOF
  cat "$dir/env"
  log "ready"
  ;;
stop)
  [[ -d "$dir" ]] || exit 0
  dir=$(cd "$dir" && pwd)
  [[ -e "$dir/$MARKER" ]] || die "$dir was not created by radosgw.sh start; refusing to touch it"
  stop_daemons "$dir"
  rm -rf "$dir"
  log "stopped"
  ;;
*)
  die "usage: $0 start|stop <dir>"
  ;;
esac
