#!/usr/bin/env bash
# The Debian package installed into a fresh Debian root made by debootstrap, and used there as
# an administrator and a developer would: the units verified and scored, the bastion helper
# (root) and the server (as basphere) started, an account registered and approved (its bastion
# login made through the helper), a VM created and listed under the original's command names;
# then an upgrade from the previous version, which keeps the data and the edited configuration.
#
# Usage: packaging/install-test.sh [XTASK]   (run as root; XTASK defaults to target/debug/xtask,
# built by `cargo build --workspace --all-targets`). Needs debootstrap and network access to
# Debian's mirror. Bounded: every wait has a deadline, and the whole run is meant for `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

xtask="${1:-target/debug/xtask}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d /tmp/basphere-install-test.XXXXXX)"
root="$work/root"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

step() { echo "== $*"; }
fail() {
    echo "install test FAILED: $*" >&2
    for log in "$work"/server.log "$work"/helper.log; do
        [ -f "$log" ] && { echo "--- $log" >&2; tail -15 "$log" >&2; }
    done
    exit 1
}
in_root() { chroot "$root" "$@"; }
as_user() { local user="$1"; shift; chroot --userspec="$user:basphere-users" "$root" env HOME="/home/$user" "$@"; }
wait_for() { # what, test command...
    local what="$1"; shift
    for _ in $(seq 1 100); do "$@" && return 0; sleep 0.2; done
    fail "waited 20 s for $what"
}

