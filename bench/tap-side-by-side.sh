#!/usr/bin/env bash
# Frames from the host's network stack into a guest through a TAP device, side by side on this machine:
#   jvirtio  serve net --tap-per-connection: the guest's own TAP device, read by jvirtio straight into the
#            guest's receive buffers, by a thread of the TAP's woken by poll
#   polled   the same with --poll-us 100: the poller that serves the guest's rings reads the TAP in its rounds
#   dpdk     testpmd forwarding (io) from DPDK's TAP PMD (net_tap, which makes the TAP device) to its vhost PMD
#            (net_vhost): OVS-DPDK's shape for a TAP port
# The guest is testpmd's net_virtio_user in rxonly (the front-end of both); the host's traffic comes from a third
# testpmd whose af_packet PMD sends frames of SIZE bytes out of the TAP device's host side (txonly), as fast as
# it can. Back-ends on CPU 1, front-end and traffic source on CPU 0 (two CPUs: the source and the guest share
# one, so the figures are this machine's, for the ratio). Reported: frames the guest received per second, and
# for jvirtio the CPU time of its TAP reader thread per frame it handled (not for the poller, which spins) and the
# share of frames read straight into the guest's buffers (`serve --stats`).
#
# Usage: bench/tap-side-by-side.sh [runs] [seconds]     (root: installs dpdk and dpdk-dev)
#        SIZES="64 1500" (default)
# Prints a table; docs/benchmarks.md keeps the one of record.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/bench/lib.sh"
runs="${1:-3}"
secs="${2:-6}"
sizes="${SIZES:-64 1500}"
work="${WORK:-/var/tmp/jvirtio-bench/tap}"
mkdir -p "$work"
command -v dpdk-testpmd >/dev/null || apt_install dpdk dpdk-dev
private_jars "$work"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  ip link del jvb0 2>/dev/null || true
  rm -f "$work"/*.sock "$work"/*.in
}
trap cleanup EXIT
await() { for _ in $(seq 300); do eval "$1" && return; sleep 0.1; done; echo "timed out: $1" >&2; exit 1; }

# one run: back-end kind, frame size; prints "Mpps [reader-us-per-frame direct-share]"
run() {
  local back=$1 size=$2 ifname sock="$work/b0.sock" tid="" c0=0 c1=0 l0="" l1="" poll=()
  mkfifo "$work/back.in" "$work/gen.in"
  [[ $back == polled ]] && poll=(--poll-us 100)
  if [[ $back != dpdk ]]; then
    taskset -c 1 "$JAVA_HOME/bin/java" -XX:-BackgroundCompilation --enable-native-access=io.jvirtio.core -p "$work/jars" \
      -m io.jvirtio.cli/io.jvirtio.cli.Main serve net --socket "$sock" --tap-per-connection 'jvb%d' "${poll[@]}" \
      --stats 1 >"$work/back.log" 2>&1 &
    pids+=($!)
    ifname=jvb0
  else
    stdbuf -oL dpdk-testpmd --lcores 0@1,1@1 --no-pci --no-huge -m 1024 --file-prefix=tapback \
      --vdev net_tap0,iface=dtap0 --vdev "net_vhost0,iface=$sock,queues=1" -- --forward-mode=io --auto-start \
      --total-num-mbufs=65536 <"$work/back.in" >"$work/back.log" 2>&1 &
    pids+=($!)
    exec 7>"$work/back.in"
    ifname=dtap0
  fi
  await "[[ -S $sock ]]"
  # the guest: counts what it receives over SECONDS, after the traffic has run for a while
  { sleep 2; echo start; sleep 5; echo "show port stats all"; sleep "$secs"; echo "show port stats all"; sleep 1;
    echo stop; sleep 1; echo quit; } |
    stdbuf -oL dpdk-testpmd --lcores 2@1,3@0 --no-pci --no-huge -m 512 --file-prefix=tapfront \
      --vdev "net_virtio_user0,path=$sock,queues=1" -- -i --forward-mode=rxonly --total-num-mbufs=32768 \
      >"$work/front.log" 2>&1 &
  local front=$!
  await "ip link show $ifname >/dev/null 2>&1"
  ip link set "$ifname" up
  taskset -c 0 dpdk-testpmd --lcores 4@0,5@0 --no-pci --no-huge -m 512 --file-prefix=tapgen \
    --vdev "net_af_packet0,iface=$ifname,blocksz=4096,framesz=2048,framecnt=512,qdisc_bypass=1" -- \
    --forward-mode=txonly --txpkts="$size" --auto-start --total-num-mbufs=16384 <"$work/gen.in" >"$work/gen.log" 2>&1 &
  pids+=($!)
  exec 8>"$work/gen.in" # (after its reader: opening a FIFO waits for the other end)
  sleep 4
  if [[ $back != dpdk ]]; then
    local jpid=${pids[0]} t
    for t in /proc/"$jpid"/task/*; do [[ $(cat "$t/comm") == jvirtio-tap* ]] && tid=${t##*/}; done
    [[ $back == jvirtio ]] && c0=$(awk '{print $14 + $15}' /proc/"$jpid"/task/"$tid"/stat)
    l0=$(grep "frames to" "$work/back.log" | tail -1)
  fi
  sleep "$secs"
  if [[ $back != dpdk ]]; then
    [[ $back == jvirtio ]] && c1=$(awk '{print $14 + $15}' /proc/"${pids[0]}"/task/"$tid"/stat)
    l1=$(grep "frames to" "$work/back.log" | tail -1)
  fi
  wait "$front" || true
  exec 8>&-
  [[ $back == dpdk ]] && exec 7>&-
  cleanup
  python3 - "$work/front.log" "$secs" "$c0" "$c1" "$l0" "$l1" <<'PY'
