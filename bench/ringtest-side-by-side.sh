#!/usr/bin/env bash
# Side by side on this machine: Linux's split-ring benchmark (tools/virtio/ringtest, virtio_ring_0_9,
# two polling threads, one-descriptor buffers, from Debian's linux-source) against jvirtio's
# ThroughputBenchmark (the same shape: polling driver and device threads, one descriptor per buffer).
# Usage: bench/ringtest-side-by-side.sh [runs]     (root: installs linux-source-6.1, gcc, make)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/env.sh"
runs="${1:-3}"
cycles=10000000
work="${TMPDIR:-/tmp}/jvirtio-ringtest"

if ! ls /usr/src/linux-source-*.tar.xz >/dev/null 2>&1 || ! command -v gcc >/dev/null || ! command -v make >/dev/null; then
  echo "installing linux-source-6.1, gcc, make..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-source-6.1 gcc make >&2
fi
tarball=$(ls /usr/src/linux-source-*.tar.xz | head -1)
if [[ ! -x "$work/ringtest/virtio_ring_0_9" ]]; then
  rm -rf "$work" && mkdir -p "$work"
  top=$(basename "$tarball" .tar.xz)
  tar -xJf "$tarball" -C "$work" "$top/tools/virtio/ringtest"
  mv "$work/$top/tools/virtio/ringtest" "$work/ringtest"
  make -C "$work/ringtest" virtio_ring_0_9 >&2
fi

echo "== Linux ringtest virtio_ring_0_9 (polling, ring 256, batch 32, $cycles buffers) =="
for i in $(seq "$runs"); do
  s=$(date +%s.%N)
  "$work/ringtest/virtio_ring_0_9" --ring-size 256 --batch 32 --run-cycles $cycles
  e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" -v n=$cycles 'BEGIN { printf "  run: %.2f M buffers/s (%.3f s)\n", n / (e - s) / 1e6, e - s }'
done

echo "== jvirtio ThroughputBenchmark (polling, queue 256, batch 32) =="
(cd "$here" && mvn -B -q -pl jvirtio-core,jvirtio-bench -am install -DskipTests >&2)
"$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -jar "$here/jvirtio-bench/target/benchmarks.jar" \
  ThroughputBenchmark -f "$runs" -wi 3 -i 5 2>/dev/null | grep -E '^(Benchmark|Throughput)'
