#!/usr/bin/env bash
# Boots the tiny guest image under software emulation (TCG) and checks what it prints on its
# serial console (the protocol described in hack/guest/init), then that an ACPI power-button
# press powers it off.
#
# Usage: hack/guest/smoke-test.sh [--memory MIB] [--libvirt] [--dhcp-timeout]
#   default       QEMU directly, user-mode network (slirp, which leases 10.0.2.15):
#                 1. config drive with user-data, virtio NIC; then the power button
#                 2. config drive without user-data, QEMU's default NIC model (e1000)
#                 3. no config drive and no NIC; then a line typed on the keyboard
#   --dhcp-timeout  adds a NIC that no DHCP server answers (takes ~35 s more)
#   --libvirt     case 1 as a transient domain on qemu:///system, network `default`
#                 (libvirtd and the network must be running: hack/services.sh)
# Builds the image first when it does not exist. Exits non-zero on the first failed check.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/env.sh
. "$here/../lib/env.sh"

memory=128
mode=qemu
dhcp_timeout=0
while [ $# -gt 0 ]; do
	case "$1" in
		--memory)
			memory="$2"
			shift 2
			;;
		--libvirt)
			mode=libvirt
			shift
			;;
		--dhcp-timeout)
			dhcp_timeout=1
			shift
			;;
		*)
			echo "usage: $0 [--memory MIB] [--libvirt] [--dhcp-timeout]" >&2
			exit 2
			;;
	esac
done

