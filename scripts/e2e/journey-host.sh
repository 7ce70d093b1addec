# Sourced by run.sh: boots the cached image three times through OVMF -> GRUB with the
# journey disk attached, reads each boot's step lines from the second serial port, and
# fails on the first boot that does not end in E2E-BOOTn PASS.

# The machine: q35 with an emulated Intel IOMMU (interrupt remapping, caching mode so that
# vfio can map), TCG. 00:02.0 VGA + 00:02.1 HDA: the GPU-like card (one IOMMU group);
# 00:03.0 bochs-display: the host's other display; 00:04.0 virtio NIC on user-mode
# networking (the default route); disks: root 05.0, ESP 06.0, journey 07.0.
#
# The single-GPU machine (E2E_VARIANT=single) has no second display, and puts the card and
# the NIC behind one PCIe-to-PCI bridge (08.0), so that they share an IOMMU group: the card
# is the host's only display and taking it would take the network too.
machine_devices() {
	if [ "$E2E_VARIANT" = single ]; then
		echo -device pcie-pci-bridge,id=pb,bus=pcie.0,addr=08.0 \
			-device VGA,bus=pb,addr=01.0,multifunction=on \
			-device ich9-intel-hda,bus=pb,addr=01.1 -audiodev none,id=n \
			-netdev user,id=net0 -device virtio-net-pci,netdev=net0,bus=pb,addr=02.0
	else
		echo -device VGA,bus=pcie.0,addr=02.0,multifunction=on \
			-device ich9-intel-hda,bus=pcie.0,addr=02.1 -audiodev none,id=n \
			-device bochs-display,bus=pcie.0,addr=03.0 \
			-netdev user,id=net0 -device virtio-net-pci,netdev=net0,bus=pcie.0,addr=04.0
	fi
}

# A guest in emergency mode waits for a console nobody types on: stop it at once rather than
# at the boot timeout.
watch_emergency() { # console log, qemu pid
	while kill -0 "$2" 2>/dev/null; do
		if grep -q "You are in emergency mode" "$1" 2>/dev/null; then
			log "the guest is in emergency mode: stopping it"
			kill "$2"
			return
		fi
		sleep 10
	done
}

boot_guest() { # boot number
	local b=$1 d=$E2E_WORK/run
	: >"$d/serial-boot$b.log"
	: >"$d/console-boot$b.log"
	( sleep 5; watch_emergency "$d/console-boot$b.log" "$(pgrep -n -f "file:$d/console-boot$b.log")" ) &
	# shellcheck disable=SC2046 # the device list is words
	timeout "${E2E_BOOT_TIMEOUT:-2700}" "$QEMU" -nodefaults -display none \
		-M q35,kernel-irqchip=split -accel tcg,thread=multi -cpu max -smp 2 -m 3072 \
		-device intel-iommu,intremap=on,caching-mode=on \
		-drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
		-drive if=pflash,format=raw,unit=1,file="$d/vars.fd" \
		$(machine_devices) \
		-drive file="$d/root.img",if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0,bus=pcie.0,addr=05.0 \
		-drive file="$d/esp.img",if=none,id=d1,format=raw -device virtio-blk-pci,drive=d1,bus=pcie.0,addr=06.0 \
		-drive file="$d/journey.img",if=none,id=d2,format=raw -device virtio-blk-pci,drive=d2,bus=pcie.0,addr=07.0 \
		-serial file:"$d/console-boot$b.log" -serial file:"$d/serial-boot$b.log" -no-reboot
}

