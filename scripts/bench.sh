#!/usr/bin/env bash
# Times `passthru list` side by side with lspci and with the shell loop people paste, on a
# typical home server (about 20 functions) and on a 4,096-function server, and measures
# passthru's peak memory. Prints a Markdown report; docs/performance.md holds the figures.
#
#   scripts/bench.sh [RUNS]        (needs hyperfine, pciutils, GNU time: apt-get install hyperfine pciutils time)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
for t in hyperfine lspci /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench.sh: $t is needed (apt-get install hyperfine pciutils time)" >&2; exit 2; }
done

cargo build --release -q -p passthru -p passthru-testkit
BIN=$PWD/target/release/passthru
MKHOST=$PWD/target/release/mkhost
# sysfs lives in memory, so the fixtures go to tmpfs too (and 170,000 files build in 2 s there).
if [ -w /dev/shm ]; then SCRATCH=/dev/shm; else SCRATCH=${TMPDIR:-/tmp}; fi
WORK=$(mktemp -d "$SCRATCH/passthru-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$MKHOST" tests/fixtures/synthetic/nvidia-desktop.toml "$WORK/typical" >/dev/null
"$MKHOST" tests/fixtures/synthetic/server-4096.toml "$WORK/server" >/dev/null
count() { ls "$1/sys/bus/pci/devices" | wc -l; }

# The loop from the guides: one lspci per device, per group.
cat > "$WORK/loop.sh" <<'LOOP'
#!/bin/bash
R=$1
for g in "$R"/sys/kernel/iommu_groups/*; do
	echo "IOMMU Group ${g##*/}:"
	for d in "$g"/devices/*; do
		echo -e "\t$(lspci -nns "${d##*/}" -A linux-sysfs -O sysfs.path="$R/sys/bus/pci")"
	done
done
LOOP
chmod +x "$WORK/loop.sh"

echo "# passthru list benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
echo
echo "passthru $("$BIN" --version | cut -d' ' -f2), $(lspci --version), pci.ids $(grep -m1 '^#.*Version' /usr/share/misc/pci.ids | sed 's/#[[:space:]]*//'); fixtures on $SCRATCH"
echo
for host in typical server; do
	R=$WORK/$host
	echo "## $host host: $(count "$R") PCI functions"
	echo
	cmds=(-n passthru "$BIN list --root $R"
		-n lspci "lspci -nnk -A linux-sysfs -O sysfs.path=$R/sys/bus/pci"
		-n "passthru check" "$BIN check --root $R")
	if [ "$host" = typical ]; then
		cmds+=(-n shell-loop "$WORK/loop.sh $R")
	fi
	# -i: check exits 1 when a GPU is not ready, which is not a failure here.
	hyperfine -N -i --warmup 3 --runs "$RUNS" --export-markdown "$WORK/$host.md" "${cmds[@]}" >/dev/null 2>&1
	if [ "$host" = server ]; then
		# The same on one core: what the threads add, and what is left without them.
		hyperfine -N --warmup 2 --runs "$RUNS" --export-markdown "$WORK/$host-1core.md" \
			-n "passthru (1 core)" "taskset -c 0 $BIN list --root $R" \
			-n "lspci (1 core)" "taskset -c 0 lspci -nnk -A linux-sysfs -O sysfs.path=$R/sys/bus/pci" >/dev/null 2>&1
		tail -n +3 "$WORK/$host-1core.md" >> "$WORK/$host.md"
	fi
	cat "$WORK/$host.md"
	echo
	for prog in passthru lspci; do
		if [ $prog = passthru ]; then c=("$BIN" list --root "$R"); else c=(lspci -nnk -A linux-sysfs -O "sysfs.path=$R/sys/bus/pci"); fi
		rss=$(/usr/bin/time -f %M "${c[@]}" 2>&1 >/dev/null | tail -1)
		echo "- peak memory, $prog: ${rss} KiB"
	done
	echo
done
