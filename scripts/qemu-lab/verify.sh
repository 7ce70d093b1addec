#!/usr/bin/env bash
# Check that the committed captures replay: host lspci over each unpacked root.tar.gz must print
# the same devices, names and drivers as the guest's own lspci-nnk.txt ("Kernel modules:" lines
# and libkmod warnings ignored: they depend on the reading host's modules). udev's hwdb is disabled:
# the guest has none, and on a host that has one it invents subsystem names pci.ids lacks.
#
#   verify.sh [SCENARIO...]      (default: every directory under tests/fixtures/qemu)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
FIXTURES=${FIXTURES:-$REPO/tests/fixtures/qemu}
PCI_IDS=${PCI_IDS:-}
for c in "$REPO/../shared/corpus/pci.ids" /work/shared/corpus/pci.ids /usr/share/misc/pci.ids; do
	[ -n "$PCI_IDS" ] || { [ -f "$c" ] && PCI_IDS=$c; }
done
. "$HERE/lab-prereqs.sh"
command -v lspci >/dev/null || lab_skip verify.sh "lspci not installed"
[ -f "$PCI_IDS" ] || lab_skip verify.sh "no pci.ids"
list=("$@")
# directories without a capture (intel-bind: console.txt only) are not replayed
[ ${#list[@]} -gt 0 ] || for d in "$FIXTURES"/*/; do [ -f "$d/root.tar.gz" ] && list+=("$(basename "$d")"); done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
for s in "${list[@]}"; do
	d=$FIXTURES/$s
	mkdir -p "$tmp/$s"
	tar xzf "$d/root.tar.gz" -C "$tmp/$s"
	lspci -nnk -D -A linux-sysfs -O "sysfs.path=$tmp/$s/sys/bus/pci" -O hwdb.disable=1 -i "$PCI_IDS" 2>/dev/null \
		| grep -v 'Kernel modules:' > "$tmp/$s.host" || true
	grep -v 'Kernel modules:' "$d/lspci-nnk.txt" > "$tmp/$s.guest" || true
	if diff -u "$tmp/$s.guest" "$tmp/$s.host" > "$tmp/$s.diff"; then
		echo "verify.sh: $s: ok ($(grep -c '^[0-9a-f]' "$tmp/$s.guest") devices)"
	else
		echo "verify.sh: $s: DIFFERS (guest lspci vs host lspci over root.tar.gz)"; cat "$tmp/$s.diff"; fail=1
	fi
done
exit $fail
