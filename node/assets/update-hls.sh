#!/usr/bin/env bash
# Replaces the vendored hls.js with the light build of the given npm version.
# Usage: node/assets/update-hls.sh VERSION   (needs npm and the npm registry)
set -euo pipefail
version="${1:?usage: $0 VERSION (an hls.js release, e.g. 1.7.4)}"
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "hls.js@$version" >/dev/null && tar xzf "hls.js-$version.tgz")
cp "$tmp/package/dist/hls.light.min.js" "$here/hls.light.min.js"
cp "$tmp/package/LICENSE" "$here/hls.js-LICENSE"
sha256sum "$here/hls.light.min.js"
echo "now set HLS_JS_VERSION = \"$version\" in node/src/assets.rs"
