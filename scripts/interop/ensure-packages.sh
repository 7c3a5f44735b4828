#!/usr/bin/env bash
# Installs what the QEMU/Linux/DPDK interop tests need from Debian, if it is missing. Prints nothing on success
# when everything is already there; exits non-zero (with the reason) when it cannot install.
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v qemu-storage-daemon >/dev/null || need+=(qemu-system-common)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -qx md5sum || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v dpdk-testpmd >/dev/null || need+=(dpdk dpdk-dev)
if (( ${#need[@]} )); then
  echo "interop: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi
