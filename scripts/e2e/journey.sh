#!/bin/bash
# Runs inside the booted guest (from the third disk, mounted on /e2e, by e2e-boot.service):
# one stage of the journey per boot, chosen by /e2e/stage. One line per step on stdout
# (the second serial port, read by the host), each command's output indented below it.
# A "record" line notes what passthru says (its exit code is data); a "step" line fails
# the boot when its command fails.
set -u
E=/e2e
P=$E/passthru
GPU=00:02.0
DOM=e2e
stage=$(cat $E/stage)
# grub (GRUB + initramfs-tools), dracut (GRUB + dracut), systemd-boot (systemd-boot +
# kernel-install + initramfs-tools), single (the grub image on a single-GPU machine).
variant=$(cat $E/variant 2>/dev/null || echo grub)
ESP_ENTRIES=/boot/efi/loader/entries
mkdir -p $E/out
n=0
fails=0

now() { date +%s.%N; }
show() { sed -n '1,60p' "$1" | sed 's/^/    | /'; [ "$(wc -l <"$1")" -le 60 ] || echo "    | ... ($(wc -l <"$1") lines, full output in /e2e/out)"; }
_run() {
	local kind=$1 name=$2; shift 2
	n=$((n + 1))
	local out=$E/out/boot$stage-$n.txt t0 rc dt
	t0=$(now)
	"$@" >"$out" 2>&1
	rc=$?
	dt=$(echo "$(now) $t0" | awk '{printf "%.1f", $1 - $2}')
	if [ "$kind" = record ]; then
		echo "RECORD boot$stage.$n $name: exit $rc (${dt} s)"
	elif [ $rc = 0 ]; then
		echo "STEP boot$stage.$n $name: ok (${dt} s)"
	else
		echo "STEP boot$stage.$n $name: FAIL exit $rc (${dt} s)"
		fails=$((fails + 1))
	fi
	show "$out"
	return $rc
}
step() { _run step "$@"; }
record() { _run record "$@"; }

