#!/usr/bin/env bash
# Real-kernel test of SR-IOV: boot the intel-sriov scenario (Intel VT-d, iommu=pt, QEMU 7.2's
# emulated NVMe with sriov_max_vfs=2 at 00:06.0) in a temporary directory; its /init writes
# sriov_numvfs by hand, then runs passthru inside the guest and prints markers checked here:
#   by hand         HAND_VF lines: 2 VFs, each in an IOMMU group of its own (not the PF's);
#                   after `echo 0` none is left
#   share vfs       `passthru share vfs PF --count 2 --now --yes` exits 0; SHARE_AUTOPROBE 0;
#                   both VFs on vfio-pci with driver_override vfio-pci; the udev rule
#                   61-passthru-sriov-<PF>.rules written; /dev/vfio/<group> of VF 0 present and
#                   VFIO_OPEN_OK for it (a guest could take it)
#   rollback        the first `rollback --yes` removes the VFs and puts autoprobe back to 1
#                   (2 sysfs writes); the second removes the rule (a file transaction)
#   udev            between the two, the guest's real udevd (the host's systemd-udevd) runs
#                   the rule: rebinding nvme (a bind event) makes both VFs on vfio-pci with
#                   autoprobe off, and so does coldplug (an add event of the bound PF)
# Exit 1 with a message on any failure; print "SKIP" and exit 0 when the host cannot run the lab
# (under CI=true: exit 1) (no qemu-system-x86_64 with NVMe SR-IOV, guest kernel, busybox-static/
# kmod/cpio/static gcc/lspci, or cargo). No root; about 15 s plus the cargo build.
#
#   sriov-test.sh
# Environment: PASSTHRU (a prebuilt binary: no cargo build), KVER, TIMEOUT (180 s).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
S=intel-sriov
PF=0000:00:06.0
for a in "$@"; do
	case $a in
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "sriov-test.sh: unknown argument $a" >&2; exit 2 ;;
	esac
done
export PATH=$PATH:/sbin:/usr/sbin:$HOME/.cargo/bin

. "$HERE/lab-prereqs.sh"
skip() { lab_skip sriov-test.sh "$*"; }
lab_pick_kernel_and_passthru sriov-test.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/qemu-lab-sriov.XXXXXX")
keep=
trap '[ -n "$keep" ] || rm -rf "$TMP"' EXIT
lab_require "$KVER" "$TMP"
# SR-IOV on the emulated NVMe came with QEMU 7.1
qemu-system-x86_64 -device nvme,help 2>/dev/null | grep -q sriov_max_vfs \
	|| skip "this qemu-system-x86_64's nvme device has no sriov_max_vfs (QEMU 7.1 or newer)"

start=$SECONDS
lab_build_passthru sriov-test.sh
build_s=$((SECONDS - start))

lab_boot sriov-test.sh "$S" SRIOV "${TIMEOUT:-180}"

fails=0
bad() { echo "sriov-test.sh: FAIL: $*" >&2; fails=$((fails + 1)); }
rc_of() { awk -v c="$1" '$1 == "LAB_RC" { l = $0; sub(/^LAB_RC [0-9]+ /, "", l); if (l == c) { print $2; exit } }' "$LOG"; }
field() { awk -v k="$1" -v a="$2" '$1 == k && $2 == a { print $3; exit }' "$LOG"; }
# vf TAG N FIELD: FIELD (group, driver, override) of the Nth TAG_VF line
vf() { awk -v k="$1_VF" -v n="$2" -v f="$3" '$1 == k { i++; if (i == n) { for (j = 3; j < NF; j++) if ($j == f) { print $(j + 1); exit } } }' "$LOG"; }
count() { grep -c "^$1 " "$LOG"; }
expect() { # WHAT GOT WANT
	if [ "$2" = "$3" ]; then echo "  ok  $1: $2"; else bad "$1: got '${2:-nothing}', want '$3'"; fi
}

pfg=$(awk '$1 == "SRIOV_PF" { print $4; exit }' "$LOG")
expect "the PF offers SR-IOV" "$(awk '$1 == "SRIOV_PF" { print $8; exit }' "$LOG")" 2
expect "echo 2 > sriov_numvfs" "$(rc_of 'echo 2 > sriov_numvfs')" 0
expect "VFs by hand" "$(count HAND_VF)" 2
g1=$(vf HAND 1 group) g2=$(vf HAND 2 group)
[ -n "$g1" ] && [ "$g1" != none ] && [ "$g1" != "$g2" ] && [ "$g1" != "$pfg" ] && [ "$g2" != "$pfg" ] \
	&& echo "  ok  each VF in its own group: $g1, $g2 (PF $pfg)" \
	|| bad "VF groups: '$g1' '$g2', PF '$pfg' (want two distinct groups, not the PF's)"
