#!/usr/bin/env bash
# Uncached block I/O, side by side on this machine: host fio on the image (the device's limit),
# qemu-storage-daemon (aio=native and aio=io_uring, cache.direct=on) and jvirtio serve blk --cache none
# (io_uring and threads engines). Every back-end but fio is driven by the same front-end, jvirtio bench blk.
# 4 KiB random reads and writes at depth 1 and 32, 128 KiB sequential reads at depth 32; each back-end and
# workload RUNS times, the median kept. The page cache is dropped before every measurement.
#
# Usage: bench/blk-side-by-side.sh [runs] [seconds]      (root: installs fio and qemu-utils, drops caches)
#   IMAGE=/var/tmp/jvirtio-bench/disk.img SIZE=8G        where the image lives and how big it is
# Writes the table between the blk-side-by-side markers of docs/benchmarks.md and docs/blk-side-by-side.svg.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/bench/lib.sh"
runs="${1:-3}"
secs="${2:-8}"
image="${IMAGE:-/var/tmp/jvirtio-bench/disk.img}"
size="${SIZE:-8G}"
work="$(dirname "$image")"
results="$work/results.tsv"

need=()
command -v fio >/dev/null || need+=(fio)
command -v qemu-storage-daemon >/dev/null || need+=(qemu-utils)
((${#need[@]} == 0)) || apt_install "${need[@]}"
mkdir -p "$work"
if [[ ! -f "$image" || ! -f "$image.filled" ]]; then
  echo "writing $size of random data to $image (every block allocated, so reads reach the disk)..." >&2
  fio --name=fill --filename="$image" --rw=write --bs=1M --size="$size" --direct=1 --ioengine=libaio \
    --iodepth=8 --refill_buffers --output=/dev/null
  touch "$image.filled"
fi
private_jars "$work"

workloads=("randread 4096 1" "randread 4096 32" "randwrite 4096 1" "randwrite 4096 32" "read 131072 32")
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
sock="$work/bench.sock"
server=""
stop_server() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi
  rm -f "$sock"
}
trap stop_server EXIT
start_server() { # name
  rm -f "$sock"
  case "$1" in
    qsd-native|qsd-io_uring)
      qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$image,aio=${1#qsd-},cache.direct=on" \
        --export "type=vhost-user-blk,id=e,node-name=f,writable=on,addr.type=unix,addr.path=$sock" \
        >"$work/server.log" 2>&1 &
      server=$! ;;
    jvirtio-io_uring|jvirtio-threads)
      jv serve blk --socket "$sock" --image "$image" --cache none --aio "${1#jvirtio-}" --stats 0 \
        >"$work/server.log" 2>&1 &
      server=$! ;;
  esac
  for _ in $(seq 300); do [[ -S "$sock" ]] && return; sleep 0.1; done
  echo "$1 did not come up; its log:" >&2; cat "$work/server.log" >&2; exit 1
}
measure() { # backend rw bs depth -> IOPS
  local b=$1 rw=$2 bs=$3 qd=$4
  drop
  if [[ $b == fio ]]; then
    fio --name=host --filename="$image" --rw="$rw" --bs="$bs" --iodepth="$qd" --direct=1 --ioengine=io_uring \
      --runtime="$secs" --time_based --output-format=json | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
print(round(j["read"]["iops"] + j["write"]["iops"]))'
  else
    jv bench blk --socket "$sock" --rw "$rw" --bs "$bs" --iodepth "$qd" --runtime "$secs" --json \
      2>/dev/null | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["iops"]))'
  fi
}

: > "$results"
for run in $(seq "$runs"); do
  for b in fio qsd-native qsd-io_uring jvirtio-io_uring jvirtio-threads; do
    [[ $b == fio ]] || start_server "$b"
    for w in "${workloads[@]}"; do
      read -r rw bs qd <<<"$w"
      iops=$(measure "$b" "$rw" "$bs" "$qd")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$b" "$rw" "$bs" "$qd" "$iops" | tee -a "$results" >&2
    done
    stop_server
  done
done

python3 - "$results" "$here/docs/benchmarks.md" "$here/docs/blk-side-by-side.svg" "$runs" "$secs" "$size" <<'PY'
import statistics, sys, datetime, collections
results, doc, svg, runs, secs, size = sys.argv[1:]
data = collections.defaultdict(list)
for line in open(results):
    run, b, rw, bs, qd, iops = line.split()
    data[(rw, int(bs), int(qd), b)].append(int(iops))
