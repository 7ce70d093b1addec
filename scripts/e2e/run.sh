#!/usr/bin/env bash
# The end-to-end journey on a real Debian 12 system booted under QEMU (TCG, q35, emulated
# Intel IOMMU, OVMF -> GRUB), with the real passthru binary run inside it. See docs/e2e.md.
#
#   bash scripts/e2e/run.sh grub          the GRUB + initramfs-tools journey (boot 1: setup,
#                                         boot 2: vfio + libvirt + rollback, boot 3: restored);
#                                         its host has two identical 1234:1111 displays
#   bash scripts/e2e/run.sh dracut        the same journey with dracut instead of initramfs-tools
#   bash scripts/e2e/run.sh systemd-boot  the same journey with systemd-boot + kernel-install
#   bash scripts/e2e/run.sh single        a single-GPU host whose card shares its group with
#                                         the NIC: setup and bind refuse, nothing changes
#   bash scripts/e2e/run.sh image [FLAVOUR]  only build (or find) a cached image
#
# Runs as root (installs its prerequisites with apt, as CI does). Exits non-zero on any failed
# step. Environment:
#   E2E_CACHE  image cache (default /var/cache/passthru-e2e), keyed by a hash of the package list
#   E2E_WORK   per-run disks and logs (default target/e2e)
#   PASSTHRU   the binary put on the journey disk (default target/release/passthru, built if absent)
#   E2E_DEB    the .deb the journey installs in the guest (default: built by scripts/deb/build.sh)
#   E2E_DOC    where the transcript and times go (default docs/e2e.md; E2E_DOC= to skip)
#   E2E_BOOT_TIMEOUT  seconds per boot (default 2700: setup and rollback each rebuild the initramfs, ~20 min under TCG)
#   E2E_RESUME=2      start at boot 2 from the disks boot 1 left (target/e2e/after-boot1), for debugging
set -euo pipefail

E2E_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_HERE/../.." && pwd)
E2E_CACHE=${E2E_CACHE:-/var/cache/passthru-e2e}
E2E_WORK=${E2E_WORK:-$REPO/target/e2e}
PASSTHRU=${PASSTHRU:-$REPO/target/release/passthru}
E2E_DOC=${E2E_DOC-$REPO/docs/e2e.md}
QEMU=${QEMU:-qemu-system-x86_64}
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

log() { printf '[e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

install_prereqs() {
	# dpkg-dev: scripts/deb/build.sh makes the .deb the journey installs in the guest
	local need=(mmdebstrap qemu-system-x86 ovmf dosfstools e2fsprogs dpkg-dev) missing=()
	# sfdisk: the systemd-boot image's ESP is a GPT partition (bootctl refuses a bare disk)
	[ "${E2E_IMAGE:-grub}" = systemd-boot ] && need+=(fdisk)
	for p in "${need[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || die "missing ${missing[*]} and not root to install them"
		log "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	[ -r "$OVMF_CODE" ] && [ -r "$OVMF_VARS" ] || die "OVMF firmware not at $OVMF_CODE"
}

case ${1:-} in
image) E2E_IMAGE=${2:-grub} ;;
grub | single) E2E_VARIANT=$1 E2E_IMAGE=grub ;;
dracut | systemd-boot) E2E_VARIANT=$1 E2E_IMAGE=$1 ;;
*) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
# A variant's disks and logs apart from the others' (the journey rewrites them).
[ "${1:-}" = image ] || E2E_WORK=$E2E_WORK/$E2E_VARIANT

# shellcheck source=image.sh
. "$E2E_HERE/image.sh"
# shellcheck source=journey-host.sh
. "$E2E_HERE/journey-host.sh"

install_prereqs
mkdir -p "$E2E_CACHE"
if [ "$1" = image ]; then
	ensure_image
	log "image: $IMG_DIR"
else
	run_journey
fi
