#!/usr/bin/env bash
# Builds the tiny test guest image from Debian's packages only:
#   $KUBENOVA_IMAGES_DIR/kubenova-tiny.qcow2         a partition-less FAT disk booted by syslinux
#                                                   (Debian's kernel + a busybox initramfs)
#   $KUBENOVA_IMAGES_DIR/kubenova-tiny.qcow2.sha256  its sha256, the hex digest alone
# What the guest prints on its serial console is described in hack/guest/init.
#
# Usage: hack/guest/build.sh [--force]
# The build is skipped while the image exists and was made from the same inputs (this
# directory's files and the kernel, busybox and syslinux package versions). It is reproducible:
# file times come from SOURCE_DATE_EPOCH (a fixed default).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/env.sh
. "$here/../lib/env.sh"

force=0
case "${1:-}" in
	--force) force=1 ;;
	"") ;;
	*)
		echo "usage: $0 [--force]" >&2
		exit 2
		;;
esac

image_name=kubenova-tiny.qcow2
image="$KUBENOVA_IMAGES_DIR/$image_name"
build_dir="$KUBENOVA_STATE/build/guest"
stamp="$build_dir/inputs.sha256"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}" # 2024-01-01T00:00:00Z

packages=(linux-image-amd64 busybox-static cpio syslinux syslinux-common mtools dosfstools qemu-utils)
# What the guest needs from the kernel, by module name; dependencies are added from modules.dep.
# virtio_pci finds the devices, virtio_blk the disks (vda boot, vdb config drive), isofs reads
# the config drive, virtio_net is the NIC, button and evdev carry the ACPI power button to acpid.
# e1000 (QEMU's default NIC model) and 8139cp (libvirt's rtl8139) keep the network working
# when a domain does not ask for a virtio NIC.
modules=(virtio_pci virtio_blk virtio_net e1000 8139cp isofs button evdev)

log() { echo "guest-build: $*" >&2; }

ensure_packages() {
	local missing=() package
	for package in "${packages[@]}"; do
		if [ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" != installed ]; then
			missing+=("$package")
		fi
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local apt=(apt-get -y -o DPkg::Lock::Timeout=900)
	# A fresh machine may have no package lists yet; update only when the install needs it.
	"${apt[@]}" install "${missing[@]}" || { "${apt[@]}" update && "${apt[@]}" install "${missing[@]}"; }
}

# The release of the kernel that linux-image-amd64 currently points at, e.g. 6.1.0-56-amd64.
kernel_release() {
	dpkg-query -W -f='${Depends}' linux-image-amd64 |
		grep -o 'linux-image-[0-9][^ ,]*' | head -n 1 | sed 's/^linux-image-//'
}

inputs_digest() {
	local release="$1"
	{
		(cd "$here" && find build.sh init syslinux.cfg rootfs -type f | LC_ALL=C sort |
			xargs sha256sum)
		dpkg-query -W "linux-image-$release" busybox-static syslinux syslinux-common
		echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
	} | sha256sum | cut -d ' ' -f 1
}

# Prints the module files (paths relative to /lib/modules/<release>) in load order.
resolve_modules() {
	local release="$1" name line path dependency
	local dep_file="/lib/modules/$release/modules.dep"
	declare -A seen=()
	for name in "${modules[@]}"; do
		line="$(grep -E "(^|/)${name}\.ko(\.xz|\.zst|\.gz)?:" "$dep_file" | head -n 1)"
		if [ -z "$line" ]; then
			log "module $name not found in $dep_file"
			return 1
		fi
		path="${line%%:*}"
		# modules.dep lists a module's dependencies deepest last: load them in reverse.
		for dependency in $(echo "${line#*:}" | tr ' ' '\n' | tac) "$path"; do
			[ -n "$dependency" ] || continue
			[ -z "${seen[$dependency]:-}" ] || continue
			seen[$dependency]=1
			echo "$dependency"
		done
	done
}

install_module() {
	local source="$1" target_dir="$2" base
	base="$(basename "$source")"
	case "$source" in
		*.ko.xz) xz -dc "$source" >"$target_dir/${base%.xz}" ;;
		*.ko.zst) zstd -qdc "$source" >"$target_dir/${base%.zst}" ;;
		*.ko.gz) gzip -dc "$source" >"$target_dir/${base%.gz}" ;;
		*) cp "$source" "$target_dir/$base" ;;
	esac
}

