#!/usr/bin/env bash
# Boot QEMU scenarios with an emulated IOMMU and install their sysfs captures as fixtures.
#
#   run.sh all | SCENARIO...       scenarios: see `run.sh list`
#   run.sh intel-bind              not in `all`: runs passthru bind/unbind in the guest and leaves
#                                  only the console log (see bind-test.sh); no fixture is installed
#   run.sh intel-sriov             not in `all`: an NVMe with SR-IOV; the guest makes VFs by hand and
#                                  with passthru share vfs (see sriov-test.sh); console log only
#
# Environment:
#   FIXTURES  where to install (default: tests/fixtures/qemu); each scenario goes to $FIXTURES/<name>/
#   JOBS      guests booted at once (default 2)
#   TIMEOUT   seconds per guest (default 240)
#   KVER      guest kernel release (default: newest /boot/vmlinuz-*)
#   PASSTHRU  passthru binary put into the initramfs (default: target/release/passthru)
#   LAB_SHELL=1  interactive: console on stdio, guest opens a shell after the capture (one scenario)
# No root needed; TCG only (KVM is not used).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${WORK:-$HERE/work}
FIXTURES=${FIXTURES:-$REPO/tests/fixtures/qemu}
JOBS=${JOBS:-2}
TIMEOUT=${TIMEOUT:-240}
KVER=${KVER:-$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)}
KERNEL=/boot/vmlinuz-$KVER
INITRD=$WORK/initramfs-$KVER.cpio.gz
QEMU=${QEMU:-qemu-system-x86_64}

ALL="intel-flat intel-rootports intel-bridges intel-switch amd-flat amd-rootports amd-bridges amd-switch intel-flat-vfio"
BOOT_ONLY="intel-bind intel-sriov intel-mdev"   # console-only scenarios (no capture); not part of `all`
PASSTHRU=${PASSTHRU:-$REPO/target/release/passthru}
export PASSTHRU

# ---- topologies -------------------------------------------------------------------------
# Every scenario: -M q35,kernel-irqchip=split, no disks (NVMe on a null-co blockdev),
# HDA codec on -audiodev none. NICs have no netdev (not needed for enumeration).
NVME="-blockdev null-co,node-name=n0,size=67108864"
HDA_CODEC="-device hda-duplex,bus=hda0.0,audiodev=noaud"

topo_flat() {
	echo "-device VGA,id=vga0,bus=pcie.0,addr=02.0,multifunction=on
	      -device ich9-intel-hda,id=hda0,bus=pcie.0,addr=02.1 $HDA_CODEC
	      -device e1000e,bus=pcie.0,addr=03.0
	      -device qemu-xhci,bus=pcie.0,addr=04.0
	      -device bochs-display,bus=pcie.0,addr=05.0
	      $NVME -device nvme,serial=lab0,drive=n0,bus=pcie.0,addr=06.0"
}

# five root ports; bus numbers follow slot order: 06.0->01, 07.0->02, 1c.0->03, 1c.1->04, 1c.2->05
topo_rootports() {
	echo "-device pcie-root-port,id=rp1,bus=pcie.0,addr=1c.0,multifunction=on,chassis=1,slot=1
	      -device pcie-root-port,id=rp2,bus=pcie.0,addr=1c.1,chassis=2,slot=2
	      -device pcie-root-port,id=rp3,bus=pcie.0,addr=1c.2,chassis=3,slot=3
	      -device pcie-root-port,id=rp4,bus=pcie.0,addr=06.0,chassis=4,slot=4
	      -device pcie-root-port,id=rp5,bus=pcie.0,addr=07.0,chassis=5,slot=5
	      -device VGA,id=vga0,bus=rp1,addr=00.0,multifunction=on
	      -device ich9-intel-hda,id=hda0,bus=rp1,addr=00.1 $HDA_CODEC
	      -device e1000e,bus=rp2,addr=00.0
	      -device qemu-xhci,bus=rp3,addr=00.0
	      -device bochs-display,bus=rp4,addr=00.0
	      $NVME -device nvme,serial=lab0,drive=n0,bus=rp5,addr=00.0"
}

