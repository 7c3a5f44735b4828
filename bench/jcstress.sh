#!/usr/bin/env bash
# jcstress tests of the split ring's notification handshakes (module jvirtio-jcstress), against the
# production DriverQueue and DeviceQueue.
#
#   bench/jcstress.sh [mode]            run every test (mode: sanity|quick|default|tough; default quick)
#   bench/jcstress.sh --mutate [mode] [only]
#                                      for each of the four handshake fences: build a copy of the tree with
#                                        that one fence removed and check that its jcstress test now FAILS
#                                        (a forbidden outcome is observed); then the same for the two index
#                                        publications, with the index stored before what it covers;
#                                        exits non-zero if a mutant is not caught.
# Needs 2 CPUs (the two actors run at once); run it alone on the machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/env.sh"

run() { # tree mode filter logfile
  # package, not install: a mutated core must never reach the local repository
  (cd "$1" && mvn -B -q -o package -DskipTests -pl jvirtio-core,jvirtio-jcstress -am >/dev/null 2>&1 \
     || mvn -B -q package -DskipTests -pl jvirtio-core,jvirtio-jcstress -am >/dev/null)
  local out; out=$(mktemp -d)
  (cd "$out" && java -jar "$1/jvirtio-jcstress/target/jcstress.jar" -m "$2" -t "$3" > "$4" 2>&1) || true
  rm -rf "$out"
}

if [[ "${1:-}" != "--mutate" ]]; then
  mode="${1:-quick}"
  log=$(mktemp)
  run "$here" "$mode" 'io.jvirtio.jcstress' "$log"
  sed -n '/RUN RESULTS/,$p' "$log" | grep -v WARNING
  grep -q "Failed tests: No matches" "$log"
  exit
fi

mode="${2:-quick}"
# file | method whose fullFence is removed | the jcstress test that must then fail
experiments=(
  "split/SplitDriverQueue.java|kickPrepare|KickRace"
  "split/SplitDeviceQueue.java|enableNotifications|KickRace"
  "split/SplitDeviceQueue.java|needsNotification|InterruptRace"
  "split/SplitDriverQueue.java|poll|InterruptRace"
  "split/SplitDriverQueue.java|addBuf|PublishRace.Available"
  "split/SplitDeviceQueue.java|addUsed|PublishRace.Used"
  "packed/PackedDriverQueue.java|kickPrepare|KickRace.Packed"
  "packed/PackedDeviceQueue.java|enableNotifications|KickRace.Packed"
  "packed/PackedDeviceQueue.java|needsNotification|InterruptRace.Packed"
  "packed/PackedDriverQueue.java|poll|InterruptRace.Packed"
  "packed/PackedDriverQueue.java|addBuf|PublishRace.PackedAvailable"
  "packed/PackedDeviceQueue.java|addUsed|PublishRace.PackedUsed"
)
status=0
for e in "${experiments[@]}"; do
  IFS='|' read -r file method test <<<"$e"
  [[ -z "${3:-}" || "$e" == *"$3"* ]] || continue # only the experiments naming $3
  tree=$(mktemp -d)
  git -C "$here" archive HEAD | tar -x -C "$tree"
  python3 - "$tree/jvirtio-core/src/main/java/io/jvirtio/core/queue/$file" "$method" <<'PY'
import sys
path, method = sys.argv[1], sys.argv[2]
s = open(path).read()
i = s.index(' ' + method + '(')
if path.endswith('PackedDeviceQueue.java') and method == 'addUsed':  # used flags stored before the id and len
    j = s.index('long at = ', i)
    s = s[:j] + 'GuestMemory.setU16Release(desc, (long) nextUsed * DESC_SIZE + DESC_FLAGS, (short) (Packed.usedFlags(usedWrap) | F_WRITE)); ' + s[j:]
elif path.endswith('PackedDriverQueue.java') and method == 'addBuf':  # the head's flags stored before its list
    j = s.index('int headFlags;', i) + len('int headFlags;')
    s = s[:j] + ' GuestMemory.setU16Release(desc, (long) first * DESC_SIZE + DESC_FLAGS, Packed.availFlags(availWrap));' + s[j:]
elif method == 'addBuf':    # avail.idx stored before the descriptors and the ring entry it covers
    j = s.index('int head = freeHead;', i) + len('int head = freeHead;')
    s = s[:j] + ' GuestMemory.setU16Release(ring.avail, AVAIL_IDX, (availIdxShadow + 1) & 0xffff);' + s[j:]
elif method == 'addUsed': # used.idx stored before the element it covers
    j = s.index('long at = ', i)
    s = s[:j] + 'GuestMemory.setU16Release(ring.used, USED_IDX, (nextUsed + 1) & 0xffff); ' + s[j:]
else:                     # the handshake's full fence removed
    j = s.index('VarHandle.fullFence();', i)
    s = s[:j] + '/* fence removed by bench/jcstress.sh --mutate */' + s[j + len('VarHandle.fullFence();'):]
open(path, 'w').write(s)
PY
  log=$(mktemp)
  run "$tree" "$mode" "io.jvirtio.jcstress.$test" "$log"
  if grep -q "\[FAILED\]" "$log"; then
    echo "mutant of $file $method(): $test FAILS as it must"
    grep -E "FAILED|Forbidden" "$log" | sed -n 's/^/    /; 1,8p'

  else
    echo "mutant of $file $method(): $test still passes — the test did not catch it"
    status=1
  fi
  rm -rf "$tree" "$log"
done
exit $status
