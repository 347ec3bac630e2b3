#!/usr/bin/env bash
# Make sure Debian's chromium and chromedriver are installed: tests/test_explorer.py drives the explorer page
# with them (and skips without them). Installs the two packages only when one of them is missing.
set -euo pipefail
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ensure-chromium: run as root, or: sudo apt-get install -y chromium chromium-driver" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver
