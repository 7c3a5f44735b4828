#!/usr/bin/env bash
# Packets through a vhost-user net back-end, side by side on this machine: jvirtio serve net against DPDK's
# vhost PMD (testpmd net_vhost), both driven by DPDK's own front-end, testpmd's net_virtio_user, polling.
#   one-way  the front-end sends (txonly) and the back-end takes every frame: jvirtio's switch with one port,
#            testpmd's net_vhost in rxonly
#   one-way-rx  the other direction: the back-end sends and the front-end receives (rxonly): jvirtio's
#            switch with its traffic source (serve net --generate SIZE), testpmd's net_vhost in txonly
#   loop     two virtio_user ports on one front-end testpmd in io forwarding, frames injected with
#            "start tx_first 8" and looping port 0 -> back-end -> port 1 -> back-end -> port 0: jvirtio's switch
#            between two ports, or two net_vhost ports in io forwarding
# Split and packed rings (packed_vq=0/1), 64- and 1518-byte frames (SIZES), each RUNS times for SECONDS, the
# median kept, in million packets per second. The front-end's forwarding lcore runs on CPU 0, the back-end on
# CPU 1: DPDK's lcore, or every thread of jvirtio's JVM (taskset). Two seconds of quiet between runs, for the
# last one's teardown.
#
# Each run measures SECONDS after WARM (default 3) seconds of the same traffic.
#
# Usage: bench/net-side-by-side.sh [runs] [seconds]      (root: installs dpdk and dpdk-dev)
#        SIZES="64" bench/net-side-by-side.sh 3 5       (frame sizes, default "64 1518")
#        RINGS="0" SHAPES="loop" BACKS="jvirtio jvirtio-poll" ...   (a subset: split only, the loop only, and
#        jvirtio in its two modes — interrupts, a thread per ring woken by kicks; polling, --poll-us POLL_US
#        (default 100) — without DPDK; the table then shows 0 for what was not run)
# Writes the table between the net-side-by-side markers of docs/benchmarks.md and docs/net-side-by-side.svg.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/bench/lib.sh"
runs="${1:-3}"
secs="${2:-5}"
warm="${WARM:-3}"
sizes="${SIZES:-64 1518}"
work="${WORK:-/var/tmp/jvirtio-bench/net}"
mkdir -p "$work"
command -v dpdk-testpmd >/dev/null || apt_install dpdk dpdk-dev
private_jars "$work"

