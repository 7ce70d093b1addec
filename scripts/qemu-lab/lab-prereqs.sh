# Sourced by the lab scripts. `lab_skip SCRIPT REASON` ends a script that cannot run here:
# on a developer's machine it prints SKIP and exits 0; under CI (CI=true) a real-system step
# that did not run is a failure (exit 1), since .ci/run installs everything the lab needs.
lab_skip() {
	if [ "${CI:-}" = true ]; then
		echo "$1: FAIL: cannot run under CI: $2 (.ci/run must install it)" >&2
		exit 1
	fi
	echo "$1: SKIP: $2"
	exit 0
}

# Checks that this host can boot the lab guest for kernel $1, calling the caller's
# `skip REASON` for whatever is missing, and `$2` as a scratch directory for the static-link
# probe.
lab_require() {
	local kver=$1 tmp=$2
	command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
	[ -r "/boot/vmlinuz-$kver" ] || skip "guest kernel /boot/vmlinuz-$kver not present (fixtures were made with it)"
	[ -d "/lib/modules/$kver/kernel" ] || skip "modules for $kver not present in /lib/modules"
	for t in busybox modprobe depmod cpio gzip gcc lspci ldd readelf; do
		command -v $t >/dev/null || skip "$t not installed"
	done
	file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked' || skip "busybox is not static (apt-get install busybox-static)"
	echo 'int main(void){return 0;}' > "$tmp/t.c"
	gcc -static -o "$tmp/t" "$tmp/t.c" 2>/dev/null || skip "gcc cannot link statically (apt-get install libc6-dev)"
}

# The guest kernel (KVER: the one the committed captures were made with, else the newest in
# /boot) and the passthru binary to put in the guest (PASSTHRU, or cargo to build it). Needs
# REPO and a `skip` function; $1 names the script in messages.
lab_pick_kernel_and_passthru() {
	KVER=${KVER:-$(sed -n 's/^kernel: //p' "$REPO/tests/fixtures/qemu/intel-flat/meta.txt" 2>/dev/null)}
	KVER=${KVER:-$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)}
	[ -n "$KVER" ] || skip "no guest kernel (/boot/vmlinuz-*)"
	if [ -n "${PASSTHRU:-}" ]; then
		[ -x "$PASSTHRU" ] || { echo "$1: FAIL: PASSTHRU=$PASSTHRU is not an executable" >&2; exit 1; }
	else
		command -v cargo >/dev/null || skip "cargo not installed (needed to build passthru)"
	fi
}


# PASSTHRU as given, else the release build (cargo); exported for run.sh. Sets build_s.
# $1 names the script in messages.
lab_build_passthru() {
	local t0=$SECONDS
	if [ -z "${PASSTHRU:-}" ]; then
		if ! (cd "$REPO" && cargo build --release -p passthru --quiet); then
			echo "$1: FAIL: cargo build --release -p passthru failed" >&2
			exit 1
		fi
		PASSTHRU=$REPO/target/release/passthru
	fi
	export PASSTHRU
	build_s=$((SECONDS - t0))
}

# lab_boot SCRIPT SCENARIO TAG TIMEOUT: boots SCENARIO in $TMP/work and keeps the console
# from LAB_<TAG>_BEGIN to LAB_<TAG>_END in $LOG ($TMP/console.txt). Sets boot_s; a guest
# that does not finish sets keep=1 (the caller's trap keeps $TMP) and exits 1.
lab_boot() {
	local t0=$SECONDS
	if ! KVER=$KVER WORK=$TMP/work FIXTURES=$TMP/fixtures JOBS=1 TIMEOUT=$4 "$HERE/run.sh" "$2"; then
		keep=1
		echo "$1: FAIL: the $2 guest did not finish (console: $TMP/work/runs/$2/console.log)" >&2
		exit 1
	fi
	boot_s=$((SECONDS - t0))
	LOG=$TMP/console.txt
	sed 's/\r$//' "$TMP/work/runs/$2/console.log" | sed -n "/^LAB_$3_BEGIN/,/^LAB_$3_END/p" > "$LOG"
}
