#!/usr/bin/env bash
# Build the kernel's own sample mediated-device driver, mtty (samples/vfio-mdev/mtty.c: a
# virtual parent offering two types of emulated PCI serial ports), for the lab's guest kernel:
# the source from Debian's linux-source-X.Y (the guest kernel's source), built out of tree
# against linux-headers-KVER. Debian's kernel has CONFIG_VFIO_MDEV=m but no samples.
#
#   build-mdev-sample.sh KVER OUTDIR        writes OUTDIR/mtty.ko and prints its path
#
# Exit 0 on success; 3 when a prerequisite is missing (the message names the package);
# 1 when the build fails. No root needed.
set -euo pipefail
KVER=${1:?usage: build-mdev-sample.sh KVER OUTDIR}
OUT=${2:?usage: build-mdev-sample.sh KVER OUTDIR}
series=$(echo "$KVER" | cut -d. -f1,2)
src=/usr/src/linux-source-$series.tar.xz
missing() { echo "build-mdev-sample: $*" >&2; exit 3; }
[ -r "$src" ] || missing "no $src (apt-get install linux-source-$series)"
[ -f "/lib/modules/$KVER/build/Makefile" ] || missing "no kernel headers for $KVER (apt-get install linux-headers-$KVER)"
command -v make >/dev/null || missing "no make (apt-get install make)"
command -v xz >/dev/null || missing "no xz (apt-get install xz-utils)"
# The headers fix the ABI the module is built for (vermagic, symbol CRCs); the source should
# be the same upload. Say so when it is not: mtty.c changes rarely within a series.
img=$(dpkg-query -W -f='${Version}' "linux-image-$KVER" 2>/dev/null || true)
srcv=$(dpkg-query -W -f='${Version}' "linux-source-$series" 2>/dev/null || true)
if [ -n "$img" ] && [ -n "$srcv" ] && [ "$img" != "$srcv" ]; then
	echo "build-mdev-sample: note: linux-source-$series is $srcv, linux-image-$KVER is $img" >&2
fi

mkdir -p "$OUT"
work=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xJf "$src" -C "$work" --strip-components=3 "linux-source-$series/samples/vfio-mdev/mtty.c"
[ -f "$work/mtty.c" ] || { echo "build-mdev-sample: $src has no samples/vfio-mdev/mtty.c" >&2; exit 1; }
echo 'obj-m := mtty.o' > "$work/Kbuild"
if ! make -s -C "/lib/modules/$KVER/build" M="$work" modules > "$work/make.log" 2>&1; then
	cat "$work/make.log" >&2
	echo "build-mdev-sample: FAIL: building mtty.ko for $KVER" >&2
	exit 1
fi
modinfo -F vermagic "$work/mtty.ko" | grep -q "^$KVER " \
	|| { echo "build-mdev-sample: FAIL: mtty.ko is not built for $KVER ($(modinfo -F vermagic "$work/mtty.ko"))" >&2; exit 1; }
cp "$work/mtty.ko" "$OUT/mtty.ko"
echo "$OUT/mtty.ko"
