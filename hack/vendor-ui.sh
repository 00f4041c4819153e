#!/usr/bin/env bash
# hack/vendor-ui.sh: put htmx into the console's static files, one pinned file with its licence.
#
# Why vendored: the console must work offline and from a wheel, with no Node at install or run
# time and no CDN. This script is the only place Node (npm) is used, by a human bumping htmx:
# `npm pack` fetches the published tarball, we copy dist/htmx.min.js and the licence, and write
# the sha256 that test/ui/test_static.py checks, so a hand-edited or truncated file fails CI.
#
#   bash hack/vendor-ui.sh [VERSION]     default: the version pinned below
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${1:-2.0.11}
DEST="$ROOT/ui/static/vendor"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "htmx.org@$VERSION" >/dev/null)
tar -xzf "$WORK"/htmx.org-"$VERSION".tgz -C "$WORK"
mkdir -p "$DEST"
cp "$WORK/package/dist/htmx.min.js" "$DEST/htmx.min.js"
cp "$WORK/package/LICENSE" "$DEST/htmx.LICENSE"
sum=$(sha256sum "$DEST/htmx.min.js" | cut -d' ' -f1)
printf '%s  htmx.min.js  htmx.org@%s\n' "$sum" "$VERSION" > "$DEST/htmx.sha256"
echo "vendored htmx.org@$VERSION ($sum)"
