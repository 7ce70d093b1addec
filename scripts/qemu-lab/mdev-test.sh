#!/usr/bin/env bash
# Real-kernel test of mediated devices: the kernel's own sample mdev driver (mtty, built from
# the guest kernel's source by build-mdev-sample.sh) in the intel-mdev guest, with the host's
# systemd-udevd running there. Its /init prints markers checked here:
#   by hand         an mtty-2 instance made and removed through sysfs; VFIO opens it by UUID
#                   (its emulated IOMMU group)
#   share mdev      `passthru share mdev mtty --type mtty-2 --count 2 --now --yes`: the udev
#                   rule written, both instances live with the rule's UUIDs, one opened
#                   through VFIO; `list` shows them in their groups with nothing unreadable;
#                   `libvirt attach lab mtty --mdev mtty-2` names one of them in the domain
#   rollback        the runtime transaction removes both instances
#   udev            the real udevd reads the rule: reloading mtty (its registration's change
#                   event) makes both instances; removed by hand, a coldplug `add` makes them
#                   again
#   --count 0 --now the rule and both instances go; rollback brings the instances back
#                   (the inverse of a removal), a second rollback the rule
#   archive         `passthru scan --archive` with both instances live, shipped over the
#                   second serial port; --record installs it as the real-kernel fixture
#                   tests/fixtures/qemu/intel-mdev/archive.tar.gz
# Exit 1 with a message on any failure; print "SKIP" and exit 0 when the host cannot run the
# lab (under CI=true: exit 1). Needs what sriov-test.sh needs plus linux-source-X.Y,
# linux-headers-KVER, make, xz-utils and udev. No root; about 20 s plus the builds.
#
#   mdev-test.sh [--record]
# Environment: PASSTHRU (a prebuilt binary: no cargo build), KVER, TIMEOUT (240 s).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
S=intel-mdev
P=mtty
T=mtty-2
RECORD=
for a in "$@"; do
	case $a in
	--record) RECORD=1 ;;
	-h|--help) sed -n '2,26p' "$0"; exit 0 ;;
	*) echo "mdev-test.sh: unknown argument $a" >&2; exit 2 ;;
	esac
done
export PATH=$PATH:/sbin:/usr/sbin:$HOME/.cargo/bin

. "$HERE/lab-prereqs.sh"
skip() { lab_skip mdev-test.sh "$*"; }
lab_pick_kernel_and_passthru mdev-test.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/qemu-lab-mdev.XXXXXX")
keep=
trap '[ -n "$keep" ] || rm -rf "$TMP"' EXIT
lab_require "$KVER" "$TMP"
command -v udevadm >/dev/null || skip "udevadm not installed (apt-get install udev)"

start=$SECONDS
rc=0
MDEV_SAMPLE=$(bash "$HERE/build-mdev-sample.sh" "$KVER" "$TMP/sample" 2> "$TMP/sample.err") || rc=$?
if [ $rc -eq 3 ]; then
	skip "$(cat "$TMP/sample.err")"
elif [ $rc -ne 0 ]; then
	cat "$TMP/sample.err" >&2
	echo "mdev-test.sh: FAIL: the sample mdev driver did not build" >&2
	exit 1
fi
export MDEV_SAMPLE
lab_build_passthru mdev-test.sh
build_s=$((SECONDS - start))

lab_boot mdev-test.sh "$S" MDEV "${TIMEOUT:-240}"

fails=0
bad() { echo "mdev-test.sh: FAIL: $*" >&2; fails=$((fails + 1)); }
rc_of() { awk -v c="$1" '$1 == "LAB_RC" { l = $0; sub(/^LAB_RC [0-9]+ /, "", l); if (l == c) { print $2; exit } }' "$LOG"; }
count() { grep -c "^$1 " "$LOG"; }
# uuids TAG: the UUIDs of the TAG_MDEV lines, sorted, on one line
uuids() { awk -v k="$1_MDEV" '$1 == k { print $2 }' "$LOG" | sort | tr '\n' ' ' | sed 's/ $//'; }
avail() { awk -v k="$1_TYPE" -v t="$T" '$1 == k && $2 == t { print $4; exit }' "$LOG"; }
expect() { # WHAT GOT WANT
	if [ "$2" = "$3" ]; then echo "  ok  $1: $2"; else bad "$1: got '${2:-nothing}', want '$3'"; fi
}

expect "systemd-udevd started" "$(rc_of 'systemd-udevd --daemon')" 0
expect "udevd answers" "$(rc_of 'udevadm control --ping')" 0
expect "modprobe mtty" "$(rc_of 'modprobe mtty')" 0
expect "the parent is virtual" "$(awk '$1 == "MDEV_PARENT" { print $3; exit }' "$LOG")" /sys/devices/virtual/mtty/mtty
before=$(avail BEFORE)
[ -n "$before" ] && [ "$before" -ge 2 ] && echo "  ok  $T free before: $before" || bad "$T available_instances before: '$before' (want 2 or more)"
expect "create by hand" "$(rc_of 'create 83b8f4f2-509f-482f-bc1e-e6bfe0fa1001')" 0
expect "instances made by hand" "$(count HAND_MDEV)" 1
expect "VFIO opens the instance by UUID" "$(rc_of 'vfio-open 3 83b8f4f2-509f-482f-bc1e-e6bfe0fa1001')" 0
expect "instances after remove" "$(count HAND_GONE_MDEV)" 0
if grep -q '^MDEV_SKIP' "$LOG"; then
	bad "the guest had no passthru: $(grep '^MDEV_SKIP' "$LOG")"
