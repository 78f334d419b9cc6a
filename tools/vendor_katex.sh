#!/usr/bin/env bash
# Refresh the bundled KaTeX (math rendering for the site, no CDN at view time) from the npm registry.
# Usage: bash tools/vendor_katex.sh [VERSION]   (default: the version recorded in site/docs/assets/vendor/katex/VERSION)
# Keeps only what the site uses: the minified script, auto-render, the CSS and the woff2 fonts
# (every browser the site targets reads woff2, so the CSS is rewritten to list woff2 only).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/site/docs/assets/vendor/katex"
version="${1:-$(cat "$dest/VERSION" 2>/dev/null || echo 0.19.1)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "katex@$version" >/dev/null && tar xzf katex-*.tgz)
dist="$tmp/package/dist"
rm -rf "$dest"
mkdir -p "$dest/fonts"
cp "$dist/katex.min.js" "$dist/contrib/auto-render.min.js" "$tmp/package/LICENSE" "$dest/"
cp "$dist"/fonts/*.woff2 "$dest/fonts/"
sed -E 's#,url\(fonts/[^)]+\.woff\) format\("woff"\),url\(fonts/[^)]+\.ttf\) format\("truetype"\)##g' \
  "$dist/katex.min.css" > "$dest/katex.min.css"
echo "$version" > "$dest/VERSION"
if grep -q '\.ttf' "$dest/katex.min.css"; then echo "warning: katex.min.css still names .ttf fonts" >&2; fi
du -sh "$dest"
