#!/usr/bin/env bash
# Build the fleet's host image: a minimal Debian 12 root filesystem made with debootstrap from
# an apt mirror, imported into Docker as an image that boots systemd and sshd like a real server.
#
# Usage: build.sh TAG MIRROR SOURCES_FILE
#   TAG           image name:tag to create
#   MIRROR        Debian mirror URL for debootstrap (read from the machine's apt sources by the caller)
#   SOURCES_FILE  apt sources (deb822) written into the image so the roles' apt tasks use the same mirrors
set -euo pipefail

tag=$1 mirror=$2 sources=$3
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
work=$(mktemp -d /var/tmp/fleet-image.XXXXXX)
rootfs=$work/rootfs
trap 'umount -l "$rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT

list() { grep -vE '^\s*(#|$)' "$1" | tr '\n' ',' | sed 's/,$//'; }

debootstrap --variant=minbase --include="$(list "$here/packages.txt")" "$suite" "$rootfs" "$mirror"

# apt inside the image uses the same mirrors as the machine that built it.
rm -f "$rootfs/etc/apt/sources.list"
install -m 0644 "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"

# Pre-download the heavy packages into the apt cache (see preload.txt).
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" apt-get update -q
# shellcheck disable=SC2046
chroot "$rootfs" apt-get install -q -y --download-only $(list "$here/preload.txt" | tr ',' ' ')
umount "$rootfs/proc"
: > "$rootfs/etc/resolv.conf"

# Every container must get its own identity: an empty machine-id is filled at first boot, and
# sshd's host keys are generated at first start instead of being shared by all hosts.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cat > "$rootfs/etc/systemd/system/ssh.service.d/hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
chroot "$rootfs" systemctl enable ssh.service
# Units that make no sense inside a container and only slow the boot or fail.
for unit in systemd-resolved.service getty.target console-getty.service systemd-timesyncd.service; do
  chroot "$rootfs" systemctl mask "$unit" >/dev/null 2>&1 || true
done
mkdir -p "$rootfs/root/.ssh" && chmod 0700 "$rootfs/root/.ssh"

tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=docker' \
  --change "LABEL org.django-cluster.recipe=$tag" \
  - "$tag"
