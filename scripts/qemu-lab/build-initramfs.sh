#!/usr/bin/env bash
# Build the guest initramfs for the QEMU lab from the host's own kernel and userland.
#
#   build-initramfs.sh [OUT.cpio.gz]      (default: scripts/qemu-lab/work/initramfs-$KVER.cpio.gz)
#
# Environment: KVER (default: newest /boot/vmlinuz-*), PCI_IDS (default: shared corpus pci.ids),
#   PASSTHRU (default: <repo>/target/release/passthru; copied to /usr/bin/passthru with its shared
#   libraries when it exists, for the intel-bind scenario; left out with a note when it does not),
#   MDEV_SAMPLE (a sample mdev driver, mtty.ko, built for KVER by build-mdev-sample.sh: put in
#   lib/modules/KVER/extra/ with the kernel's own mdev.ko, for the intel-mdev scenario).
# Needs: busybox (static), kmod (modprobe, depmod), cpio, gzip, gcc + libc6-dev (static), lspci.
# No root needed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${WORK:-$HERE/work}
KVER=${KVER:-$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)}
[ -n "$KVER" ] || { echo "build-initramfs: no /boot/vmlinuz-*" >&2; exit 1; }
OUT=${1:-$WORK/initramfs-$KVER.cpio.gz}
PCI_IDS=${PCI_IDS:-}
if [ -z "$PCI_IDS" ]; then
	for c in "$REPO/../shared/corpus/pci.ids" /work/shared/corpus/pci.ids /usr/share/misc/pci.ids; do
		[ -f "$c" ] && { PCI_IDS=$c; break; }
	done
fi
[ -f "$PCI_IDS" ] || { echo "build-initramfs: no pci.ids" >&2; exit 1; }

# Modules loaded in the guest (plus their dependencies). ati-vga deliberately has no driver.
MODULES="vfio vfio_iommu_type1 vfio_pci e1000e e1000 8139cp nvme xhci_pci snd_hda_intel
snd_hda_codec_generic bochs ahci i2c_i801 lpc_ich"
MDEV_SAMPLE=${MDEV_SAMPLE:-}
[ -z "$MDEV_SAMPLE" ] || MODULES="$MODULES mdev"

BUSYBOX=$(command -v busybox)
file -L "$BUSYBOX" | grep -q 'statically linked' || { echo "build-initramfs: $BUSYBOX is not static (install busybox-static)" >&2; exit 1; }
for t in modprobe depmod cpio gzip gcc lspci ldd; do
	PATH=$PATH:/sbin:/usr/sbin command -v $t >/dev/null || { echo "build-initramfs: missing $t" >&2; exit 1; }
done
export PATH=$PATH:/sbin:/usr/sbin

mkdir -p "$WORK"
ROOT=$(mktemp -d "$WORK/initramfs.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT

mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,boot,usr/bin,usr/sbin,usr/share/misc,lib64,lib/x86_64-linux-gnu,lib/modules/$KVER}

# busybox + one symlink per applet
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $("$BUSYBOX" --list-full); do
	[ -e "$ROOT/$a" ] || ln -s /bin/busybox "$ROOT/$a"
done

# modules: dependency closure from the host's modules.dep
MODDIR=/lib/modules/$KVER
for m in $MODULES; do
	modprobe -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
done | sort -u | while read -r ko; do
	rel=${ko#$MODDIR/}
	mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$rel")"
	cp "$ko" "$ROOT/lib/modules/$KVER/$rel"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
	cp "$MODDIR/$f" "$ROOT/lib/modules/$KVER/"
done
if [ -n "$MDEV_SAMPLE" ]; then
	mkdir -p "$ROOT/lib/modules/$KVER/extra"
	cp "$MDEV_SAMPLE" "$ROOT/lib/modules/$KVER/extra/"
fi
depmod -b "$ROOT" "$KVER"

# the sysfs mirror and the VFIO opener
gcc -O2 -static -Wall -o "$ROOT/bin/mirror" "$HERE/mirror.c"
gcc -O2 -static -Wall -o "$ROOT/bin/vfio-open" "$HERE/vfio-open.c"
strip "$ROOT/bin/mirror" "$ROOT/bin/vfio-open" 2>/dev/null || true

# copy_elf BIN DEST: a dynamically linked binary with its shared libraries and ELF interpreter
copy_elf() {
	local bin=$1 dest=$2 lib interp
	cp -L "$bin" "$ROOT$dest"
	ldd "$bin" | awk '/=>/ && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u | while read -r lib; do
		mkdir -p "$ROOT$(dirname "$lib")"
		cp -L "$lib" "$ROOT$lib"
	done
	interp=$(readelf -l "$bin" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
	if [ -n "$interp" ]; then mkdir -p "$ROOT$(dirname "$interp")"; cp -L "$interp" "$ROOT$interp"; fi
}

# lspci with its shared libraries and the ELF interpreter (replaces busybox's lspci applet)
LSPCI=$(command -v lspci)
rm -f "$ROOT/usr/bin/lspci" "$ROOT/bin/lspci" "$ROOT/sbin/lspci"
copy_elf "$LSPCI" /usr/bin/lspci
cp "$PCI_IDS" "$ROOT/usr/share/misc/pci.ids"

# passthru (the bind scenario runs it inside the guest); optional
PASSTHRU=${PASSTHRU:-$REPO/target/release/passthru}
if [ -x "$PASSTHRU" ]; then
	copy_elf "$PASSTHRU" /usr/bin/passthru
	PT_NOTE=", passthru from ${PASSTHRU#$REPO/}"
else
	PT_NOTE=", no passthru ($PASSTHRU missing: the bind scenario will skip)"
fi

# the host's udevd (systemd-udevd is udevadm under another name), for the intel-sriov and
# intel-mdev scenarios: the real udev judges the rules passthru writes. Required with
# MDEV_SAMPLE; otherwise used when present.
UDEVADM=$(command -v udevadm || true)
if [ -n "$UDEVADM" ]; then
	mkdir -p "$ROOT/lib/systemd"
	copy_elf "$UDEVADM" /bin/udevadm
	ln -sf /bin/udevadm "$ROOT/lib/systemd/systemd-udevd"
elif [ -n "$MDEV_SAMPLE" ]; then
	echo "build-initramfs: no udevadm (apt-get install udev)" >&2
	exit 1
fi

# facts to capture
cp -L /etc/os-release "$ROOT/etc/os-release"
cp "/boot/config-$KVER" "$ROOT/boot/config-$KVER"
echo "root:x:0:0:root:/root:/bin/sh" > "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"
echo "$KVER" > "$ROOT/etc/lab-kver"

cp "$HERE/init" "$ROOT/init"
chmod 755 "$ROOT/init"

tmp=$OUT.tmp.$$
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0 | gzip -6n) > "$tmp"
mv "$tmp" "$OUT"
echo "build-initramfs: $OUT ($(du -h "$OUT" | cut -f1), kernel $KVER$PT_NOTE)"
