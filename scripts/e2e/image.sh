# Sourced by run.sh: builds (or finds in the cache) the Debian 12 system image the journey
# boots: a root disk (ext4, made with mkfs.ext4 -d, no loop devices) and an ESP (FAT32 with
# GRUB installed on it by the image's own grub-install during a first -kernel boot).
#
# The cache key is a hash of the package list, the sources apt uses and this file: any change
# to what goes into the image builds a new one. The golden pair is copied (sparse) per run,
# since the journey changes the disks.

# The image flavour (E2E_IMAGE, set by run.sh): grub (GRUB + initramfs-tools, Debian's
# default), dracut (GRUB + dracut), systemd-boot (systemd-boot fed by kernel-install from
# etc/kernel/cmdline, + initramfs-tools).
E2E_IMAGE=${E2E_IMAGE:-grub}
E2E_BASE_PACKAGES=(linux-image-amd64 systemd-sysv kmod pciutils udev iproute2
	dosfstools e2fsprogs dbus
	qemu-system-x86 seabios libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients)
case $E2E_IMAGE in
grub) E2E_PACKAGES=("${E2E_BASE_PACKAGES[@]}" initramfs-tools grub-efi-amd64) ;;
dracut) E2E_PACKAGES=("${E2E_BASE_PACKAGES[@]}" dracut grub-efi-amd64) ;;
systemd-boot) E2E_PACKAGES=("${E2E_BASE_PACKAGES[@]}" initramfs-tools systemd-boot) ;;
*) echo "unknown image flavour $E2E_IMAGE" >&2; exit 2 ;;
esac
# Debian 12 images have deb822 sources; older set-ups have only sources.list.
if [ -z "${E2E_SOURCES:-}" ]; then
	E2E_SOURCES=/etc/apt/sources.list.d/debian.sources
	[ -r "$E2E_SOURCES" ] || E2E_SOURCES=/etc/apt/sources.list
fi

image_key() {
	{ echo "$E2E_IMAGE"; printf '%s\n' "${E2E_PACKAGES[@]}"; cat "$E2E_SOURCES"; cat "$E2E_HERE/image.sh"; } | sha256sum | cut -c1-16
}