# VGA on the root complex; root port -> pcie-pci-bridge with e1000, rtl8139, ati-vga (no guest
# driver for ati-vga: an unbound device); conventional pci-bridge on pcie.0 with HDA and xHCI
topo_bridges() {
	echo "-device VGA,id=vga0,bus=pcie.0,addr=02.0
	      -device pcie-root-port,id=rp1,bus=pcie.0,addr=06.0,chassis=1,slot=1
	      -device pcie-pci-bridge,id=ppb1,bus=rp1,addr=00.0
	      -device e1000,bus=ppb1,addr=01.0
	      -device rtl8139,bus=ppb1,addr=02.0
	      -device ati-vga,bus=ppb1,addr=03.0
	      -device pci-bridge,id=pb1,bus=pcie.0,addr=07.0,chassis_nr=2
	      -device ich9-intel-hda,id=hda0,bus=pb1,addr=01.0 $HDA_CODEC
	      -device qemu-xhci,bus=pb1,addr=02.0"
}

# root port -> x3130 upstream -> three xio3130 downstream ports: e1000e, NVMe, VGA+HDA
topo_switch() {
	echo "-device pcie-root-port,id=rp1,bus=pcie.0,addr=06.0,chassis=1,slot=1
	      -device x3130-upstream,id=up1,bus=rp1,addr=00.0
	      -device xio3130-downstream,id=dn1,bus=up1,addr=00.0,chassis=2,slot=1
	      -device xio3130-downstream,id=dn2,bus=up1,addr=01.0,chassis=3,slot=1
	      -device xio3130-downstream,id=dn3,bus=up1,addr=02.0,chassis=4,slot=1
	      -device e1000e,bus=dn1,addr=00.0
	      $NVME -device nvme,serial=lab0,drive=n0,bus=dn2,addr=00.0
	      -device VGA,id=vga0,bus=dn3,addr=00.0,multifunction=on
	      -device ich9-intel-hda,id=hda0,bus=dn3,addr=00.1 $HDA_CODEC"
}

# QEMU 7.2's NVMe with SR-IOV (hw/nvme; docs/system/devices/nvme.rst "SR-IOV"): the controller
# must be in a subsystem, and the flexible queue and interrupt resources cover the VFs
# (QEMU checks: max_ioqpairs - sriov_vq_flexible >= 2; vq >= 2 and vi >= 1 per VF).
topo_sriov() {
	echo "-device VGA,id=vga0,bus=pcie.0,addr=02.0
	      -device nvme-subsys,id=subsys0
	      -device nvme,serial=lab0,subsys=subsys0,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2,max_ioqpairs=6,msix_qsize=5,bus=pcie.0,addr=06.0"
}

# The sample mdev driver's parent is a virtual device (mtty): one display is enough.
topo_mdev() {
	echo "-device VGA,id=vga0,bus=pcie.0,addr=02.0"
}

# scenario -> "IOMMU_ARGS|TOPOLOGY|EXTRA_CMDLINE"
scenario() {
	local s=$1 vendor topo extra=
	case $s in
	intel-flat-vfio) vendor=intel topo=flat extra="lab.vfio=0000:00:02.0,0000:00:02.1" ;;
	intel-bind) vendor=intel topo=flat extra="lab.bind=0000:00:02.0" ;;
	intel-sriov) vendor=intel topo=sriov extra="lab.sriov=0000:00:06.0" ;;
	intel-mdev) vendor=intel topo=mdev extra="lab.mdev=mtty" ;;
	intel-*|amd-*) vendor=${s%%-*} topo=${s#*-} ;;
	*) return 1 ;;
	esac
	declare -F "topo_$topo" >/dev/null || return 1
	case $vendor in
	intel) IOMMU_DEV="-device intel-iommu,intremap=on,caching-mode=on"; IOMMU_CMDLINE="intel_iommu=on" ;;
	amd) IOMMU_DEV="-device amd-iommu,intremap=on"; IOMMU_CMDLINE="" ;;
	esac
	TOPO=$(topo_$topo)
	EXTRA=$extra
}