step "packages: the previous version and this one"
"$xtask" dist --debug --version 0.1.0~previous --out "$work" >/dev/null
"$xtask" dist --debug --version 0.1.0 --out "$work" >/dev/null
ls -la "$work"/*.deb

step "a Debian root (debootstrap, minbase with systemd to verify the units against)"
debootstrap --variant=minbase --include=systemd,procps,ca-certificates bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
# /proc as a real root has it; the test passes without it where mounting is not allowed.
mount -t proc proc "$root/proc" 2>/dev/null || echo "note: /proc is not mounted in the root here"

step "install the previous version"
cp "$work"/basphere_0.1.0~previous_*.deb "$work"/basphere_0.1.0_*.deb "$root/tmp/"
in_root dpkg -i /tmp/basphere_0.1.0~previous_amd64.deb
in_root getent passwd basphere | grep -q ':/var/lib/basphere-server:/usr/sbin/nologin' || fail "the basphere user"
in_root getent group basphere-users >/dev/null || fail "the basphere-users group"
[ "$(in_root stat -c "%U %a" /var/lib/basphere-server)" = "basphere 700" ] || fail "the data directory: $(in_root stat -c "%U %a" /var/lib/basphere-server)"
for name in create-vm list-vms delete-vm show-quota list-resources create-cluster list-clusters \
            delete-cluster get-kubeconfig watch-cluster basphere-admin; do
    [ "$(readlink "$root/usr/bin/$name")" = basphere ] || fail "/usr/bin/$name is not a link to basphere"
done
[ -s "$root/usr/share/man/man1/basphere.1.gz" ] && [ -s "$root/usr/share/man/man1/basphere-server.1.gz" ] \
    || fail "man pages"
grep -q '^\.TH basphere' <(zcat "$root/usr/share/man/man1/basphere.1.gz") || fail "basphere.1 is not a man page"
grep -q 'complete' "$root/usr/share/bash-completion/completions/basphere" || fail "bash completion"

step "the units: systemd-analyze verify and security"
for unit in basphere-server basphere-bastion-helper; do
    systemd-analyze verify --man=no --root="$root" "/lib/systemd/system/$unit.service" \
        || fail "systemd-analyze verify $unit"
    systemd-analyze security --offline=yes --root="$root" --threshold=20 --no-pager \
        "/lib/systemd/system/$unit.service" | tail -1
done

step "configure (port 0: any free port; the edit must survive the upgrade)"
sed -i 's/^  port: 8080$/  port: 0/' "$root/etc/basphere/basphere.yaml"
grep -q '^  port: 0$' "$root/etc/basphere/basphere.yaml" || fail "editing the configuration"

start_services() {
    # What systemd does for the units: their runtime directories, then the two processes (the
    # helper first; check-config, as the server's account, asks it too).
    in_root install -d -o root -g root -m 0755 /run/basphere-helper
    in_root install -d -o basphere -g basphere-users -m 0750 /run/basphere
    # chroot itself in the background (not through in_root, whose subshell would be the pid
    # recorded, leaving the helper running after the test).
    chroot "$root" /usr/bin/basphere-server --config /etc/basphere/basphere.yaml \
        bastion-helper --allow-user basphere > "$work/helper.log" 2>&1 &
    pids+=($!)
    wait_for "the helper's socket" test -S "$root/run/basphere-helper/helper.sock"
    chroot --userspec=basphere:basphere-users "$root" /usr/bin/basphere-server \
        --config /etc/basphere/basphere.yaml check-config | tee "$work/check-config.txt" \
        || fail "check-config on the packaged configuration"
    grep -q 'ok   bastion logins: made by the bastion helper' "$work/check-config.txt" \
        || fail "check-config did not reach the helper"
    chroot --userspec=basphere:basphere-users "$root" /usr/bin/basphere-server \
        --config /etc/basphere/basphere.yaml > "$work/server.log" 2>&1 &
    server=$!
    pids+=($server)
    wait_for "the server's socket" test -S "$root/run/basphere/basphere.sock"
}
stop_server() {
    kill -TERM "$server"
    for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || return 0; sleep 0.2; done
    fail "the server did not stop on SIGTERM"
}
start_services

step "a developer registers, the administrator approves with basphere-admin"
key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAn5Akzo2ChlCksno2C+K6aOyOZu39MCn3XgnEvMbUxD alice@laptop'
in_root basphere register alice --email alice@example.com --key "$key"
in_root basphere-admin user approve alice
wait_for "alice's bastion login" in_root getent passwd alice
in_root getent passwd alice | grep -q 'Basphere account alice' || fail "alice's login was not made by Basphere"
grep -qF "$key" "$root/home/alice/.ssh/authorized_keys" || fail "alice's key on the bastion"

step "alice, on the bastion, under the original's command names"
as_user alice create-vm -n web -o ubuntu-24.04 -s small -y
as_user alice list-vms | tee "$work/list-vms.txt"
grep -q 'web' "$work/list-vms.txt" || fail "list-vms does not show web"
as_user alice show-quota
as_user alice list-resources > /dev/null
as_user alice basphere -o json vm list > "$work/vms.json"
grep -q '"state": *"running"' "$work/vms.json" || { cat "$work/vms.json"; fail "web is not running"; }

step "the tenant routers' helper, for a router host: shipped, and refusing a request it cannot read"
answer=$(echo 'not json' | in_root /usr/lib/basphere/basphere-router-helper --config /tmp/no-router.yaml || true)
grep -q '"error"' <<<"$answer" || fail "the router helper did not answer with an error: $answer"

step "the vSphere API backend: its own program, found by the server where the package puts it"
in_root /usr/lib/basphere/basphere-vsphere-api --version | grep -q '^basphere-vsphere-api ' \
    || fail "the vSphere API agent does not run"
printf 'backend:\n  vm: vsphere-api\nvsphere:\n  server: 127.0.0.1:9\n  credentials_file: /tmp/vsphere.env\nrecaptcha:\n  enabled: false\n' \
    > "$root/tmp/vsphere-api.yaml"
printf 'VSPHERE_USER=basphere\nVSPHERE_PASSWORD=secret\n' > "$root/tmp/vsphere.env"
in_root chown basphere "/tmp/vsphere.env" && chmod 600 "$root/tmp/vsphere.env"
# No vCenter answers there: the check fails, and the failure comes from the agent's attempt.
if chroot --userspec=basphere:basphere-users "$root" /usr/bin/basphere-server \
    --config /tmp/vsphere-api.yaml check-config > "$work/check-vsphere.txt" 2>&1; then
    fail "check-config passed without a vCenter"
fi
grep 'vm backend' "$work/check-vsphere.txt"
grep -q 'FAIL vm backend: .*127.0.0.1:9' "$work/check-vsphere.txt" || fail "the vSphere API agent did not try vCenter"
if grep -qE 'looked for at|cannot start the vSphere API agent' "$work/check-vsphere.txt"; then
    fail "the server did not find or start its vSphere API agent"
fi

step "upgrade to this version"
stop_server
in_root env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /tmp/basphere_0.1.0_amd64.deb
[ "$(in_root dpkg-query -W -f '${Version}' basphere)" = "0.1.0" ] || fail "the upgrade"
grep -q '^  port: 0$' "$root/etc/basphere/basphere.yaml" || fail "the upgrade replaced the edited configuration"
server=""
chroot --userspec=basphere:basphere-users "$root" /usr/bin/basphere-server \
    --config /etc/basphere/basphere.yaml >> "$work/server.log" 2>&1 &
server=$!
pids+=($server)
alice_lists() { as_user alice list-vms >/dev/null 2>&1; }
wait_for "the upgraded server" alice_lists
as_user alice list-vms > "$work/after.txt"
grep -q 'web .*running' "$work/after.txt" || { cat "$work/after.txt"; fail "the VM is gone after the upgrade"; }
in_root basphere-admin user list > "$work/users.txt"
grep -q alice "$work/users.txt" || { cat "$work/users.txt"; fail "alice is gone after the upgrade"; }

step "debug symbols: the binaries stripped, their symbols and lines in basphere-dbgsym"
cp "$work"/basphere-dbgsym_0.1.0_*.deb "$root/tmp/"
in_root dpkg -i /tmp/basphere-dbgsym_0.1.0_amd64.deb
for program in usr/bin/basphere usr/bin/basphere-server usr/lib/basphere/basphere-vsphere-api; do
  binary=$(basename "$program")
  # Read whole before grep: with pipefail, grep -q quitting early would fail the pipe.
  sections=$(readelf -SW "$root/$program")
  # (.debug_gdb_scripts stays: a loaded section naming GDB's pretty-printers, not debug data.)
  if grep -qE '\.debug_(info|line|str|abbrev|ranges|loc)|\.symtab' <<<"$sections"; then
    fail "$binary still carries debug information"
  fi
  id=$(readelf -n "$root/$program" | awk '/Build ID/ {print $3}')
  [ -n "$id" ] || fail "$binary has no build id"
  # (readelf says a debug file's interpreter section holds no name: it has no contents there.)
  debug_sections=$(readelf -SW "$root/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug" 2>/dev/null)
  grep -q '\.debug_line' <<<"$debug_sections" || fail "basphere-dbgsym has no line tables for $binary"
  grep -q '\.symtab' <<<"$debug_sections" || fail "basphere-dbgsym has no symbols for $binary"
done

step "ok: installed, used under the original's names, upgraded with the data kept"