# Host-side edits of the unpacked tree ($1), before mkfs: fstab, GRUB defaults on the serial
# console, the gettys masked (serial-getty@ttyS0 hangs up whatever else writes to ttyS0),
# networkd with DHCP on the virtio NIC, and the boot unit that runs /e2e/journey.sh from the
# third disk (or, on the very first boot, installs GRUB on the ESP and powers off).
customize_rootfs() {
	local r=$1
	# bootctl wants the ESP on a GPT partition of type ESP; GRUB takes a bare FAT disk.
	local esp=/dev/vdb
	[ "$E2E_IMAGE" = systemd-boot ] && esp=/dev/vdb1
	# Under TCG on a loaded machine a disk can take longer than systemd's 90 s to show up
	# (a dracut boot went to emergency mode waiting for /dev/vdb): wait up to 10 minutes.
	printf '/dev/vda / ext4 errors=remount-ro 0 1\n%s /boot/efi vfat defaults,x-systemd.device-timeout=10min 0 2\n' "$esp" >"$r/etc/fstab"
	mkdir -p "$r/boot/efi" "$r/e2e"
	echo passthru-e2e >"$r/etc/hostname"
	if [ -e "$r/etc/default/grub" ]; then
		cat >>"$r/etc/default/grub" <<'G'
# passthru e2e lab: boot at once, kernel and GRUB on the serial console
GRUB_TIMEOUT=0
GRUB_CMDLINE_LINUX_DEFAULT="quiet console=ttyS0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
G
	fi
	if [ "$E2E_IMAGE" = systemd-boot ]; then
		# kernel-install writes every entry's options from this file (without it, from
		# /proc/cmdline, and passthru refuses: tests/kernel_install.rs).
		mkdir -p "$r/etc/kernel"
		echo "root=/dev/vda ro quiet console=ttyS0" >"$r/etc/kernel/cmdline"
	fi
	# Only the modules this machine needs in the initramfs: under TCG, update-initramfs with
	# Debian's default MODULES=most (a 36 MB image) took about 20 minutes per rebuild; dracut's
	# hostonly is the same choice (Debian's dracut is generic by default). Written after the
	# image's first initramfs was built generic, so the first boot finds its disks.
	if [ -d "$r/etc/initramfs-tools" ]; then
		mkdir -p "$r/etc/initramfs-tools/conf.d"
		echo MODULES=dep >"$r/etc/initramfs-tools/conf.d/e2e-modules.conf"
	fi
	if [ -d "$r/etc/dracut.conf.d" ] || [ -x "$r/usr/bin/dracut" ]; then
		mkdir -p "$r/etc/dracut.conf.d"
		echo 'hostonly="yes"' >"$r/etc/dracut.conf.d/e2e-hostonly.conf"
	fi
	ln -sf /dev/null "$r/etc/systemd/system/serial-getty@ttyS0.service"
	ln -sf /dev/null "$r/etc/systemd/system/getty@tty1.service"
	mkdir -p "$r/etc/systemd/network" "$r/etc/systemd/system/multi-user.target.wants" \
		"$r/etc/systemd/system/network-online.target.wants"
	printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' >"$r/etc/systemd/network/50-e2e.network"
	ln -sf /lib/systemd/system/systemd-networkd.service "$r/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
	ln -sf /lib/systemd/system/systemd-networkd-wait-online.service "$r/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service"
	cat >"$r/usr/local/sbin/e2e-boot" <<'B'
#!/bin/sh
# First boot: the boot loader onto the ESP (removable path, no NVRAM: OVMF finds it) and its
# configuration, then power off. GRUB: grub-install + update-grub. systemd-boot: bootctl
# install, then kernel-install add for the kernel (what Debian's hook does on a kernel
# install), which copies it and its initrd to the ESP and writes the entry.
# Later boots: the journey from the third disk, then power off whatever it says.
if [ ! -e /boot/efi/EFI/BOOT/BOOTX64.EFI ]; then
	if command -v grub-install >/dev/null; then
		grub-install --target=x86_64-efi --removable --no-nvram --efi-directory=/boot/efi >/dev/ttyS1 2>&1 &&
			update-grub >/dev/ttyS1 2>&1 && echo E2E-GRUB-INSTALLED >/dev/ttyS1
	else
		v=$(ls /usr/lib/modules | sort -V | tail -1)
		bootctl install --no-variables --esp-path=/boot/efi >/dev/ttyS1 2>&1 &&
			printf 'timeout 0\n' >/boot/efi/loader/loader.conf &&
			kernel-install add "$v" "/boot/vmlinuz-$v" "/boot/initrd.img-$v" >/dev/ttyS1 2>&1 &&
			ls -R /boot/efi >/dev/ttyS1 && cat /boot/efi/loader/entries/*.conf >/dev/ttyS1 &&
			echo E2E-GRUB-INSTALLED >/dev/ttyS1
	fi
	sync; systemctl poweroff; exit 0
fi
if mount /dev/vdc /e2e && [ -x /e2e/journey.sh ]; then
	/e2e/journey.sh >/dev/ttyS1 2>&1
	sync; umount /e2e
else
	echo "E2E-NO-JOURNEY-DISK" >/dev/ttyS1
fi
systemctl poweroff
B
	chmod 755 "$r/usr/local/sbin/e2e-boot"
	cat >"$r/etc/systemd/system/e2e-boot.service" <<'U'
[Unit]
Description=passthru e2e lab step
After=multi-user.target network-online.target libvirtd.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-boot
TimeoutStartSec=infinity
StandardOutput=journal+console

[Install]
WantedBy=default.target
U
	mkdir -p "$r/etc/systemd/system/default.target.wants"
	ln -sf /etc/systemd/system/e2e-boot.service "$r/etc/systemd/system/default.target.wants/e2e-boot.service"
}

# Sets IMG_DIR to a directory holding root.img and esp.img, building them when not cached.
ensure_image() {
	local key; key=$(image_key)
	IMG_DIR=$E2E_CACHE/image-$key
	if [ -s "$IMG_DIR/root.img" ] && [ -s "$IMG_DIR/esp.img" ] && [ -e "$IMG_DIR/ok" ]; then
		log "image: cached $IMG_DIR"
		IMAGE_TIME="cached"
		return
	fi
	local t0=$SECONDS tmp=$E2E_CACHE/build-$key
	rm -rf "$tmp"; mkdir -p "$tmp"
	log "image: mmdebstrap bookworm (${E2E_PACKAGES[*]})"
	local inc; inc=$(IFS=,; echo "${E2E_PACKAGES[*]}")
	mmdebstrap --quiet --variant=apt --include="$inc" bookworm "$tmp/rootfs" "$E2E_SOURCES" >"$tmp/mmdebstrap.log" 2>&1 ||
		{ tail -30 "$tmp/mmdebstrap.log"; die "mmdebstrap failed (log: $tmp/mmdebstrap.log)"; }
	local t1=$SECONDS
	customize_rootfs "$tmp/rootfs"
	mkfs.ext4 -q -L e2eroot -d "$tmp/rootfs" "$tmp/root.img" 6G || die "mkfs.ext4 -d failed"
	truncate -s 128M "$tmp/esp.img"
	if [ "$E2E_IMAGE" = systemd-boot ]; then
		# One ESP partition (sectors 2048 .. 2048+253952, 124 MiB) in a GPT; the FAT written
		# at its offset, no loop device.
		printf 'label: gpt\nstart=2048, size=253952, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP\n' |
			sfdisk -q "$tmp/esp.img" || die "sfdisk failed"
		mkfs.vfat -F 32 -n ESP --offset=2048 "$tmp/esp.img" 126976 >/dev/null || die "mkfs.vfat failed"
	else
		mkfs.vfat -F 32 -n ESP "$tmp/esp.img" >/dev/null || die "mkfs.vfat failed"
	fi
	local kernel initrd
	kernel=$(ls "$tmp"/rootfs/boot/vmlinuz-* | sort -V | tail -1)
	initrd=$(ls "$tmp"/rootfs/boot/initrd.img-* | sort -V | tail -1)
	cp "$kernel" "$initrd" "$tmp/"
	log "image: first boot (-kernel) installs GRUB on the ESP"
	truncate -s 0 "$tmp/grub-serial.log"
	timeout 600 "$QEMU" -nodefaults -display none -M q35 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
		-kernel "$tmp/$(basename "$kernel")" -initrd "$tmp/$(basename "$initrd")" \
		-append "console=ttyS0 root=/dev/vda rw" \
		-drive file="$tmp/root.img",if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0,bus=pcie.0,addr=05.0 \
		-drive file="$tmp/esp.img",if=none,id=d1,format=raw -device virtio-blk-pci,drive=d1,bus=pcie.0,addr=06.0 \
		-serial file:"$tmp/grub-console.log" -serial file:"$tmp/grub-serial.log" -no-reboot ||
		die "first boot failed (console: $tmp/grub-console.log)"
	grep -q E2E-GRUB-INSTALLED "$tmp/grub-serial.log" ||
		{ cat "$tmp/grub-serial.log"; die "GRUB was not installed (console: $tmp/grub-console.log)"; }
	rm -rf "$tmp/rootfs"
	mkdir -p "$IMG_DIR"
	mv "$tmp/root.img" "$tmp/esp.img" "$tmp"/*.log "$IMG_DIR/"
	rm -rf "$tmp"
	touch "$IMG_DIR/ok"
	IMAGE_TIME="cold: mmdebstrap $((t1 - t0)) s, mkfs + GRUB boot $((SECONDS - t1)) s, total $((SECONDS - t0)) s"
	log "image: built in $((SECONDS - t0)) s ($IMAGE_TIME)"
}