image="$KUBENOVA_IMAGES_DIR/kubenova-tiny.qcow2"
python="$KUBENOVA_ROOT/.venv/bin/python"
virsh=(virsh -q -c qemu:///system)
[ -f "$image" ] || "$here/build.sh" >/dev/null

mkdir -p "$KUBENOVA_STATE/build"
work="$(mktemp -d "$KUBENOVA_STATE/build/guest-smoke.XXXXXX")"
# libvirt runs QEMU as an unprivileged user, which must reach the files in here.
chmod 0755 "$work"
qemu_pid=
domain=

cleanup() {
	if [ -n "$qemu_pid" ]; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	if [ -n "$domain" ]; then
		"${virsh[@]}" destroy "$domain" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

current_log=
fail() {
	if [ -n "$current_log" ] && [ -f "$current_log" ]; then
		echo "--- end of the console log:" >&2
		tr -d '\r' <"$current_log" | tail -n 40 >&2
	fi
	echo "FAIL: $*" >&2
	exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_for FILE EXTENDED-REGEX SECONDS: true once a line of FILE matches.
wait_for() {
	local file="$1" pattern="$2" deadline
	deadline=$(($(date +%s) + $3))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		# Not a pipeline: grep -q quits early, and pipefail would count tr's broken pipe.
		[ -f "$file" ] && grep -qE "$pattern" <(tr -d '\r' <"$file") && return 0
		sleep 0.2
	done
	return 1
}

# The protocol lines of a console log, from the first to the last that the guest prints.
protocol() {
	tr -d '\r' <"$1" |
		sed -nE '/^kubenova-guest: (instance-uuid=|no config drive)/,/^kubenova-guest: (ready|dhcp failed)$/p'
}

expect_protocol() {
	local log="$1" expected="$2"
	diff -u <(printf '%s\n' "$expected") <(protocol "$log") || fail "unexpected console protocol"
}

make_overlay() {
	qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$1"
}

# User-data that a shell would mangle, ending without a newline.
user_data=$'#cloud-config\nruncmd:\n  - echo "$HOME" `id` & <tag> \\n \'quoted\'\nlast line'
printf '%s' "$user_data" >"$work/user-data"
instance_uuid="$("$python" -c 'import uuid; print(uuid.uuid4())')"
"$python" "$here/make-configdrive.py" "$work/config.iso" --uuid "$instance_uuid" \
	--hostname smoke-guest --user-data "$work/user-data" >/dev/null
"$python" "$here/make-configdrive.py" "$work/config-no-ud.iso" --uuid "$instance_uuid" \
	--hostname smoke-guest >/dev/null

# start_qemu NAME QEMU-ARGS...: boots the image with its own overlay; the console goes to
# $work/NAME.log and the monitor listens on $work/NAME.monitor.
start_qemu() {
	local name="$1"
	shift
	make_overlay "$work/$name.qcow2"
	qemu-system-x86_64 -machine accel=tcg -m "$memory" -display none \
		-drive "file=$work/$name.qcow2,if=virtio" \
		-serial "file:$work/$name.log" \
		-monitor "unix:$work/$name.monitor,server=on,wait=off" \
		"$@" >"$work/$name.qemu.log" 2>&1 &
	qemu_pid=$!
	current_log="$work/$name.log"
}

stop_qemu() {
	kill "$qemu_pid" 2>/dev/null || true
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=
}

monitor_command() {
	"$python" - "$1" "$2" <<'EOF'
import socket, sys, time
with socket.socket(socket.AF_UNIX) as monitor:
    monitor.connect(sys.argv[1])
    monitor.sendall(sys.argv[2].encode() + b"\n")
    time.sleep(0.5)
EOF
}

# type_line MONITOR TEXT: types TEXT (a-z, 0-9, `-` and spaces) and Enter on the guest's PS/2
# keyboard, as a VNC or SPICE console does; the guest echoes the line on its serial console.
type_line() {
	"$python" - "$1" "$2" <<'EOF'
import socket, sys, time
names = {" ": "spc", "-": "minus"}
with socket.socket(socket.AF_UNIX) as monitor:
    monitor.connect(sys.argv[1])
    for char in sys.argv[2]:
        monitor.sendall(f"sendkey {names.get(char, char)}\n".encode())
        time.sleep(0.1)
    monitor.sendall(b"sendkey ret\n")
    time.sleep(0.5)
EOF
}

expected_full="kubenova-guest: instance-uuid=$instance_uuid
kubenova-guest: hostname=smoke-guest
kubenova-guest: user-data begin
$user_data
kubenova-guest: user-data end"

qemu_cases() {
	local started

	echo "== 1. config drive with user-data, virtio NIC, ${memory} MiB"
	started="$(now)"
	start_qemu full -nic user,model=virtio-net-pci \
		-drive "file=$work/config.iso,if=virtio,format=raw,readonly=on"
	wait_for "$work/full.log" '^kubenova-guest: (ready|dhcp failed)$' 120 ||
		fail "no ready line in 120 s (memory ${memory} MiB)"
	echo "   ready after $(elapsed "$started") s"
	expect_protocol "$work/full.log" "$expected_full
kubenova-guest: address=10.0.2.15
kubenova-guest: ready"
	# Give the console shell a moment, then press the power button.
	sleep 1
	started="$(now)"
	monitor_command "$work/full.monitor" system_powerdown
	local deadline=$(($(date +%s) + 60))
	while kill -0 "$qemu_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
	kill -0 "$qemu_pid" 2>/dev/null && fail "the guest did not power off within 60 s of the power button"
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=
	echo "   powered off $(elapsed "$started") s after the power button"

	echo "== 2. config drive without user-data, default NIC model"
	start_qemu no-user-data -nic user \
		-drive "file=$work/config-no-ud.iso,if=virtio,format=raw,readonly=on"
	wait_for "$work/no-user-data.log" '^kubenova-guest: (ready|dhcp failed)$' 120 ||
		fail "no ready line in 120 s"
	expect_protocol "$work/no-user-data.log" "kubenova-guest: instance-uuid=$instance_uuid
kubenova-guest: hostname=smoke-guest
kubenova-guest: user-data begin
kubenova-guest: user-data end
kubenova-guest: address=10.0.2.15
kubenova-guest: ready"
	stop_qemu
	echo "   ok"

	echo "== 3. no config drive, no NIC"
	start_qemu bare -nic none
	wait_for "$work/bare.log" '^kubenova-guest: dhcp failed$' 120 || fail "no dhcp failed line"
	# The console shell starts once the boot script is done; nothing may say ready.
	wait_for "$work/bare.log" '[#$] ' 30 || fail "no console shell after the boot script"
	expect_protocol "$work/bare.log" "kubenova-guest: no config drive
kubenova-guest: dhcp failed"
	grep -q '^kubenova-guest: ready$' <(tr -d '\r' <"$work/bare.log") && fail "ready without a lease"
	# The keyboard (i8042 and atkbd) reaches the first virtual terminal, which echoes each line.
	type_line "$work/bare.monitor" "smoke-kbd 42"
	wait_for "$work/bare.log" '^kubenova-guest: typed=smoke-kbd 42$' 30 ||
		fail "a line typed on the keyboard did not reach the serial console"
	stop_qemu
	echo "   ok"

	if [ "$dhcp_timeout" -eq 1 ]; then
		echo "== 4. a NIC that no DHCP server answers"
		started="$(now)"
		# A hub with a single port: frames go nowhere.
		start_qemu silent -netdev hubport,id=silent,hubid=0 -device virtio-net-pci,netdev=silent \
			-drive "file=$work/config.iso,if=virtio,format=raw,readonly=on"
		wait_for "$work/silent.log" '^kubenova-guest: dhcp failed$' 120 ||
			fail "no dhcp failed line in 120 s"
		echo "   dhcp failed after $(elapsed "$started") s"
		expect_protocol "$work/silent.log" "$expected_full
kubenova-guest: dhcp failed"
		stop_qemu
	fi
}

libvirt_case() {
	local started address lease
	domain="kubenova-smoke-$$"
	make_overlay "$work/domain.qcow2"
	# Our own fixed values only go into this XML; nothing user-supplied.
	cat >"$work/domain.xml" <<EOF
<domain type='qemu'>
  <name>$domain</name>
  <memory unit='MiB'>$memory</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$work/domain.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$work/config.iso'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$work/domain.log'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
EOF
	echo "== libvirt: config drive with user-data, network default, ${memory} MiB"
	started="$(now)"
	current_log="$work/domain.log"
	"${virsh[@]}" create "$work/domain.xml" >/dev/null
	wait_for "$work/domain.log" '^kubenova-guest: (ready|dhcp failed)$' 120 ||
		fail "no ready line in 120 s (memory ${memory} MiB)"
	echo "   ready after $(elapsed "$started") s"
	address="$(protocol "$work/domain.log" | sed -n 's/^kubenova-guest: address=//p')"
	case "$address" in
		192.168.122.*) ;;
		*) fail "address '$address' is not on the network default" ;;
	esac
	expect_protocol "$work/domain.log" "$expected_full
kubenova-guest: address=$address
kubenova-guest: ready"
	lease="$("${virsh[@]}" domifaddr "$domain" --source lease | awk '{ print $4 }')"
	[ "${lease%/*}" = "$address" ] || fail "libvirt's lease says '$lease', the guest '$address'"
	echo "   address $address, and libvirt's lease agrees"
	sleep 1
	started="$(now)"
	"${virsh[@]}" shutdown "$domain" >/dev/null
	local deadline=$(($(date +%s) + 60))
	while "${virsh[@]}" domstate "$domain" >/dev/null 2>&1 && [ "$(date +%s)" -lt "$deadline" ]; do
		sleep 0.2
	done
	"${virsh[@]}" domstate "$domain" >/dev/null 2>&1 &&
		fail "the domain did not shut down within 60 s of virsh shutdown"
	domain=
	echo "   shut down $(elapsed "$started") s after virsh shutdown"
}

if [ "$mode" = libvirt ]; then
	libvirt_case
else
	qemu_cases
fi
echo "PASS ($(du -h "$image" | cut -f 1) image, ${memory} MiB)"
