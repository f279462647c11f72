#!/usr/bin/env bash
# Install streamprep as a systemd service, as "Running as a service" in the README describes.
#
#   sudo scripts/install-service.sh            # from a checkout of the repository
#   scripts/install-service.sh --prefix DIR    # the same files under DIR (no user, no systemctl): for tests
#
# It creates the streamprep user (in the video group), a virtual environment in /opt/streamprep/.venv with
# streamprep installed in it (not editable: the bundled models come with the package), the example config in
# /etc/streamprep/config/schema.toml and empty credential files beside it (mode 600, never overwritten), and the
# unit in /etc/systemd/system. It starts nothing: edit the config, put the passwords in, run the check it
# prints, then enable the unit.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=""
if [ "${1:-}" = "--prefix" ]; then
    prefix="$(mkdir -p "$2" && cd "$2" && pwd)"
fi
opt="$prefix/opt/streamprep"
etc="$prefix/etc/streamprep"
unitdir="$prefix/etc/systemd/system"

if [ -z "$prefix" ]; then
    getent group video >/dev/null || groupadd --system video
    id streamprep >/dev/null 2>&1 || useradd --system --home-dir /opt/streamprep --shell /usr/sbin/nologin --groups video streamprep
fi
python3 -m venv "$opt/.venv"
"$opt/.venv/bin/python" -m pip install --quiet --disable-pip-version-check "$src"
install -d -m 755 "$etc" "$unitdir"
[ -e "$etc/config.toml" ] || install -m 640 "$src/systemd/config.toml" "$etc/config.toml"
for credential in mqtt-password door-password; do
    [ -e "$etc/$credential" ] || install -m 600 /dev/null "$etc/$credential"
done
sed -e "s#/opt/streamprep#$opt#g" -e "s#/etc/streamprep#$etc#g" "$src/systemd/streamprep.ops.service" > "$unitdir/streamprep.ops.service"
chmod 644 "$unitdir/streamprep.ops.service"
if [ -z "$prefix" ]; then
    chgrp streamprep "$etc/config.toml"
    systemctl daemon-reload
fi
cat <<MSG
installed streamprep $("$opt/.venv/bin/streamprep" --version | cut -d' ' -f2) in $opt
next:
  edit $etc/config.toml (cameras, broker)
  systemd-ask-password "broker password:" | sudo tee $etc/mqtt-password >/dev/null
  systemd-ask-password "door camera password:" | sudo tee $etc/door-password >/dev/null
  sudo $opt/.venv/bin/streamprep check --config $etc/config.toml --credentials $etc
  sudo systemctl enable --now streamprep
MSG