run_journey() {
	local t_start=$SECONDS
	if [ ! -x "$PASSTHRU" ]; then
		log "building passthru (cargo build --release)"
		(cd "$REPO" && cargo build --release --bin passthru) || die "cargo build failed"
	fi
	# The journey installs passthru's own package in the guest (its unit and kernel hooks).
	if [ -z "${E2E_DEB:-}" ]; then
		log "building the .deb (scripts/deb/build.sh)"
		E2E_DEB=$(bash "$REPO/scripts/deb/build.sh" "$E2E_WORK/deb" | tail -1) || die "the .deb did not build"
	fi
	[ -r "$E2E_DEB" ] || die "no .deb at $E2E_DEB"
	ensure_image
	local d=$E2E_WORK/run first=1 disks="root.img esp.img vars.fd journey.img"
	TRANSCRIPT=$d/transcript.txt
	if [ "${E2E_RESUME:-}" = 2 ] && [ -e "$E2E_WORK/after-boot1/ok" ]; then
		# Debugging aid: boot 2 again from the disks as boot 1 left them.
		log "resuming at boot 2 from $E2E_WORK/after-boot1 (E2E_RESUME=2)"
		for f in $disks; do cp --sparse=always "$E2E_WORK/after-boot1/$f" "$d/$f"; done
		cp "$E2E_WORK/after-boot1/transcript.txt" "$TRANSCRIPT"
		# this checkout's journey.sh replaces the one on the disk (debugfs: no mount needed)
		debugfs -w -R "rm journey.sh" "$d/journey.img" >/dev/null 2>&1
		debugfs -w -R "write $E2E_HERE/journey.sh journey.sh" "$d/journey.img" >/dev/null 2>&1
		debugfs -w -R "sif journey.sh mode 0100755" "$d/journey.img" >/dev/null 2>&1
		first=2
	else
		rm -rf "$d"; mkdir -p "$d/journey"
		cp --sparse=always "$IMG_DIR/root.img" "$IMG_DIR/esp.img" "$d/"
		cp "$OVMF_VARS" "$d/vars.fd"
		cp "$PASSTHRU" "$d/journey/passthru"
		cp "$E2E_DEB" "$d/journey/passthru.deb"
		cp "$E2E_HERE/journey.sh" "$d/journey/journey.sh"
		echo 1 >"$d/journey/stage"
		echo "$E2E_VARIANT" >"$d/journey/variant"
		mkfs.ext4 -q -L e2ejourney -d "$d/journey" "$d/journey.img" 1G || die "mkfs.ext4 of the journey disk failed"
		: >"$TRANSCRIPT"
	fi
	local b t0 times=() ok=1 boots=3
	[ "$E2E_VARIANT" = single ] && boots=1
	for b in $(seq "$first" "$boots"); do
		log "boot $b: OVMF -> $([ "$E2E_IMAGE" = systemd-boot ] && echo systemd-boot || echo GRUB) -> Debian 12 (TCG)"
		t0=$SECONDS
		boot_guest "$b" || log "boot $b: qemu exited $? (timeout or crash)"
		times+=("boot $b: $((SECONDS - t0)) s")
		{ echo "=== boot $b ($((SECONDS - t0)) s) ==="; tr -d '\r' <"$d/serial-boot$b.log" | sed 's/\x1b\[[0-9;=]*[A-Za-z]//g'; } >>"$TRANSCRIPT"
		tr -d '\r' <"$d/serial-boot$b.log"
		if ! grep -q "^E2E-BOOT$b PASS" "$d/serial-boot$b.log"; then
			log "boot $b did not pass; the console's last lines:"
			tail -40 "$d/console-boot$b.log" | tr -d '\r'
			ok=0
			break
		fi
		if [ "$b" = 1 ]; then
			rm -rf "$E2E_WORK/after-boot1"; mkdir -p "$E2E_WORK/after-boot1"
			for f in $disks transcript.txt; do cp --sparse=always "$d/$f" "$E2E_WORK/after-boot1/$f"; done
			touch "$E2E_WORK/after-boot1/ok"
		fi
	done
	TIMES="image: $IMAGE_TIME; ${times[*]}; total $((SECONDS - t_start)) s"
	log "times: $TIMES"
	write_doc "$ok"
	[ $ok = 1 ] || die "the journey failed (logs in $d)"
	log "PASS: the $E2E_VARIANT journey"
}

# Replaces the generated part of docs/e2e.md (between its markers) with this run's
# transcript and times.
write_doc() {
	[ -n "$E2E_DOC" ] && [ -f "$E2E_DOC" ] || return 0
	local verdict=PASS; [ "$1" = 1 ] || verdict=FAIL
	local gen=$E2E_WORK/run/doc-part.md
	{
		echo "<!-- e2e:begin $E2E_VARIANT (written by scripts/e2e/run.sh; do not edit by hand) -->"
		echo "Last run: $(date -u +%FT%TZ), $verdict, passthru $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)."
		echo
		echo "Times: $TIMES"
		echo
		echo '```text'
		cat "$TRANSCRIPT"
		echo '```'
		echo "<!-- e2e:end $E2E_VARIANT -->"
	} >"$gen"
	grep -q "<!-- e2e:begin $E2E_VARIANT " "$E2E_DOC" || return 0
	awk -v gen="$gen" -v v="$E2E_VARIANT" '
		index($0, "<!-- e2e:begin " v " ") == 1 { while ((getline l < gen) > 0) print l; skip = 1; next }
		$0 == "<!-- e2e:end " v " -->" { skip = 0; next }
		!skip { print }' "$E2E_DOC" >"$E2E_DOC.tmp" && mv "$E2E_DOC.tmp" "$E2E_DOC"
}
