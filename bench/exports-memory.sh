#!/usr/bin/env bash
# Memory and start-up of many idle blk exports: one `jvirtio serve` process with N `--export`s against one
# qemu-storage-daemon process with N exports, and against N qemu-storage-daemon processes; RSS (VmRSS, summed
# over processes) once every socket listens, and the time from start to the last socket.
# Usage: bench/exports-memory.sh [counts...]      (default: 1 10 50; installs qemu-utils if missing)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/env.sh"
counts=("${@:-1 10 50}")
read -r -a counts <<<"${counts[*]}"
work="${TMPDIR:-/tmp}/jvirtio-exports"
command -v qemu-storage-daemon >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-utils; }
(cd "$here" && mvn -B -q -pl jvirtio-cli -am install -DskipTests >&2)
rm -rf "$work" && mkdir -p "$work"
for i in $(seq 50); do truncate -s 64M "$work/d$i.img"; done
jv() { exec "$JAVA_HOME/bin/java" --enable-native-access=io.jvirtio.core -p "$here/jvirtio-cli/target/jvirtio-cli-0.1.0-SNAPSHOT.jar:$here/jvirtio-cli/target/modules" -m io.jvirtio.cli/io.jvirtio.cli.Main "$@"; }
rss() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' /proc/$p/status))); done; echo $((t / 1024)); }
wait_sockets() { for s in "$@"; do until [[ -S $s ]]; do sleep 0.01; done; done; }
now() { date +%s.%N; }
printf '| exports | jvirtio serve (1 process) | qemu-storage-daemon (1 process) | qemu-storage-daemon (1 process each) |\n|---:|---:|---:|---:|\n'
for n in "${counts[@]}"; do
  socks=(); args=(); qargs=()
  for i in $(seq "$n"); do
    socks+=("$work/j$i.sock"); args+=(--export "blk,socket=$work/j$i.sock,image=$work/d$i.img")
    qargs+=(--blockdev "driver=file,node-name=f$i,filename=$work/d$i.img" --export "type=vhost-user-blk,id=e$i,node-name=f$i,writable=on,addr.type=unix,addr.path=$work/q$i.sock")
  done
  t0=$(now); jv serve "${args[@]}" --stats 0 >/dev/null 2>&1 & jp=$!
  wait_sockets "${socks[@]}"; t1=$(now); sleep 2; jr=$(rss $jp); kill $jp; wait $jp 2>/dev/null || true
  qsocks=(); for i in $(seq "$n"); do qsocks+=("$work/q$i.sock"); done
  t2=$(now); qemu-storage-daemon "${qargs[@]}" >/dev/null 2>&1 & qp=$!
  wait_sockets "${qsocks[@]}"; t3=$(now); sleep 1; qr=$(rss $qp); kill $qp; wait $qp 2>/dev/null || true
  rm -f "$work"/q*.sock
  pids=(); t4=$(now)
  for i in $(seq "$n"); do
    qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$work/d$i.img" --export "type=vhost-user-blk,id=e,node-name=f,writable=on,addr.type=unix,addr.path=$work/q$i.sock" >/dev/null 2>&1 &
    pids+=($!)
  done
  wait_sockets "${qsocks[@]}"; t5=$(now); sleep 1; qn=$(rss "${pids[@]}"); kill "${pids[@]}"; wait 2>/dev/null || true
  rm -f "$work"/q*.sock "$work"/j*.sock
  awk -v n="$n" -v jr="$jr" -v qr="$qr" -v qn="$qn" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v f="$t5" \
    'BEGIN { printf "| %d | %d MB, %.2f s | %d MB, %.2f s | %d MB, %.2f s |\n", n, jr, b - a, qr, d - c, qn, f - e }'
done