need() {
	command -v "$QEMU" >/dev/null || { echo "run.sh: $QEMU not found" >&2; exit 1; }
	[ -r "$KERNEL" ] || { echo "run.sh: kernel $KERNEL not readable" >&2; exit 1; }
}

build_initrd() {
	local stale=
	[ -f "$INITRD" ] || stale=1
	for f in "$HERE/init" "$HERE/mirror.c" "$HERE/vfio-open.c" "$HERE/build-initramfs.sh" "/lib/modules/$KVER/modules.dep" "$PASSTHRU" ${MDEV_SAMPLE:+"$MDEV_SAMPLE"}; do
		[ -n "$stale" ] || [ "$f" -nt "$INITRD" ] && stale=1
	done
	if [ -n "$stale" ]; then
		KVER=$KVER WORK=$WORK "$HERE/build-initramfs.sh" "$INITRD"
	fi
}

# run_one SCENARIO: boot, fetch, verify, install into $FIXTURES/SCENARIO
run_one() {
	local s=$1 run=$WORK/runs/$1
	scenario "$s" || { echo "run.sh: unknown scenario $s (try: $ALL)" >&2; return 1; }
	rm -rf "$run"; mkdir -p "$run"
	local append="console=ttyS0 iommu=pt panic=-1 quiet${IOMMU_CMDLINE:+ $IOMMU_CMDLINE} lab.scenario=$s${EXTRA:+ $EXTRA}"
	local console="-serial file:$run/console.log"
	if [ -n "${LAB_SHELL:-}" ]; then append="$append lab.shell=1"; console="-serial stdio"; fi
	# shellcheck disable=SC2206
	local cmd=("$QEMU" -nodefaults -no-user-config -display none -no-reboot
		-M q35,kernel-irqchip=split -accel tcg,thread=multi -cpu max -smp 2 -m 512
		$IOMMU_DEV
		-kernel "$KERNEL" -initrd "$INITRD" -append "$append"
		$console -serial "file:$run/snap.tgz"
		-audiodev none,id=noaud
		$TOPO)
	printf '%q ' "${cmd[@]}" | sed "s|$WORK/|scripts/qemu-lab/work/|g; s| $||" > "$run/cmdline.txt"
	local t0 t1 rc=0
	t0=$(date +%s.%N)
	if [ -n "${LAB_SHELL:-}" ]; then "${cmd[@]}" || rc=$?
	else timeout --kill-after=10 "$TIMEOUT" "${cmd[@]}" > "$run/qemu.log" 2>&1 < /dev/null || rc=$?
	fi
	t1=$(date +%s.%N)
	local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	echo "$secs" > "$run/seconds"
	if [ $rc -ne 0 ]; then
		echo "run.sh: $s: qemu exited $rc after ${secs}s (see $run/qemu.log, $run/console.log)" >&2
		tail -5 "$run/qemu.log" "$run/console.log" >&2 2>/dev/null || true
		return 1
	fi
	if [[ " $BOOT_ONLY " == *" $s "* ]]; then
		grep -Eq 'LAB_(BIND|SRIOV|MDEV)_END' "$run/console.log" || { echo "run.sh: $s: guest did not finish its sequence; see $run/console.log" >&2; return 1; }
		echo "run.sh: $s: ok in ${secs}s, console in ${run#$REPO/}/console.log"
		return 0
	fi
	local want; want=$(sed -n 's/.*LAB_SHIP_DONE \([0-9]*\) bytes.*/\1/p' "$run/console.log" | tail -1)
	local got; got=$(stat -c %s "$run/snap.tgz" 2>/dev/null || echo 0)
	if [ -z "$want" ] || [ "$want" != "$got" ]; then
		echo "run.sh: $s: serial transfer incomplete (guest said '${want:-nothing}', got $got bytes); see $run/console.log" >&2
		return 1
	fi
	gzip -t "$run/snap.tgz" || { echo "run.sh: $s: snap.tgz fails gzip -t" >&2; return 1; }
	mkdir -p "$run/out"
	tar xzf "$run/snap.tgz" -C "$run/out"
	gzip -t "$run/out/root.tar.gz" || { echo "run.sh: $s: root.tar.gz fails gzip -t" >&2; return 1; }
	local f
	for f in root.tar.gz lspci-nnk.txt lspci-vmm.txt groups.txt group-types.txt dmesg.txt; do
		[ -f "$run/out/$f" ] || { echo "run.sh: $s: guest sent no $f" >&2; return 1; }
	done
	[ -s "$run/out/groups.txt" ] || { echo "run.sh: $s: no IOMMU groups formed" >&2; return 1; }
	{
		echo "scenario: $s"
		echo "kernel: $(cat "$run/out/root/proc/sys/kernel/osrelease" 2>/dev/null || tar xzOf "$run/out/root.tar.gz" proc/sys/kernel/osrelease)"
		echo "qemu: $("$QEMU" --version | head -1)"
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "boot_seconds: $secs (TCG, start to poweroff)"
		echo "guest_uptime: $(tr '\n' ' ' < "$run/out/guest-timing.txt" | sed 's/ $//')"
		echo "capture: $(sed 's/^mirror: //' "$run/out/mirror.log" | tail -1)"
		echo "qemu_cmdline: $(cat "$run/cmdline.txt")"
	} > "$run/out/meta.txt"
	local dest=$FIXTURES/$s
	mkdir -p "$dest"
	for f in root.tar.gz lspci-nnk.txt lspci-vmm.txt groups.txt group-types.txt dmesg.txt meta.txt; do
		cp "$run/out/$f" "$dest/$f"
	done
	echo "run.sh: $s: ok in ${secs}s, $(wc -l < "$dest/groups.txt") grouped devices in $(cut -d' ' -f1 "$dest/groups.txt" | sort -u | wc -l) groups, root.tar.gz $(stat -c %s "$dest/root.tar.gz") bytes -> ${dest#$REPO/}"
}

