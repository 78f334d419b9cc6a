#!/usr/bin/env bash
# The documentation site's browser test: builds the site, serves it on 127.0.0.1 and drives
# Debian's headless chromium through selenium (tests/test_site_browser.py).
# Installs chromium and chromium-driver with apt-get when they are missing (never a downloaded
# browser), and the docs and test-browser extras when mkdocs-material or selenium is missing.
# Screenshots land in site/build/screenshots/ (or $SITE_SCREENSHOTS).
# Usage: bash tools/site_browser_test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "site_browser_test: chromium is missing and apt-get needs root" >&2
    exit 1
  fi
  echo "site_browser_test: installing chromium and chromium-driver with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # If the registry cannot be reached the browser tests skip (they say why) instead of failing CI.
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
    echo "site_browser_test: warning: could not install chromium; the browser tests will be skipped" >&2
fi

if ! "$PYTHON" -c "import selenium, material" >/dev/null 2>&1; then
  echo "site_browser_test: installing the docs and test-browser extras"
  "$PYTHON" -m pip install -q -e '.[docs,test-browser]'
fi

exec "$PYTHON" -m pytest -m browser -q tests/test_site_browser.py "$@"
