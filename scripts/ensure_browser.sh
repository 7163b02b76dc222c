#!/usr/bin/env bash
# The browser test (tests/ui/test_explorer_browser.py) drives Debian's Chromium with Playwright (which
# cannot download browsers here). Install it where it is missing and this user may (root, apt);
# otherwise say so: that test then skips with the same message. Never fails the caller.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser test ..."
    if apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
        exit 0
    fi
fi
echo "chromium is not installed and could not be installed here: the browser test will skip" >&2
exit 0
