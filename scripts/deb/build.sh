#!/usr/bin/env bash
# Builds passthru's .deb with dpkg-deb: `bash scripts/deb/build.sh [OUTDIR]` (default
# target/deb). Needs cargo, dpkg-dev (dpkg-shlibdeps) and gzip; runs as any user (file
# owners in the package are root, --root-owner-group). Prints the path of the .deb.
#
# What goes in:
#   /usr/bin/passthru                                   release build
#   /usr/share/man/man1/passthru*.1.gz                  one page per command (clap_mangen)
#   /usr/share/bash-completion/completions/passthru     bash (clap_complete)
#   /usr/share/zsh/vendor-completions/_passthru         zsh
#   /usr/share/fish/vendor_completions.d/passthru.fish  fish
#   /usr/lib/systemd/system/passthru-verify.service     verify at boot
#   /etc/kernel/postinst.d/zz-passthru-verify           verify --next-boot after a kernel
#   /etc/initramfs/post-update.d/zz-passthru-verify     ... and after an initramfs update
#   /etc/default/passthru                               options (a conffile)
#   /usr/share/doc/passthru/{copyright,README.md,schema.json,changelog.gz}
# Depends: what dpkg-shlibdeps finds the binary linked against, and pci.ids (the names).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
out=${1:-$repo/target/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in cargo dpkg-deb dpkg-shlibdeps dpkg-architecture gzip; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (apt-get install dpkg-dev gzip; cargo from rustup)" >&2; exit 2; }
done

version=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
  | sed -n 's/.*"name":"passthru","version":"\([^"]*\)".*/\1/p' | head -1)
[ -n "$version" ] || version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
triple=$(rustc -vV | sed -n 's/^host: //p')

echo "build.sh: cargo build --release (passthru $version, $arch)" >&2
cargo build --release --locked --bin passthru >&2
cargo build --release --locked -p passthru-deb --bin deb-copyright >&2
bin=$repo/target/release/passthru

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/man/man1" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d" "$pkg/usr/lib/systemd/system" \
  "$pkg/etc/kernel/postinst.d" "$pkg/etc/initramfs/post-update.d" "$pkg/etc/default" \
  "$pkg/usr/share/doc/passthru"
install -m 0755 -s "$bin" "$pkg/usr/bin/passthru" 2>/dev/null || install -m 0755 "$bin" "$pkg/usr/bin/passthru"

# Man pages and completions, from the binary's own clap definition.
"$bin" generate-assets "$stage/assets" >/dev/null
for page in "$stage"/assets/man/*.1; do
  gzip -9n -c "$page" > "$pkg/usr/share/man/man1/$(basename "$page").gz"
done
install -m 0644 "$stage/assets/completions/passthru.bash" "$pkg/usr/share/bash-completion/completions/passthru"
install -m 0644 "$stage/assets/completions/_passthru" "$pkg/usr/share/zsh/vendor-completions/_passthru"
install -m 0644 "$stage/assets/completions/passthru.fish" "$pkg/usr/share/fish/vendor_completions.d/passthru.fish"

install -m 0644 packaging/systemd/passthru-verify.service "$pkg/usr/lib/systemd/system/"
install -m 0755 packaging/hooks/zz-passthru-verify "$pkg/etc/kernel/postinst.d/zz-passthru-verify"
install -m 0755 packaging/hooks/zz-passthru-verify "$pkg/etc/initramfs/post-update.d/zz-passthru-verify"
install -m 0644 packaging/debian/default "$pkg/etc/default/passthru"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$pkg/DEBIAN/"
printf '%s\n' /etc/default/passthru /etc/kernel/postinst.d/zz-passthru-verify \
  /etc/initramfs/post-update.d/zz-passthru-verify > "$pkg/DEBIAN/conffiles"

# The copyright file: every crate compiled into the binary, with its licence.
cargo metadata --format-version 1 --locked --filter-platform "$triple" \
  | "$repo/target/release/deb-copyright" passthru packaging/licenses > "$pkg/usr/share/doc/passthru/copyright"
install -m 0644 README.md "$pkg/usr/share/doc/passthru/README.md"
install -m 0644 "$stage/assets/schema.json" "$pkg/usr/share/doc/passthru/schema.json"
printf 'passthru (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- passthru <passthru@localhost>  %s\n' \
  "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" \
  "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
  | gzip -9n > "$pkg/usr/share/doc/passthru/changelog.gz"

# Depends: the shared libraries the binary is linked against (dpkg-shlibdeps reads its
# NEEDED entries), and pci.ids, which passthru reads for device names.
mkdir -p "$stage/src/debian"
printf 'Source: passthru\n\nPackage: passthru\nArchitecture: any\n' > "$stage/src/debian/control"
shlibs=$(cd "$stage/src" && dpkg-shlibdeps -O "$pkg/usr/bin/passthru" | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build.sh: dpkg-shlibdeps found no libraries for the binary" >&2; exit 2; }
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: passthru
Version: $version
Architecture: $arch
Maintainer: passthru <passthru@localhost>
Installed-Size: $size
Depends: $shlibs, pci.ids
Recommends: pciutils
Suggests: initramfs-tools-core | dracut-core, dkms
Section: admin
Priority: optional
Homepage: https://github.com/passthru/passthru
Description: GPU passthrough for home servers (Proxmox VE, libvirt), safely
 passthru reads a host's PCI devices, IOMMU groups, drivers and boot setup,
 says whether each GPU can go to a VM or a container and what stands in the
 way, and writes the VFIO configuration as one journaled, reversible
 transaction (setup, rollback). passthru verify, run at boot and after every
 kernel update, reports when the host drifted from what was prepared.
CONTROL
deb=$out/passthru_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
