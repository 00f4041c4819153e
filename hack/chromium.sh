#!/usr/bin/env bash
# hack/chromium.sh: Debian's `chromium` package for the console's browser tests.
#
# The tests drive the system browser through Playwright's `executable_path`; Playwright's own
# browser download (`playwright install`) is never used: it fetches from a CDN this project's
# machines cannot reach, and the distribution's package gets security updates with the system.
# Root installs directly; anyone else goes through sudo when it is there.
#
#   bash hack/chromium.sh install   install /usr/bin/chromium if missing (apt-get)
#   bash hack/chromium.sh path      print the browser's path, or fail if it is missing
set -euo pipefail

CHROMIUM=/usr/bin/chromium

log() { printf '[chromium.sh] %s\n' "$*" >&2; }

cmd_install() {
  [[ -x "$CHROMIUM" ]] && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "not root and no sudo: install Debian's chromium package"; exit 1; }
    sudo=(sudo)
  fi
  log "installing Debian's chromium package"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium
  [[ -x "$CHROMIUM" ]] || { log "apt-get finished but $CHROMIUM is missing"; exit 1; }
}

cmd_path() {
  [[ -x "$CHROMIUM" ]] || { log "$CHROMIUM missing: run bash hack/chromium.sh install"; exit 1; }
  echo "$CHROMIUM"
}

case "${1:-install}" in
  install) cmd_install ;;
  path) cmd_path ;;
  *) log "usage: $0 install|path"; exit 2 ;;
esac