expect "VFs after echo 0" "$(count HAND_GONE_VF)" 0
if grep -q '^SRIOV_SKIP' "$LOG"; then
	bad "the guest had no passthru: $(grep '^SRIOV_SKIP' "$LOG")"
else
	expect "passthru share vfs $PF --count 2 --now --yes exit code" "$(rc_of "passthru share vfs $PF --count 2 --now --yes")" 0
	expect "autoprobe after share" "$(field SHARE_AUTOPROBE $PF)" 0
	expect "VFs after share" "$(count SHARE_VF)" 2
	expect "VF 0 driver" "$(vf SHARE 1 driver)" vfio-pci
	expect "VF 1 driver" "$(vf SHARE 2 driver)" vfio-pci
	expect "VF 0 driver_override" "$(vf SHARE 1 override)" vfio-pci
	expect "udev rule" "$(awk '$1 == "RULE" { print $2; exit }' "$LOG")" "61-passthru-sriov-$PF.rules"
	expect "vfio group node of VF 0" "$(awk '$1 == "VFIO_NODE" { print $3; exit }' "$LOG")" present
	expect "vfio-open VF 0" "$(grep -c '^VFIO_OPEN_OK ' "$LOG")" 1
	# share vfs: the rule (1 file) and the VFs now (6 sysfs writes); each rollback is a transaction too
	# (the count's wording: "1 file(s)" or "1 file", "6 sysfs write(s)" or "6 sysfs writes")
	expect "share: file transaction" "$(grep -Ec '^Applied as transaction .* \(1 file(\(s\))? written\)' "$LOG")" 2
	expect "share --now: runtime transaction" "$(grep -Ec '^Applied as transaction .* \(6 sysfs write(\(s\)|s) written\)' "$LOG")" 1
	expect "rollback of --now: count and autoprobe back" "$(grep -Ec '^Applied as transaction .* \(2 sysfs write(\(s\)|s) written\)' "$LOG")" 1
	expect "first rollback exit code" "$(rc_of 'passthru rollback --yes')" 0
	expect "VFs after rollback" "$(count ROLLBACK_VF)" 0
	expect "numvfs after rollback" "$(field ROLLBACK_NUMVFS $PF)" 0
	expect "autoprobe after rollback" "$(field ROLLBACK_AUTOPROBE $PF)" 1
	expect "rule after the second rollback" "$(awk '$1 == "RULE_AFTER" { print NF; exit }' "$LOG")" 1
	# The rule, read by the guest's real udevd (the host's systemd-udevd in the initramfs).
	if grep -q '^SRIOV_NO_UDEVD' "$LOG"; then
		[ "${CI:-}" = true ] && bad "no udevd in the guest (.ci/run installs udev)" \
			|| echo "  --  the rule was not run by a real udevd (no udevadm on this host)"
	else
		expect "udevd started" "$(rc_of 'systemd-udevd --daemon')" 0
		expect "udevd answers" "$(rc_of 'udevadm control --ping')" 0
		expect "nvme bind" "$(rc_of 'nvme bind')" 0
		expect "udev: VFs when the PF's driver binds" "$(count UDEV_BIND_VF)" 2
		expect "udev: autoprobe off at bind" "$(field UDEV_BIND_AUTOPROBE $PF)" 0
		expect "udev: VF 0 on vfio-pci at bind" "$(vf UDEV_BIND 1 driver)" vfio-pci
		expect "udev: VF 1 on vfio-pci at bind" "$(vf UDEV_BIND 2 driver)" vfio-pci
		expect "VFs removed by hand" "$(count UDEV_CLEARED_VF)" 0
		expect "udev: VFs at coldplug (add of a bound PF)" "$(count UDEV_COLDPLUG_VF)" 2
		expect "udev: VF 0 on vfio-pci at coldplug" "$(vf UDEV_COLDPLUG 1 driver)" vfio-pci
		expect "udev: VF 1 on vfio-pci at coldplug" "$(vf UDEV_COLDPLUG 2 driver)" vfio-pci
	fi
fi

if [ $fails -gt 0 ]; then
	keep=1
	echo "sriov-test.sh: FAIL: $fails $([ $fails -eq 1 ] && echo check || echo checks) failed; passthru part of the console:" >&2
	grep -Ev '^DMESG' "$LOG" | grep -E '^(LAB_|SRIOV|HAND|SHARE|ROLLBACK|RULE|VFIO_|UDEV)|rror|efus' >&2
	echo "sriov-test.sh: full console: $TMP/work/runs/$S/console.log; extract: $LOG" >&2
	exit 1
fi
echo "sriov-test.sh: PASS: 2 VFs of $PF in their own groups by hand; passthru share vfs put them on vfio-pci (opened one), rollback removed them, the real udevd ran the rule at bind and coldplug, and the second rollback removed it (build ${build_s}s, boot ${boot_s}s, total $((SECONDS - start))s)"