server=""
back_kind=""
stop_server() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi
  rm -f "$work"/*.sock
}
trap stop_server EXIT
await_socket() { for _ in $(seq 300); do [[ -S "$1" ]] && return; sleep 0.1; done; echo "no socket $1" >&2; exit 1; }
# DPDK's back-end: testpmd with net_vhost ports, waiting on stdin until the front-end is done
start_dpdk() { # mode ports [frame size]
  local vdevs=() i
  for ((i = 0; i < $2; i++)); do vdevs+=(--vdev "net_vhost$i,iface=$work/b$i.sock,queues=1"); done
  mkfifo "$work/back.in" 2>/dev/null || true
  stdbuf -oL dpdk-testpmd --lcores 0@1,1@1 --no-pci --no-huge -m 1024 --file-prefix=jvback "${vdevs[@]}" -- \
    --forward-mode="$1" --txpkts="${3:-64}" --auto-start --total-num-mbufs=65536 <"$work/back.in" >"$work/back.log" 2>&1 &
  server=$!
  back_kind=dpdk
  exec 7>"$work/back.in"
  for ((i = 0; i < $2; i++)); do await_socket "$work/b$i.sock"; done
}
# -XX:-BackgroundCompilation: the thread that needs a method compiled waits for it, so the JIT gets the CPU it
# shares with the busy-polling thread and the steady state comes within two seconds (in the background, the
# compiler takes turns with a thread that never sleeps: about 15 s, longer than the warm-up)
start_jvirtio() {
  taskset -c 1 "$JAVA_HOME/bin/java" -XX:-BackgroundCompilation --enable-native-access=io.jvirtio.core -p "$work/jars" \
    -m io.jvirtio.cli/io.jvirtio.cli.Main serve net --socket "$work/b0.sock" --stats 0 $1 >"$work/back.log" 2>&1 &
  server=$!
  back_kind=jvirtio
  await_socket "$work/b0.sock"
}
stop_back() {
  if [[ $back_kind == dpdk ]]; then
    echo >&7 || true   # testpmd ends on enter
    exec 7>&-
    wait "$server" 2>/dev/null || true
    server=""
  fi
  back_kind=""
  stop_server
}
# The front-end: testpmd with virtio_user ports, scripted through its interactive prompt; prints Mpps over
# SECONDS after WARM seconds of the same traffic (port statistics before and after): the steady rate, not
# the back-end's start — a JVM compiles its hot paths in the first seconds, DPDK's C needs no warm-up
front() { # mode packed size socket... (one port per socket)
  local mode=$1 packed=$2 size=$3 vdevs=() i=0 sock
  shift 3
  for sock in "$@"; do
    vdevs+=(--vdev "net_virtio_user$i,path=$sock,queues=1,packed_vq=$packed")
    i=$((i + 1))
  done
  local start="start"
  [[ $mode == io ]] && start="start tx_first 8"
  # (a second of quiet after the last statistics: a "stop" typed while they print cuts into their lines)
  { echo "$start"; sleep "$warm"; echo "show port stats all"; sleep "$secs"; echo "show port stats all"; sleep 1;
    echo "stop"; sleep 1; echo "quit"; } |
    stdbuf -oL dpdk-testpmd --lcores 2@1,3@0 --no-pci --no-huge -m 1024 --file-prefix=jvfront "${vdevs[@]}" -- -i \
      --forward-mode="$mode" --txpkts="$size" --total-num-mbufs=65536 2>&1 | python3 -c '
import re, sys
out = sys.stdin.read()
mode, secs, ports = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
snaps = re.findall(r"NIC statistics for port \d+.*?RX-packets:\s+(\d+)\s+RX-missed.*?TX-packets:\s+(\d+)\s+TX-errors",
                   out, re.S)
if len(snaps) != 2 * ports:
    sys.exit("no statistics from testpmd:\n" + out[-3000:])
col = 1 if mode == "txonly" else 0
count = lambda blocks: sum(int(b[col]) for b in blocks)
print("%.2f" % ((count(snaps[ports:]) - count(snaps[:ports])) / secs / 1e6))' "$mode" "$secs" "$#"
}
median() { python3 -c 'import statistics, sys; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

results="$work/results.tsv"
: >"$results"
# Each round runs every back-end once, in turn: this machine's CPUs move between a fast and a slow state for
# minutes at a time (both back-ends' figures halve together), so the back-ends are measured in the same states
# and each round's ratio compares runs made a minute apart.
for size in $sizes; do
for packed in ${RINGS:-0 1}; do
  for shape in ${SHAPES:-one-way one-way-rx loop}; do
    declare -A vals=()
    for ((r = 0; r < runs; r++)); do
      for back in ${BACKS:-jvirtio jvirtio-poll dpdk}; do
        if [[ $back == dpdk ]]; then
          case $shape in
            one-way) start_dpdk rxonly 1 ;;
            one-way-rx) start_dpdk txonly 1 "$size" ;;
            *) start_dpdk io 2 ;;
          esac
        else
          local_opts=""
          [[ $back == jvirtio-poll ]] && local_opts="--poll-us ${POLL_US:-100}" # polling: one thread serves every ring
          [[ $shape == one-way-rx ]] && local_opts="$local_opts --generate $size" # the switch's traffic source
          start_jvirtio "$local_opts"  # without --poll-us: interrupt mode, a thread per ring woken by kicks
        fi
        if [[ $shape == one-way ]]; then
          v=$(front txonly "$packed" "$size" "$work/b0.sock")
        elif [[ $shape == one-way-rx ]]; then
          v=$(front rxonly "$packed" "$size" "$work/b0.sock")
        elif [[ $back == dpdk ]]; then
          v=$(front io "$packed" "$size" "$work/b0.sock" "$work/b1.sock")
        else
          v=$(front io "$packed" "$size" "$work/b0.sock" "$work/b0.sock") # two ports of the one switch
        fi
        stop_back
        sleep 2
        vals[$back]="${vals[$back]:-} $v"
        echo "size=$size packed=$packed $shape $back run $((r + 1)): $v Mpps" >&2
      done
    done
    for back in ${BACKS:-jvirtio jvirtio-poll dpdk}; do
      # shellcheck disable=SC2086 # the runs, one word each
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$packed" "$shape" "$back" "$(median ${vals[$back]})" "${vals[$back]# }" >>"$results"
    done
    unset vals
  done
done
done

python3 - "$results" "$here/docs/benchmarks.md" "$here/docs/net-side-by-side.svg" "$runs" "$secs" "$warm" <<'EOF'
import sys, collections, datetime
results, doc_path, svg_path, runs, secs, warm = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
m = collections.defaultdict(dict)
configs = []
for size, packed, shape, back, med, allv in rows:
    key = (size, packed, shape)
    if key not in configs:
        configs.append(key)
    m[key][back] = (float(med), allv)
ring = lambda p: "packed" if p == "1" else "split"
path = lambda s: {"one-way": "one way, front-end → back-end", "one-way-rx": "one way, back-end → front-end"}.get(s, s)
lines = ["<!-- net-side-by-side:begin -->",
         "| frame | ring | path | jvirtio `serve net`, interrupts (Mpps) | jvirtio `--poll-us 100` (Mpps) "
         "| DPDK vhost PMD (Mpps) | ratio (best jvirtio / DPDK, median of rounds) | runs in round order (interrupts / polling / DPDK) |",
         "|---:|---|---|---:|---:|---:|---:|---|"]
for key in configs:
    size, packed, shape = key
    j, p, d = m[key].get("jvirtio", (0, "-")), m[key].get("jvirtio-poll", (0, "-")), m[key].get("dpdk", (0, "-"))
    # the ratio of each round (the best jvirtio run over DPDK's, a minute apart), the median of those
    js, ps, ds = ([float(x) for x in v[1].split()] if v[1] != "-" else [] for v in (j, p, d))
    n = min(len(ds), max(len(js), len(ps)))
    per = sorted(max(js[i] if i < len(js) else 0, ps[i] if i < len(ps) else 0) / ds[i] for i in range(n) if ds[i] > 0)
    ratio = (per[(len(per) - 1) // 2] + per[len(per) // 2]) / 2 if per else 0
    lines.append("| %s B | %s | %s | %.2f | %.2f | %.2f | %.2f× | %s / %s / %s |" % (size, ring(packed), path(shape), j[0], p[0],
                 d[0], ratio, j[1], p[1], d[1]))
lines.append("")
lines.append("`bench/net-side-by-side.sh %s %s` (%s): medians of %s runs of %s s each after %s s of warm-up, testpmd's "
             "net_virtio_user as the front-end of both; each round runs every back-end once, and the ratio is the median "
             "of the rounds' ratios." % (runs, secs, datetime.date.today(), runs, secs, warm))
lines.append("")
lines.append("![Mpps by back-end](net-side-by-side.svg)")
lines.append("<!-- net-side-by-side:end -->")
doc = open(doc_path).read()
b, e = "<!-- net-side-by-side:begin -->", "<!-- net-side-by-side:end -->"
block = "\n".join(lines)
if b in doc:
    doc = doc[:doc.index(b)] + block + doc[doc.index(e) + len(e):]
else:
    doc += "\n## Net: jvirtio serve net against DPDK's vhost PMD\n\n" + block + "\n"
open(doc_path, "w").write(doc)

# grouped bars: Mpps of both back-ends per configuration
W, H, left, top, bottom = 1120, 360, 50, 40, 90
gw = (W - left - 20) / len(configs)
bw = gw * 0.24
ymax = max(v[0] for key in configs for v in m[key].values()) * 1.1 or 1
out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (W, H),
       '<text x="%d" y="20" font-size="13">Million packets/s through the back-end, median of %s runs (higher is better)</text>' % (left, runs)]
step = 1 if ymax < 8 else 2 if ymax < 16 else 5
t = 0
while t <= ymax:
    y = H - bottom - t / ymax * (H - top - bottom)
    out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%d</text>'
               % (left, W - 20, y, y, left - 6, y + 4, t))
    t += step
colors = {"jvirtio": "#2c6fbb", "jvirtio-poll": "#7fb0e0", "dpdk": "#d08c3c"}
for i, key in enumerate(configs):
    x0 = left + i * gw + gw * 0.15
    for k, back in enumerate(("jvirtio", "jvirtio-poll", "dpdk")):
        v = m[key].get(back, (0, ""))[0]
        h = v / ymax * (H - top - bottom)
        out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.2f Mpps</title></rect>'
                   % (x0 + k * bw, H - bottom - h, bw - 2, h, colors[back], back, v))
    size, packed, shape = key
    out.append('<text x="%.1f" y="%d" text-anchor="middle">%s B %s</text>' % (x0 + 1.5 * bw, H - bottom + 16, size, ring(packed)))
    label = {"one-way": "front→back", "one-way-rx": "back→front"}.get(shape, shape)
    out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x0 + 1.5 * bw, H - bottom + 30, label))
for k, (back, name) in enumerate((("jvirtio", "jvirtio serve net"), ("jvirtio-poll", "jvirtio --poll-us 100"),
                                  ("dpdk", "DPDK vhost PMD (testpmd net_vhost)"))):
    x = left + k * 240
    out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'
               % (x, H - 30, colors[back], x + 14, H - 21, name))
out.append("</svg>")
open(svg_path, "w").write("\n".join(out))
print(block)
EOF