main() {
	[ $# -gt 0 ] || { sed -n '2,16p' "$0"; exit 2; }
	if [ "$1" = list ]; then echo "$ALL $BOOT_ONLY" | tr ' ' '\n'; exit 0; fi
	local list=("$@")
	[ "$1" = all ] && read -r -a list <<< "$ALL"
	local s
	for s in "${list[@]}"; do scenario "$s" || { echo "run.sh: unknown scenario $s (try: $ALL)" >&2; exit 2; }; done
	need
	local keep=()
	for s in "${list[@]}"; do
		if [[ " $BOOT_ONLY " == *" $s "* ]] && [ ! -x "$PASSTHRU" ]; then
			[ "${CI:-}" = true ] && { echo "run.sh: $s: FAIL: no passthru binary at $PASSTHRU under CI" >&2; exit 1; }
			echo "run.sh: $s: SKIP: no passthru binary at $PASSTHRU (cargo build --release -p passthru)"
		else keep+=("$s"); fi
	done
	[ ${#keep[@]} -gt 0 ] || exit 0
	list=("${keep[@]}")
	build_initrd
	local t0=$SECONDS fail=0 running=0
	for s in "${list[@]}"; do
		if [ -n "${LAB_SHELL:-}" ]; then run_one "$s" || fail=1; continue; fi
		if [ "$running" -ge "$JOBS" ]; then wait -n || fail=1; running=$((running - 1)); fi
		run_one "$s" & running=$((running + 1))
	done
	while [ "$running" -gt 0 ]; do wait -n || fail=1; running=$((running - 1)); done
	echo "run.sh: ${#list[@]} scenario(s) in $((SECONDS - t0))s$([ $fail -eq 0 ] || echo ', SOME FAILED')"
	return $fail
}

main "$@"