else
	expect "passthru share mdev $P --type $T --count 2 --now --yes exit code" "$(rc_of "passthru share mdev $P --type $T --count 2 --now --yes")" 0
	expect "udev rule" "$(awk '$1 == "RULE" { print $2; exit }' "$LOG")" "61-passthru-mdev-$P-$T.rules"
	# The rule's UUIDs (what passthru wrote) are the instances the kernel made.
	rule=$(sed -n 's/^RULE_TEXT .*ATTR{[^}]*}="\([0-9a-f-]*\)"$/\1/p' "$LOG" | sort | tr '\n' ' ' | sed 's/ $//')
	expect "UUIDs in the rule" "$(echo "$rule" | wc -w)" 2
	expect "instances after share --now" "$(uuids SHARE)" "$rule"
	expect "$T free after share" "$(avail SHARE)" $((before - 2))
	expect "VFIO opens passthru's instance 0" "$(grep -c '^VFIO_OPEN_OK ' "$LOG")" 2
	expect "list: instances in their groups" "$(grep -c '^LIST   mdev ' "$LOG")" 2
	expect "list: nothing unreadable" "$(grep -c '^LIST Could not read' "$LOG")" 0
	dom=$(awk '$1 == "DOMAIN_MDEV" { sub(/.*uuid=./, ""); sub(/.$/, ""); print; exit }' "$LOG")
	case " $rule " in
	*" $dom "*) [ -n "$dom" ] && echo "  ok  libvirt domain names live instance $dom" || bad "libvirt attach wrote no mdev hostdev" ;;
	*) bad "libvirt attach named '$dom', not one of passthru's instances ($rule)" ;;
	esac
	expect "libvirt attach rolled back" "$(awk '$1 == "DOMAIN_AFTER" { print $2; exit }' "$LOG")" 0
	expect "instances after rollback of --now" "$(count ROLLBACK_MDEV)" 0
	expect "$T free after rollback" "$(avail ROLLBACK)" "$before"
	expect "rmmod mtty" "$(rc_of 'rmmod mtty')" 0
	expect "udevadm settle" "$(rc_of 'udevadm settle')" 0
	expect "udev made the instances when mtty registered" "$(uuids UDEV_REGISTERED)" "$rule"
	expect "instances removed by hand" "$(count UDEV_CLEARED_MDEV)" 0
	expect "udev made them again at coldplug (add)" "$(uuids UDEV_COLDPLUG)" "$rule"
	expect "share --count 0 --now exit code" "$(rc_of "passthru share mdev $P --type $T --count 0 --now --yes")" 0
	expect "instances after --count 0 --now" "$(count ZERO_MDEV)" 0
	expect "rule after --count 0" "$(awk '$1 == "RULE_ZERO" { print NF; exit }' "$LOG")" 1
	expect "rollback brings the instances back" "$(uuids ZERO_BACK)" "$rule"
	expect "the second rollback brings the rule back" "$(awk '$1 == "RULE_ZERO_BACK" { print $2; exit }' "$LOG")" "61-passthru-mdev-$P-$T.rules"
fi

expect "passthru scan --archive" "$(rc_of 'passthru scan --archive')" 0
ARCHIVE=$TMP/work/runs/$S/snap.tgz
want=$(awk '$1 == "MDEV_ARCHIVE" { print $2; exit }' "$LOG")
got=$(stat -c %s "$ARCHIVE" 2>/dev/null || echo 0)
if [ -n "$want" ] && [ "$want" = "$got" ] && gzip -t "$ARCHIVE" 2>/dev/null; then
	echo "  ok  the archive came over the serial port: $got bytes"
	if [ -n "$RECORD" ]; then
		mkdir -p "$REPO/tests/fixtures/qemu/$S"
		cp "$ARCHIVE" "$REPO/tests/fixtures/qemu/$S/archive.tar.gz"
		{
			echo "scenario: $S"
			echo "kernel: $KVER"
			echo "qemu: $(qemu-system-x86_64 --version | head -1)"
			echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
			echo "what: passthru scan --archive in the guest after share mdev $P --type $T --count 2 --now (two live instances)"
			echo "qemu_cmdline: $(cat "$TMP/work/runs/$S/cmdline.txt")"
		} > "$REPO/tests/fixtures/qemu/$S/meta.txt"
		echo "mdev-test.sh: recorded tests/fixtures/qemu/$S/archive.tar.gz"
	fi
else
	bad "the archive: the guest said '${want:-nothing}' bytes, got $got (or it fails gzip -t)"
fi

if [ $fails -gt 0 ]; then
	keep=1
	echo "mdev-test.sh: FAIL: $fails $([ $fails -eq 1 ] && echo check || echo checks) failed; passthru part of the console:" >&2
	grep -Ev '^DMESG' "$LOG" | grep -E '^(LAB_|MDEV|HAND|SHARE|ROLLBACK|RULE|VFIO_|UDEV|ZERO|LIST|DOMAIN)|rror|efus' >&2
	echo "mdev-test.sh: full console: $TMP/work/runs/$S/console.log; extract: $LOG" >&2
	exit 1
fi
echo "mdev-test.sh: PASS: mtty-2 instances made by hand and by passthru share mdev (opened through VFIO, taken by a libvirt domain), removed by rollback; the real udevd made them from passthru's rule at registration and at coldplug; --count 0 and its rollback exact (build ${build_s}s, boot ${boot_s}s, total $((SECONDS - start))s)"
