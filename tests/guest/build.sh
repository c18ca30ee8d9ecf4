#!/usr/bin/env bash
# Builds the guest used by tests/tests/vhost_guest.rs: a Debian cloud
# kernel and a busybox initramfs whose /init (tests/guest/init) exercises
# the virtio-blk disk. Packages are fetched with `apt-get download` and
# unpacked privately with `dpkg -x` (nothing is installed).
#
# usage: tests/guest/build.sh CACHE_DIR
# Produces CACHE_DIR/vmlinuz and CACHE_DIR/initramfs.gz; does nothing if
# they exist and are newer than this script and tests/guest/init.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:?usage: build.sh CACHE_DIR}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
# Tests run in parallel: one build at a time, the others wait and reuse it.
exec 9>"$cache/.lock"
flock 9
if [ -s "$cache/vmlinuz" ] && [ -s "$cache/initramfs.gz" ] \
    && [ "$cache/initramfs.gz" -nt "$here/init" ] && [ "$cache/initramfs.gz" -nt "$0" ]; then
    exit 0
fi
for t in apt-get apt-cache dpkg gzip; do
    command -v "$t" >/dev/null || { echo "build.sh: $t is missing" >&2; exit 1; }
done
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
# The metapackage names the current kernel package.
kpkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
[ -n "$kpkg" ] || { echo "build.sh: no linux-image-cloud-amd64 (run apt-get update)" >&2; exit 1; }
apt-get download -q "$kpkg" busybox-static >/dev/null 2>&1 || \
    { echo "build.sh: apt-get download $kpkg busybox-static failed" >&2; exit 1; }
mkdir k b
dpkg -x linux-image-*.deb k
dpkg -x busybox-static_*.deb b
kver="$(ls k/lib/modules)"
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib}
cp b/bin/busybox "$root/bin/busybox"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
    f="$(find "k/lib/modules/$kver" -name "$m.ko*" | head -n 1)"
    [ -n "$f" ] || continue # built into the kernel
    case "$f" in
        *.xz) xz -dc "$f" >"$root/lib/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$root/lib/$m.ko" ;;
        *.gz) gzip -dc "$f" >"$root/lib/$m.ko" ;;
        *) cp "$f" "$root/lib/$m.ko" ;;
    esac
done
cp "$here/init" "$root/init"
chmod +x "$root/init" "$root/bin/busybox"
# The host's cpio if there is one, else busybox's.
cpio="cpio"
command -v cpio >/dev/null || cpio="$work/b/bin/busybox cpio"
(cd "$root" && find . | $cpio -o -H newc 2>/dev/null | gzip -1) >"$cache/initramfs.gz.tmp"
cp "k/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp"
mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
mv "$cache/initramfs.gz.tmp" "$cache/initramfs.gz"
echo "guest: kernel $kver, $(du -h "$cache/initramfs.gz" | cut -f1) initramfs"
