#!/usr/bin/env bash
# Real-kernel test of `passthru bind` / `passthru unbind`: boot the intel-bind scenario (flat
# topology, Intel VT-d, iommu=pt) in a temporary directory; its /init runs passthru inside the
# guest (list, check, bind, vfio-open, check --json, unbind) and prints markers that are checked
# here:
#   after bind    BIND_DRIVER 0000:00:02.0/.1 vfio-pci, VFIO_NODE /dev/vfio/<group> present,
#                 VFIO_OPEN_OK for both functions, `check --for vm --json` verdict "ready"
#   after unbind  UNBIND_DRIVER 0000:00:02.0 bochs-drm, 0000:00:02.1 snd_hda_intel,
#                 OVERRIDE <bdf> (null)
#   bind again, then `rollback --yes` (the journal's undo on a real kernel):
#                 ROLLBACK_DRIVER as after unbind, ROLLBACK_OVERRIDE (null); each of the four
#                 transactions (bind, unbind, bind, rollback) reported "Applied as transaction"
# Exit 1 with a message on any failure; print "SKIP" and exit 0 when the host cannot run the lab (under CI=true: exit 1)
# (no qemu-system-x86_64, guest kernel, busybox-static/kmod/cpio/static gcc/lspci, or cargo). No
# root; about 15 s plus the cargo build.
#
#   bind-test.sh [--record]   --record: also write the passthru part of the console (LAB_BIND_BEGIN
#                             .. LAB_BIND_END) to tests/fixtures/qemu/intel-bind/console.txt
# Environment: PASSTHRU (a prebuilt binary: no cargo build), KVER, TIMEOUT (180 s).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
S=intel-bind
GPU=0000:00:02.0
HDA=0000:00:02.1
RECORD=
for a in "$@"; do
	case $a in
	--record) RECORD=1 ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "bind-test.sh: unknown argument $a" >&2; exit 2 ;;
	esac
done
export PATH=$PATH:/sbin:/usr/sbin:$HOME/.cargo/bin

. "$HERE/lab-prereqs.sh"
skip() { lab_skip bind-test.sh "$*"; }
# boot the kernel the committed real-kernel fixtures were made with
lab_pick_kernel_and_passthru bind-test.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/qemu-lab-bind.XXXXXX")
keep=
trap '[ -n "$keep" ] || rm -rf "$TMP"' EXIT
lab_require "$KVER" "$TMP"

start=$SECONDS
lab_build_passthru bind-test.sh
build_s=$((SECONDS - start))

lab_boot bind-test.sh "$S" BIND "${TIMEOUT:-180}"

if [ -n "$RECORD" ]; then
	mkdir -p "$REPO/tests/fixtures/qemu/$S"
	cp "$LOG" "$REPO/tests/fixtures/qemu/$S/console.txt"
	echo "bind-test.sh: recorded tests/fixtures/qemu/$S/console.txt ($(wc -l < "$LOG") lines)"
fi

fails=0
bad() { echo "bind-test.sh: FAIL: $*" >&2; fails=$((fails + 1)); }
# marker KEY ARG: the rest of the first line "KEY ARG ..."
marker() { awk -v k="$1" -v a="$2" '$1 == k && $2 == a { $1 = ""; $2 = ""; sub(/^  /, ""); print; exit }' "$LOG"; }
rc_of() { awk -v c="$1" '$1 == "LAB_RC" { l = $0; sub(/^LAB_RC [0-9]+ /, "", l); if (l == c) { print $2; exit } }' "$LOG"; }
expect() { # WHAT GOT WANT
	if [ "$2" = "$3" ]; then echo "  ok  $1: $2"; else bad "$1: got '${2:-nothing}', want '$3'"; fi
}

if grep -q '^BIND_SKIP' "$LOG"; then
	bad "the guest had no passthru: $(grep '^BIND_SKIP' "$LOG")"
else
	expect "passthru bind $GPU --yes exit code" "$(rc_of "passthru bind $GPU --yes")" 0
	expect "after bind, driver of $GPU" "$(marker BIND_DRIVER $GPU)" vfio-pci
	expect "after bind, driver of $HDA" "$(marker BIND_DRIVER $HDA)" vfio-pci
	node=$(awk '$1 == "VFIO_NODE" { print $2, $3; exit }' "$LOG")
	expect "after bind, group node" "${node##* }" present
	expect "vfio-open $GPU" "$(grep -c "^VFIO_OPEN_OK $GPU " "$LOG")" 1
	expect "vfio-open $HDA" "$(grep -c "^VFIO_OPEN_OK $HDA " "$LOG")" 1
	json=$(sed -n '/^CHECK_JSON_BEGIN/,/^CHECK_JSON_END/p' "$LOG" | sed '1,2d;$d' | grep -v '^LAB_RC ')
	if command -v jq >/dev/null; then
		verdict=$(printf '%s\n' "$json" | jq -r --arg g "$GPU" '.gpus[] | select(.address == $g) | .verdicts.vm' 2>/dev/null)
	elif command -v python3 >/dev/null; then
		verdict=$(printf '%s\n' "$json" | python3 -c 'import json,sys; g=sys.argv[1]; print(next(x["verdicts"]["vm"] for x in json.load(sys.stdin)["gpus"] if x["address"]==g))' "$GPU" 2>/dev/null)
	else
		verdict=$(printf '%s\n' "$json" | sed -n '/"verdicts"/,/}/s/.*"vm": *"\([^"]*\)".*/\1/p' | head -1)
	fi
	expect "after bind, check --for vm verdict" "$verdict" ready
	expect "passthru check $GPU --for vm --json exit code" "$(rc_of "passthru check $GPU --for vm --json")" 0
	expect "passthru unbind $GPU --yes exit code" "$(rc_of "passthru unbind $GPU --yes")" 0
	expect "after unbind, driver of $GPU" "$(marker UNBIND_DRIVER $GPU)" bochs-drm
	expect "after unbind, driver of $HDA" "$(marker UNBIND_DRIVER $HDA)" snd_hda_intel
	expect "after unbind, driver_override of $GPU" "$(marker OVERRIDE $GPU)" "(null)"
	expect "after unbind, driver_override of $HDA" "$(marker OVERRIDE $HDA)" "(null)"
	expect "bind journaled" "$(grep -cE '^Applied as transaction .* sysfs writes? written' "$LOG")" 4
	expect "passthru rollback --yes exit code" "$(rc_of "passthru rollback --yes")" 0
	expect "after rollback of a bind, driver of $GPU" "$(marker ROLLBACK_DRIVER $GPU)" bochs-drm
	expect "after rollback of a bind, driver of $HDA" "$(marker ROLLBACK_DRIVER $HDA)" snd_hda_intel
	expect "after rollback of a bind, driver_override of $GPU" "$(marker ROLLBACK_OVERRIDE $GPU)" "(null)"
fi

if [ $fails -gt 0 ]; then
	keep=1
	echo "bind-test.sh: FAIL: $fails $([ $fails -eq 1 ] && echo check || echo checks) failed; passthru part of the console:" >&2
	grep -Ev '^DMESG' "$LOG" | grep -E '^(LAB_|BIND_|UNBIND_|OVERRIDE|VFIO_|GROUP|BEFORE_)|rror|efus' >&2
	echo "bind-test.sh: full console: $TMP/work/runs/$S/console.log; extract: $LOG" >&2
	exit 1
fi
echo "bind-test.sh: PASS: passthru bound $GPU+$HDA to vfio-pci (group node present, vm ready) and gave them back (build ${build_s}s, boot ${boot_s}s, total $((SECONDS - start))s)"