import re, sys
log, secs, c0, c1, l0, l1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
out = open(log).read()
# the guest's statistics, SECONDS apart, once the traffic has run 5 s
rx = [int(x) for x in re.findall(r"NIC statistics for port \d+.*?RX-packets:\s+(\d+)", out, re.S)]
mpps = (rx[-1] - rx[-2]) / secs / 1e6 if len(rx) >= 2 else 0
def nums(l):
    m = re.search(r"net: ([\d,]+) frames to guests(?: \(([\d,]+) read straight[^)]*\))?.*?([\d,]+) dropped", l)
    return [int((x or "0").replace(",", "")) for x in m.groups()] if m else [0, 0, 0]
if l0 and l1:
    a, b = nums(l0), nums(l1)
    frames = b[0] - a[0] + b[2] - a[2]
    cpu = "%.2f" % ((c1 - c0) / 100.0 * 1e6 / max(frames, 1)) if c1 else "-"  # the poller spins: no figure
    print("%.3f %s %.0f" % (mpps, cpu, 100.0 * (b[1] - a[1]) / max(b[0] - a[0], 1)))
else:
    print("%.3f" % mpps)
PY
}

printf '| frame | jvirtio `--tap-per-connection` (Mpps) | jvirtio `--poll-us 100` (Mpps) | DPDK net_tap → net_vhost, io (Mpps) | ratio (jvirtio / DPDK) | ratio (polled / DPDK) | jvirtio TAP reader, CPU µs per frame | read straight into the guest (jvirtio / polled) |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for size in $sizes; do
  js=() ps=() ds=() us=() share=() pshare=()
  for ((r = 0; r < runs; r++)); do
    read -r j u s <<<"$(run jvirtio "$size")"
    sleep 2
    read -r p _ q <<<"$(run polled "$size")"
    sleep 2
    d=$(run dpdk "$size")
    sleep 2
    echo "size=$size run $((r + 1)): jvirtio $j Mpps ($u us/frame, $s% direct), polled $p Mpps ($q% direct)," \
      "dpdk $d Mpps" >&2
    js+=("$j") ps+=("$p") ds+=("$d") us+=("$u") share+=("$s") pshare+=("$q")
  done
  python3 - "$size" "${js[*]}" "${ps[*]}" "${ds[*]}" "${us[*]}" "${share[*]}" "${pshare[*]}" <<'PY'
import statistics, sys
size = sys.argv[1]
j, p, d, u, s, q = ([float(x) for x in a.split()] for a in sys.argv[2:8])
med = statistics.median
rj = [a / b for a, b in zip(j, d) if b > 0]
rp = [a / b for a, b in zip(p, d) if b > 0]
print("| %s B | %.3f | %.3f | %.3f | %.2f× | %.2f× | %.2f | %.0f %% / %.0f %% |" % (size, med(j), med(p), med(d),
      med(rj) if rj else 0, med(rp) if rp else 0, med(u), med(s), med(q)))
PY
done
