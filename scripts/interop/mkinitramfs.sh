#!/usr/bin/env bash
# mkinitramfs.sh TEST_SCRIPT OUT.cpio.gz
# A minimal initramfs: static busybox, the Debian kernel's virtio modules (loaded in dependency order),
# and an /init that mounts the basics, runs TEST_SCRIPT, and powers off.
set -euo pipefail
script="$1"
out="$2"
kver=$(ls /lib/modules | sort -V | tail -1)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,modules,mnt}
cp /bin/busybox "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do
  [[ "$app" == busybox ]] || ln -sf busybox "$root/bin/$app"
done
: > "$root/modules/order"
for m in virtio_pci virtio_blk virtio_net virtio_console virtio_rng; do
  modprobe --show-depends -S "$kver" "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  base=$(basename "$ko")
  case "$ko" in
    *.xz) xz -dc "$ko" > "$root/modules/${base%.xz}"; base=${base%.xz} ;;
    *.zst) zstd -qdc "$ko" > "$root/modules/${base%.zst}"; base=${base%.zst} ;;
    *) cp "$ko" "$root/modules/$base" ;;
  esac
  echo "$base" >> "$root/modules/order"
done
cp "$script" "$root/test.sh"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m; done
sleep 1
echo "JVIRTIO-GUEST-START"
sh /test.sh 2>&1
echo "JVIRTIO-GUEST-END rc=$?"
sync
poweroff -f
INIT
chmod +x "$root/init" "$root/test.sh"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
