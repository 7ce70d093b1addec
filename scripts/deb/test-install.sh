#!/usr/bin/env bash
# Installs passthru's .deb with dpkg -i in a clean Debian 12 (a fresh mmdebstrap minbase
# chroot with man-db, bash-completion and pci.ids added), and checks what an owner sees:
# `passthru --version`, `man -w passthru`, the bash completion, the verify unit and hooks;
# then `dpkg -r` (the journal and /etc/default/passthru must survive) and `dpkg -P` (its
# output says what it leaves). As root: `bash scripts/deb/test-install.sh [DEB]` (default:
# build it with scripts/deb/build.sh). The mirror is the host's own (MIRROR= to change).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "test-install.sh: run as root (it makes a chroot)" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "test-install.sh: apt-get install mmdebstrap" >&2; exit 2; }

deb=${1:-}
if [ -z "$deb" ]; then
  deb=$(bash scripts/deb/build.sh)
fi
deb=$(readlink -f "$deb")
mirror=${MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}

dir=$(mktemp -d /tmp/passthru-deb-test.XXXXXX)
trap 'rm -rf "$dir"' EXIT

echo "test-install: mmdebstrap --variant=minbase bookworm ($mirror)"
mmdebstrap --quiet --variant=minbase --include=man-db,bash-completion,pci.ids bookworm "$dir" "$mirror"
cp "$deb" "$dir/tmp/passthru.deb"
inroot() { chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
fail() { echo "test-install: FAIL: $*" >&2; exit 1; }

echo "test-install: dpkg -i"
inroot dpkg -i /tmp/passthru.deb
inroot passthru --version | grep -q '^passthru ' || fail "passthru --version"
inroot passthru --version
page=$(inroot man -w passthru) || fail "man -w passthru"
echo "man page: $page"
inroot man -w passthru-verify >/dev/null || fail "man -w passthru-verify"
inroot test -f /usr/lib/systemd/system/passthru-verify.service || fail "no verify unit"
inroot test -x /etc/kernel/postinst.d/zz-passthru-verify || fail "no kernel hook"
# The completion, as an interactive bash loads it (bash-completion loads it on first use).
comp=$(inroot bash -c '. /usr/share/bash-completion/bash_completion; _completion_loader passthru; complete -p passthru') \
  || fail "no bash completion"
echo "bash: $comp"
words=$(inroot bash -c '. /usr/share/bash-completion/bash_completion; _completion_loader passthru
  COMP_WORDS=(passthru ver); COMP_CWORD=1; COMP_LINE="passthru ver"; COMP_POINT=${#COMP_LINE}
  _passthru passthru ver passthru; printf "%s\n" "${COMPREPLY[@]}"')
echo "$words" | grep -qx verify || fail "completing 'passthru ver' gave: $words"
# The hook runs on a host with nothing prepared and never fails the upgrade.
inroot /etc/kernel/postinst.d/zz-passthru-verify "$(uname -r)" || fail "kernel hook failed"
# The journal, as passthru leaves it, and the user's options.
inroot mkdir -p /var/lib/passthru/journal/20260101-000000-1
echo '{}' > "$dir/var/lib/passthru/journal/20260101-000000-1/manifest.json"
echo 'PASSTHRU_VERIFY_ARGS="--json"' >> "$dir/etc/default/passthru"

echo "test-install: dpkg -r"
inroot dpkg -r passthru
inroot test ! -e /usr/bin/passthru || fail "/usr/bin/passthru left after dpkg -r"
inroot test -f /var/lib/passthru/journal/20260101-000000-1/manifest.json || fail "dpkg -r removed the journal"
inroot grep -q -- '--json' /etc/default/passthru || fail "dpkg -r removed /etc/default/passthru"

echo "test-install: dpkg -P"
purge=$(inroot dpkg -P passthru 2>&1)
echo "$purge"
echo "$purge" | grep -q '/var/lib/passthru' || fail "dpkg -P does not say it leaves /var/lib/passthru"
inroot test -d /var/lib/passthru/journal || fail "dpkg -P removed the journal"
inroot test ! -e /etc/default/passthru || fail "dpkg -P left /etc/default/passthru"
echo "test-install: ok"
