#!/usr/bin/env bash
# Smoke test of the real-kernel fixtures: boot intel-flat into a temporary directory and compare
# its groups.txt and lspci-nnk.txt with the committed ones. Exit 1 (printing the diff) on any
# difference; print "SKIP" and exit 0 when the host cannot run the lab (under CI=true: exit 1) (no qemu-system-x86_64,
# no guest kernel, no busybox-static/kmod/cpio/gcc static libc/lspci). No root; about 15-30 s.
#
#   smoke.sh [SCENARIO]      (default intel-flat)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
S=${1:-intel-flat}
WANT=$REPO/tests/fixtures/qemu/$S
export PATH=$PATH:/sbin:/usr/sbin

. "$HERE/lab-prereqs.sh"
skip() { lab_skip smoke.sh "$*"; }
[ -f "$WANT/groups.txt" ] && [ -f "$WANT/lspci-nnk.txt" ] || { echo "smoke.sh: no committed fixture $WANT" >&2; exit 1; }
# the committed capture says which kernel it came from; boot that one
KVER=$(sed -n 's/^kernel: //p' "$WANT/meta.txt")
[ -n "$KVER" ] || { echo "smoke.sh: $WANT/meta.txt names no kernel" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qemu-lab-smoke.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
lab_require "$KVER" "$TMP"

start=$SECONDS
if ! KVER=$KVER WORK=$TMP/work FIXTURES=$TMP/fixtures JOBS=1 TIMEOUT=${TIMEOUT:-180} "$HERE/run.sh" "$S"; then
	echo "smoke.sh: FAIL: the $S guest did not produce a capture" >&2
	exit 1
fi
GOT=$TMP/fixtures/$S
rc=0
for f in groups.txt lspci-nnk.txt; do
	if ! diff -u "$WANT/$f" "$GOT/$f"; then
		echo "smoke.sh: FAIL: $f differs from tests/fixtures/qemu/$S/$f (- committed, + this boot)" >&2
		rc=1
	fi
done
[ $rc -eq 0 ] && echo "smoke.sh: PASS: $S groups.txt and lspci-nnk.txt match the committed capture ($((SECONDS - start))s)"
exit $rc
