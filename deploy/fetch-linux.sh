#!/usr/bin/env bash
# Fetches Debian's stock kernel as a test fixture (without installing it): the compressed
# bzImage and the uncompressed vmlinux ELF extracted from it, into $FIXTURES (default
# build/fixtures/linux). Cached: does nothing when both files are there. See ENVIRONMENT.md.
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURES=${FIXTURES:-build/fixtures/linux}

if [[ -s "$FIXTURES/vmlinux" && -s "$FIXTURES/bzImage" ]]; then
  echo "fetch-linux: using $FIXTURES ($(cat "$FIXTURES/version" 2>/dev/null))"
  exit 0
fi
for tool in apt-get apt-cache dpkg-deb xz tar; do
  command -v "$tool" >/dev/null || { echo "fetch-linux: $tool is missing: run deploy/install-deps.sh" >&2; exit 1; }
done

package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [[ -z "$package" ]]; then
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  package=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
fi
[[ -n "$package" ]] || { echo "fetch-linux: cannot resolve linux-image-amd64 in the apt lists" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$package" >/dev/null)
deb=$(ls "$work"/*.deb)
# Only the kernel image: the package's modules are 400 MB we do not need.
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
vmlinuz=$(ls "$work"/boot/vmlinuz-*)

# vmlinux is the xz payload of the bzImage, from its magic (FD 37 7A 58 5A 00) on; xz stops at
# the end of the stream and complains about the trailing bytes, which are not ours.
offset=$(LC_ALL=C grep -m1 -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1)
[[ -n "$offset" ]] || { echo "fetch-linux: no xz payload in $vmlinuz" >&2; exit 1; }
mkdir -p "$FIXTURES"
tail -c +$((offset + 1)) "$vmlinuz" | xz -dc --single-stream > "$FIXTURES/vmlinux.tmp" 2>/dev/null || true
head -c 4 "$FIXTURES/vmlinux.tmp" | grep -q ELF || { echo "fetch-linux: extracting vmlinux failed" >&2; exit 1; }
mv "$FIXTURES/vmlinux.tmp" "$FIXTURES/vmlinux"
cp "$vmlinuz" "$FIXTURES/bzImage"
echo "$package $(basename "$vmlinuz")" > "$FIXTURES/version"
echo "fetch-linux: $package into $FIXTURES"
