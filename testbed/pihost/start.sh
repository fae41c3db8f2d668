#!/bin/sh
# The Pi's engine, then its sshd in the foreground. /var/lib/docker is a volume (ext4, not
# the outer engine's overlay), so this engine uses overlay2, as a real Pi does.
set -e
if command -v dockerd >/dev/null; then dockerd >/var/log/dockerd.log 2>&1 & fi
exec /usr/sbin/sshd -D -e
