#!/bin/sh
# Raise the soft open-file limit to the hard one before starting Chorus.
# Every WebSocket is a file descriptor. Container runtimes often hand out a soft limit of
# 1024 (containerd 2.x, many Docker setups) with a much higher hard limit, and Python, unlike
# Go, does not raise it by itself: without this, a node stops accepting at ~1000 clients.
set -e
hard=$(ulimit -Hn)
ulimit -Sn "$hard" 2>/dev/null || echo "chorus-entrypoint: could not raise nofile to $hard" >&2
exec chorus "$@"