driver_of() { basename "$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null)" 2>/dev/null || echo none; }
expect_drivers() { # want for 02.0, want for 02.1
	local a b
	a=$(driver_of 0000:00:02.0); b=$(driver_of 0000:00:02.1)
	echo "0000:00:02.0 -> $a (want $1)"; echo "0000:00:02.1 -> $b (want $2)"
	lspci -nnk -s 00:02
	[ "$a" = "$1" ] && [ "$b" = "$2" ]
}
# sha256 of every regular file under /etc, /boot and the ESP (the files setup may touch, and
# those its commands regenerate: kernel-install writes entries and copies onto the ESP),
# sorted by path.
hash_tree() { find /etc /boot /boot/efi -xdev -type f -print0 2>/dev/null | sort -zu | xargs -0 sha256sum; }
# The initramfs's file list, whichever tool built it.
initrd_list() {
	if command -v lsinitramfs >/dev/null; then lsinitramfs "$1"
	# (Debian's awk is mawk: no {n} intervals in regular expressions)
	else lsinitrd "$1" 2>/dev/null | awk 'length($1) == 10 && $1 ~ /^[-dlcbps]/ { if ($(NF-1) == "->") print $(NF-2); else print $NF }'
	fi
}
# The paths the setup transaction's manifest names (the journal's own list of what it wrote).
manifest_paths() { grep -o '"path": *"[^"]*"' "$(cat $E/setup-txn-dir)/manifest.json" | sed 's/.*"path": *"//; s/"$//'; }
configured_words() { # the command-line words the boot loader's configuration gives the next boot
	if [ "$variant" = systemd-boot ]; then
		cat /etc/kernel/cmdline
	else
		(
			for f in /etc/default/grub /etc/default/grub.d/*.cfg; do [ -r "$f" ] && . "$f"; done
			echo "${GRUB_CMDLINE_LINUX:-} ${GRUB_CMDLINE_LINUX_DEFAULT:-}"
		)
	fi | tr ' ' '\n' | grep -v '^$' | sort -u
}
setup_tokens() { # the words setup added: configured after setup, not before
	comm -13 $E/words-before <(configured_words)
}
boot_config_carries() { # grub.cfg, or every systemd-boot entry, carries setup's words
	local files=/boot/grub/grub.cfg f t bad=0
	[ "$variant" = systemd-boot ] && files=$(ls $ESP_ENTRIES/*.conf)
	for f in $files; do
		echo "$f:"; grep -E '^options|linux.*vmlinuz' "$f" | head -3 | sed 's/^/    /'
		for t in $(cat $E/setup-tokens); do
			grep -qw -- "$t" "$f" && echo "  has $t" || { echo "  MISSING $t"; bad=1; }
		done
	done
	return $bad
}
cmdline_has_all() {
	local missing=0
	cat /proc/cmdline
	for t in $(cat "$1"); do
		grep -qw -- "$t" /proc/cmdline && echo "  has $t" || { echo "  MISSING $t"; missing=1; }
	done
	return $missing
}
cmdline_has_none() {
	local found=0
	cat /proc/cmdline
	for t in $(cat "$1"); do
		grep -qw -- "$t" /proc/cmdline && { echo "  STILL HAS $t"; found=1; } || echo "  gone $t"
	done
	return $found
}
find_setup_txn() {
	local d
	d=$(ls -td /var/lib/passthru/journal/*/ 2>/dev/null | head -1)
	[ -n "$d" ] && [ -r "$d/manifest.json" ] || { echo "no journal directory"; return 1; }
	echo "${d%/}" >$E/setup-txn-dir
	grep -o '"id": *"[^"]*"' "$d/manifest.json" | head -1 | sed 's/.*"id": *"//; s/"$//' >$E/setup-txn
	echo "setup transaction: $(cat $E/setup-txn) in $d"
	[ -s $E/setup-txn ]
}
touched_files() { # what setup changed in /etc and /boot (the real diff) and what its journal lists
	diff <(cut -c67- $E/hash-before) <(cut -c67- $E/hash-after) | sed -n 's/^[<>] //p' >$E/touched.tmp
	join -j 2 <(sort -k2 $E/hash-before) <(sort -k2 $E/hash-after) | awk '$2 != $3 {print $1}' >>$E/touched.tmp
	sort -u $E/touched.tmp >$E/touched-diff
	manifest_paths | sed 's|^/*|/|' | sort -u >$E/touched-journal
	echo "changed on disk by setup (files and what its commands regenerated):"; sed 's/^/  /' $E/touched-diff
	echo "listed in setup's journal:"; sed 's/^/  /' $E/touched-journal
	echo "changed on disk but not in the journal (regenerated by update-initramfs/update-grub, or unjournaled):"
	comm -23 $E/touched-diff $E/touched-journal | sed 's/^/  /'
	cat $E/touched-diff $E/touched-journal | sort -u >$E/touched
	[ -s $E/touched-journal ]
}
compare_touched() { # every touched file as it was before setup (boot 1)
	local bad=0 f before now_
	while read -r f; do
		before=$(awk -v f="$f" '$2 == f {print $1}' $E/hash-before)
		now_=$( [ -f "$f" ] && sha256sum "$f" | cut -d' ' -f1 )
		[ -n "$before" ] || before=absent
		[ -n "$now_" ] || now_=absent
		if [ "$before" = "$now_" ]; then echo "  identical $f ($before)"
		elif grep -qx "$f" $E/touched-journal; then echo "  DIFFERS   $f (boot 1 ${before:0:12}, now ${now_:0:12})"; bad=1
		elif [[ $f == /boot/initrd.img-* || $f == /boot/efi/*/initrd.img-* ]]; then
			# a rebuilt cpio carries new mtimes; its contents are judged by initramfs_clean
			echo "  differs   $f (rebuilt by update-initramfs, boot 1 ${before:0:12}, now ${now_:0:12})"
		else echo "  DIFFERS   $f (regenerated by a command, boot 1 ${before:0:12}, now ${now_:0:12})"; bad=1
		fi
	done <$E/touched
	return $bad
}
initramfs_clean() {
	local img=/boot/initrd.img-$(uname -r) bad=0 p
	initrd_list "$img" >$E/initramfs-list-boot$stage
	# by name: initramfs-tools copies the udev rule to usr/lib/udev/rules.d/, not to its etc/ path
	for p in $(cat $E/touched-journal); do
		# etc/initramfs-tools/modules is read by mkinitramfs, never copied (its name is also a directory's)
		[ "$(basename "$p")" = modules ] && continue
		if grep -qE "(^|/)$(basename "$p")\$" $E/initramfs-list-boot$stage; then
			echo "  STILL IN INITRAMFS: $(grep -E "(^|/)$(basename "$p")\$" $E/initramfs-list-boot$stage | tr '\n' ' ')"
			bad=1
		else echo "  not in initramfs: $(basename "$p")"
		fi
	done
	echo "vfio entries in $img:"; grep -i vfio $E/initramfs-list-boot$stage | sed 's/^/  /'
	return $bad
}
initramfs_carries() {
	local img=/boot/initrd.img-$(uname -r) bad=0 p
	initrd_list "$img" >$E/initramfs-list-boot$stage
	# passthru's modprobe file (and, under dracut, its udev rule: dracut copies neither by
	# itself), by name: initramfs-tools puts the rule in usr/lib/udev/rules.d/
	for p in $(grep -E '^/etc/(modprobe\.d|udev/rules\.d)/' $E/touched-journal); do
		grep -qE "(^|/)$(basename "$p")\$" $E/initramfs-list-boot$stage && echo "  in initramfs: $(basename "$p")" || { echo "  NOT IN INITRAMFS ${p#/}"; bad=1; }
	done
	grep -i vfio $E/initramfs-list-boot$stage | sed 's/^/  /'
	return $bad
}
early_binding() { # vfio-pci claimed the card before its host drivers loaded (this boot's kernel log)
	journalctl -b -k --no-pager -o short-monotonic | grep -iE 'vfio|bochs|snd_hda|0000:00:02' | head -30
	! journalctl -b -k --no-pager | grep -qi 'bochs-drm.*0000:00:02.0'
}
domain_xml() {
	cat <<X
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
</domain>
X
}
info_pci_shows_card() {
	virsh qemu-monitor-command $DOM --hmp 'info pci' | tee $E/info-pci
	grep -q '1234:1111' $E/info-pci && grep -q '8086:293e' $E/info-pci
}

echo "E2E-BOOT$stage START $(date -u +%FT%TZ) kernel $(uname -r) variant $variant"
echo "cmdline: $(cat /proc/cmdline)"
refused() { # what passthru says, expected to refuse (exit 1 or 2) naming each rule given
	local out=$E/out/refused.txt id rc
	"${@:2}" >$out 2>&1
	rc=$?
	cat $out
	[ $rc != 0 ] || { echo "  NOT REFUSED (exit 0)"; return 1; }
	for id in $1; do grep -q -- "$id" $out && echo "  names $id" || { echo "  DOES NOT NAME $id"; return 1; }; done
}
if [ "$variant" = single ]; then
	# One boot: the card (01:01.0 behind the bridge) is the only display and shares its
	# IOMMU group with the default-route NIC (01:02.0). Nothing may change.
	G=01:01.0
	record "passthru list" $P list
	record "interlocks as passthru sees them" bash -c "$P scan --json | grep -A4 -E '\"(default_route|boot_disk)' | head -40; ip route show default"
	step "hash /etc and /boot before" bash -c "$(declare -f hash_tree); hash_tree >$E/hash-before; wc -l <$E/hash-before"
	step "check $G: blocked, naming the only display and the network" refused "safety.only-display safety.network" $P check $G
	step "setup vm $G --yes refuses (only display, network)" refused "only display network" $P setup vm $G --yes
	step "bind $G --yes refuses (only display, network)" refused "only display network" $P bind $G --yes
	step "the NIC 01:02.0 keeps its driver and the route" bash -c "readlink /sys/bus/pci/devices/0000:01:02.0/driver; ip route show default | grep -q ."
	step "the card keeps its drivers" bash -c "readlink /sys/bus/pci/devices/0000:01:01.0/driver | grep -q bochs"
	step "nothing under /etc and /boot changed, no journal" bash -c "$(declare -f hash_tree); hash_tree >$E/hash-after; diff $E/hash-before $E/hash-after && ! ls /var/lib/passthru/journal/*/manifest.json 2>/dev/null"
else
case $stage in
1)
	record "passthru --version" $P --version
	record "passthru list" $P list
	record "interlocks: default-route NIC (virtio 00:04.0) and boot disk (virtio 00:05.0) as passthru sees them" bash -c "$P scan --json | grep -A4 -E '\"(default_route|boot_disk)' | head -40; ip route show default"
	record "check before setup (verdict)" $P check
	# The image's grub.cfg was made during a -kernel boot without firmware; under OVMF
	# update-grub adds 'UEFI Firmware Settings'. The baseline is what this host generates.
	[ "$variant" = systemd-boot ] || step "baseline grub.cfg: update-grub under this EFI boot" update-grub
	[ "$variant" = systemd-boot ] && record "systemd-boot: bootctl status and the entries" bash -c "bootctl status --no-pager 2>&1 | head -30; head -20 $ESP_ENTRIES/*.conf"
	# passthru's package, as a user installs it: the verify unit enabled, the kernel hooks in
	# place. Before the hashes: what setup touches is judged apart from what dpkg installed.
	step "dpkg -i passthru.deb (passthru-verify.service enabled, kernel hooks)" bash -c "dpkg -i $E/passthru.deb && systemctl is-enabled passthru-verify.service && ls -l /etc/kernel/postinst.d/zz-passthru-verify"
	step "keep this boot's initramfs (one without vfio, for boot 2)" bash -c "cp /boot/initrd.img-\$(uname -r) $E/initrd-before && ls -l $E/initrd-before"
	step "configured command line before setup" bash -c "$(declare -f configured_words); variant=$variant; configured_words | tee $E/words-before"
	step "hash /etc, /boot and the ESP before setup" bash -c "$(declare -f hash_tree); hash_tree >$E/hash-before; wc -l <$E/hash-before"
	step "setup vm $GPU --yes (real update-initramfs, update-grub)" $P setup vm $GPU --yes
	step "find setup's transaction" find_setup_txn
	step "hash /etc, /boot and the ESP after setup" bash -c "$(declare -f hash_tree); hash_tree >$E/hash-after; wc -l <$E/hash-after"
	step "files setup touched (disk diff vs journal)" touched_files
	step "setup's command-line words recorded" bash -c "$(declare -f configured_words setup_tokens); variant=$variant E=$E; setup_tokens | tee $E/setup-tokens; [ -s $E/setup-tokens ]"
	step "initramfs carries setup's binding files" initramfs_carries
	step "the boot configuration carries setup's words ($variant)" boot_config_carries
	record "check after setup (verdict)" $P check
	record "setup vm $GPU --dry-run again" $P setup vm $GPU --dry-run
	record "setup status" $P setup status
	;;
2)
	step "/proc/cmdline carries what setup wrote" cmdline_has_all $E/setup-tokens
	step "vfio-pci owns 00:02.0 and 00:02.1" expect_drivers vfio-pci vfio-pci
	step "00:03.0, the other 1234:1111 display, stays with bochs-drm (bound by address)" bash -c "[ \"\$(basename \$(readlink /sys/bus/pci/devices/0000:00:03.0/driver))\" = bochs-drm ] && lspci -nnk -s 00:03.0"
	record "kernel log: the card's drivers this boot" early_binding
	step "passthru-verify.service ran at this boot and passed (exit 0)" bash -c "journalctl -b -u passthru-verify --no-pager | tail -20; [ \"\$(systemctl show -p ExecMainStatus --value passthru-verify)\" = 0 ] && [ \"\$(systemctl show -p ActiveState --value passthru-verify)\" = active ]"
	step "/dev/vfio group present" bash -c "ls -l /dev/vfio/; readlink /sys/bus/pci/devices/0000:00:02.0/iommu_group"
	record "check after reboot (verdict)" $P check
	record "interlocks: default-route NIC (virtio 00:04.0) and boot disk (virtio 00:05.0) as passthru sees them" bash -c "$P scan --json | grep -A4 -E '\"(default_route|boot_disk)' | head -40; ip route show default"
	step "libvirtd answers" timeout 300 virsh -c qemu:///system version
	step "virsh define $DOM" bash -c "$(declare -f domain_xml); DOM=$DOM; domain_xml >$E/$DOM.xml; virsh define $E/$DOM.xml"
	step "passthru libvirt attach $DOM $GPU --yes" $P libvirt attach $DOM $GPU --yes
	record "domain XML after attach" virsh dumpxml --inactive $DOM
	step "virsh start $DOM" timeout 600 virsh start $DOM
	step "QEMU monitor 'info pci' lists the card (1234:1111, 8086:293e)" info_pci_shows_card
	step "virsh destroy $DOM" virsh destroy $DOM
	step "passthru libvirt detach $DOM $GPU --yes" $P libvirt detach $DOM $GPU --yes
	step "domain XML has no hostdev after detach" bash -c "! virsh dumpxml --inactive $DOM | grep -q hostdev"
	# Drifted, live: the card back on its host driver although this kernel booted with the
	# vfio configuration; bind puts it back (docs/states.md).
	step "passthru unbind $GPU --yes (the card back on its host drivers now)" $P unbind $GPU --yes
	step "check says drifted" bash -c "$P check $GPU >$E/out/drift.txt; cat $E/out/drift.txt; grep -q 'state: drifted' $E/out/drift.txt"
	step "passthru bind $GPU --yes" $P bind $GPU --yes
	step "check says effective again" bash -c "$P check $GPU >$E/out/eff.txt; cat $E/out/eff.txt; grep -q 'state: effective' $E/out/eff.txt"
	# An initramfs without vfio for the next boot (the one boot 1 had before setup): the
	# kernel hook reports it to the journal and verify --next-boot exits 1 naming it.
	step "the kernel hook and verify --next-boot catch an initramfs without vfio" bash -c "k=\$(uname -r); cp /boot/initrd.img-\$k $E/initrd-setup && cp $E/initrd-before /boot/initrd.img-\$k && /etc/kernel/postinst.d/zz-passthru-verify \$k; $P verify --next-boot >$E/out/verify-broken.txt 2>&1; rc=\$?; cp $E/initrd-setup /boot/initrd.img-\$k; cat $E/out/verify-broken.txt; journalctl -t passthru-verify --no-pager | tail -8; [ \$rc = 1 ] && grep -q verify.initramfs $E/out/verify-broken.txt && journalctl -t passthru-verify --no-pager | grep -q verify.initramfs"
	step "passthru rollback SETUP --yes" bash -c "$P rollback \$(cat $E/setup-txn) --yes"
	record "check after rollback, before reboot (verdict)" $P check
	;;
3)
	step "the card is back on its host drivers" expect_drivers bochs-drm snd_hda_intel
	step "/proc/cmdline no longer carries setup's words" cmdline_has_none $E/setup-tokens
	step "every touched file byte-identical to boot 1 before setup (the initrd: by contents)" compare_touched
	step "initramfs no longer carries passthru's modprobe file" initramfs_clean
	record "check after rollback and reboot (verdict)" $P check
	record "passthru-verify.service after the rollback" bash -c "journalctl -b -u passthru-verify --no-pager | tail -8; systemctl show -p ExecMainStatus -p ActiveState passthru-verify"
	;;
*) echo "unknown stage $stage"; fails=1 ;;
esac
fi
if [ $fails = 0 ]; then echo "E2E-BOOT$stage PASS"; else echo "E2E-BOOT$stage FAIL ($fails steps)"; fi
echo $((stage + 1)) >$E/stage
sync