build_initramfs() {
	local release="$1" root="$2" output="$3" applet module
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,lib/modules,proc,sys,dev,run,tmp,mnt,root}
	cp /bin/busybox "$root/bin/busybox"
	for applet in $("$root/bin/busybox" --list-full); do
		[ -e "$root/$applet" ] || [ "$applet" = linuxrc ] || ln -s /bin/busybox "$root/$applet"
	done
	# The kernel runs /init; busybox init reads /etc/inittab, whose sysinit is our script.
	ln -sf bin/busybox "$root/init"
	cp -a "$here/rootfs/." "$root/"
	install -m 0755 "$here/init" "$root/sbin/kubenova-guest-init"
	# The kernel opens /dev/console for init before anything can mount devtmpfs.
	mknod -m 0600 "$root/dev/console" c 5 1

	: >"$root/lib/modules/load-order"
	for module in $(resolve_modules "$release"); do
		install_module "/lib/modules/$release/$module" "$root/lib/modules"
		basename "$module" | sed -E 's/\.(xz|zst|gz)$//' >>"$root/lib/modules/load-order"
	done

	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9n >"$output"
}

build_disk() {
	local release="$1" initramfs="$2" output="$3" disk="$build_dir/disk.img" boot="$build_dir/boot"
	rm -rf "$boot" "$disk"
	mkdir -p "$boot"
	cp "/boot/vmlinuz-$release" "$boot/vmlinuz"
	cp "$initramfs" "$boot/initrd.gz"
	cp "$here/syslinux.cfg" "$boot/syslinux.cfg"
	touch -d "@$SOURCE_DATE_EPOCH" "$boot"/*
	# No partition table: syslinux boots the FAT filesystem's own boot sector, and nothing
	# has to be mounted to build it.
	truncate -s 64M "$disk"
	mkfs.vfat -n KUBENOVA -i 4b4e4f56 --invariant "$disk" >/dev/null
	export MTOOLS_SKIP_CHECK=1
	mcopy -m -i "$disk" "$boot/vmlinuz" "$boot/initrd.gz" "$boot/syslinux.cfg" ::/
	syslinux --install "$disk"
	qemu-img convert -f raw -O qcow2 "$disk" "$output"
	rm -f "$disk"
}

main() {
	ensure_packages
	mkdir -p "$build_dir" "$KUBENOVA_IMAGES_DIR"
	# Two builds at once (a developer and a test run) must not interleave.
	exec 9>"$KUBENOVA_STATE/run/guest-build.lock"
	flock 9

	local release digest
	release="$(kernel_release)"
	if [ -z "$release" ] || [ ! -f "/boot/vmlinuz-$release" ]; then
		log "no kernel for linux-image-amd64 under /boot"
		exit 1
	fi
	digest="$(inputs_digest "$release")"
	if [ "$force" -eq 0 ] && [ -f "$image" ] && [ -f "$image.sha256" ] &&
		[ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
		log "up to date: $image"
		echo "$image"
		return 0
	fi

	log "building from kernel $release"
	rm -rf "$build_dir/root"
	build_initramfs "$release" "$build_dir/root" "$build_dir/initrd.gz"
	build_disk "$release" "$build_dir/initrd.gz" "$build_dir/$image_name"
	sha256sum "$build_dir/$image_name" | cut -d ' ' -f 1 >"$build_dir/$image_name.sha256"
	# Replace the served files only when both are complete.
	mv -f "$build_dir/$image_name" "$image"
	mv -f "$build_dir/$image_name.sha256" "$image.sha256"
	echo "$digest" >"$stamp"
	rm -rf "${build_dir:?}/root" "${build_dir:?}/boot"
	log "built $image ($(du -h "$image" | cut -f 1), sha256 $(cat "$image.sha256"))"
	echo "$image"
}

main