backends = ["fio", "qsd-native", "qsd-io_uring", "jvirtio-io_uring", "jvirtio-threads"]
names = {"fio": "host fio (io_uring, direct)", "qsd-native": "qemu-storage-daemon aio=native",
         "qsd-io_uring": "qemu-storage-daemon aio=io_uring", "jvirtio-io_uring": "jvirtio --cache none --aio io_uring",
         "jvirtio-threads": "jvirtio --cache none --aio threads"}
loads = []
for (rw, bs, qd, b) in data:
    if (rw, bs, qd) not in loads:
        loads.append((rw, bs, qd))
med = {k: statistics.median(v) for k, v in data.items()}
label = lambda l: f"{l[0]} {l[1] // 1024} KiB QD{l[2]}"
rows = ["| workload | " + " | ".join(names[b] for b in backends) + " | jvirtio/qsd native | jvirtio/fio |",
        "|---|" + "---:|" * (len(backends) + 2)]
for l in loads:
    cells = [f"{med[l + (b,)]:,.0f}" for b in backends]
    j, q, f = med[l + ("jvirtio-io_uring",)], med[l + ("qsd-native",)], med[l + ("fio",)]
    rows.append(f"| {label(l)} | " + " | ".join(cells) + f" | {j / q:.2f}× | {j / f:.2f}× |")
table = "\n".join(rows)
text = f"""`bench/blk-side-by-side.sh {runs} {secs}` ({datetime.date.today()}): a {size} raw image of random data on
this machine's disk, the page cache dropped before each measurement; IOPS, median of {runs} runs of {secs} s. Every
back-end but host fio is driven by `jvirtio bench blk` over vhost-user (the same front-end and driver for all);
host fio runs on the image directly and is the device's limit.

{table}

![IOPS by back-end](blk-side-by-side.svg)
"""
src = open(doc).read()
begin, end = "<!-- blk-side-by-side:begin -->", "<!-- blk-side-by-side:end -->"
if begin in src:
    a, rest = src.split(begin, 1)
    _, b = rest.split(end, 1)
    src = a + begin + "\n" + text + end + b
else:
    src += "\n## Uncached block I/O: jvirtio vs qemu-storage-daemon vs the disk\n\n" + begin + "\n" + text + end + "\n"
open(doc, "w").write(src)

# grouped bar chart, IOPS relative to host fio per workload
colors = ["#888888", "#d08c3c", "#e8b86a", "#2c6fbb", "#7aa7dd"]
W, H, left, top, bottom = 860, 380, 60, 40, 80
gw = (W - left - 20) / len(loads)
bw = gw * 0.8 / len(backends)
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<text x="{left}" y="20" font-size="13">IOPS relative to host fio (1.0 = the disk\'s limit here), median of {runs} runs</text>']
ymax = max(med[l + (b,)] / med[l + ("fio",)] for l in loads for b in backends) * 1.1
for t in [0, 0.25, 0.5, 0.75, 1.0, 1.25]:
    if t <= ymax:
        y = H - bottom - t / ymax * (H - top - bottom)
        out.append(f'<line x1="{left}" x2="{W - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/><text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{t:.2f}</text>')
for i, l in enumerate(loads):
    x0 = left + i * gw + gw * 0.1
    for k, b in enumerate(backends):
        v = med[l + (b,)] / med[l + ("fio",)]
        h = v / ymax * (H - top - bottom)
        out.append(f'<rect x="{x0 + k * bw:.1f}" y="{H - bottom - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" fill="{colors[k]}"><title>{names[b]}: {med[l + (b,)]:,.0f} IOPS</title></rect>')
    out.append(f'<text x="{x0 + gw * 0.4:.1f}" y="{H - bottom + 16}" text-anchor="middle">{label(l)}</text>')
for k, b in enumerate(backends):
    x, y = left + (k % 3) * 260, H - 40 + (k // 3) * 16
    out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colors[k]}"/><text x="{x + 14}" y="{y + 9}">{names[b]}</text>')
out.append("</svg>")
open(svg, "w").write("\n".join(out))
print(table)
PY
