#!/usr/bin/env bash
# Make sure the system (Debian/Ubuntu) packages named on the command line are installed.
#
#   scripts/ensure_system_deps.sh graphviz                            # make lab
#   scripts/ensure_system_deps.sh graphviz chromium fonts-liberation  # make test
#   scripts/ensure_system_deps.sh redis-server                        # make bench
#
# Idempotent and fast when everything is there (one `command -v` per package, no apt).
# As root with apt-get: installs what is missing. Otherwise: says what to install and carries on
# (nbcanvas falls back to text diagrams without `dot`; the browser test skips without Chromium).
# Never fails the build on a missing package: the tests that need it say so themselves.
set -euo pipefail

have() {  # is package $1 usable?
    case "$1" in
        graphviz) command -v dot >/dev/null 2>&1 ;;
        chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ;;
        redis-server) command -v redis-server >/dev/null 2>&1 ;;
        fonts-*)
            if command -v dpkg-query >/dev/null 2>&1; then
                dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
            else
                fc-list 2>/dev/null | grep -qi "${1#fonts-}"
            fi ;;
        *) command -v "$1" >/dev/null 2>&1 || \
            dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" ;;
    esac
}

hint() {  # how to get package $1 without us
    case "$1" in
        graphviz) echo "Graphviz's \`dot\` is missing: sudo apt-get install graphviz (or conda install -c conda-forge graphviz / brew install graphviz); diagrams fall back to text" ;;
        chromium) echo "Chromium is missing: sudo apt-get install chromium fonts-liberation; the browser test will be skipped" ;;
        redis-server) echo "redis-server is missing: sudo apt-get install redis-server (or brew install redis); the Celery+Redis benchmarks will be skipped" ;;
        *) echo "$1 is missing: sudo apt-get install $1" ;;
    esac
}

missing=()
for pkg in "$@"; do
    have "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null \
        && apt-get install -y -q -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null; then
        still=()
        for pkg in "${missing[@]}"; do have "$pkg" || still+=("$pkg"); done
        missing=("${still[@]+"${still[@]}"}")
    else
        echo "!!  apt-get failed (offline?); carrying on without: ${missing[*]}" >&2
    fi
fi

for pkg in "${missing[@]+"${missing[@]}"}"; do
    echo "!!  $(hint "$pkg")" >&2
done
exit 0
