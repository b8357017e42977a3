#!/usr/bin/env bash
# mk/deps.sh - install what building and testing dtq needs, idempotently:
# Debian packages (compiler, the six -dev libraries, PostgreSQL, musl, clang
# for `make fuzz`) and the Python virtualenv .venv/ (moto, boto3, Dagster,
# TaskIQ, pytest, ruff) pinned by mk/requirements.txt. Run by `make deps`.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
venv=${DTQ_VENV:-$top/.venv}

packages=(
	build-essential pkg-config file ca-certificates procps
	libcurl4-openssl-dev libcjson-dev libmbedtls-dev libev-dev libcmocka-dev libpq-dev
	postgresql musl-tools python3 python3-venv python3-dev valgrind clang
)

say() { printf '[deps] %s\n' "$*"; }

missing_packages() {
	local p
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			printf '%s\n' "$p"
	done
}

install_packages() {
	local missing
	mapfile -t missing < <(missing_packages)
	if [ "${#missing[@]}" -eq 0 ]; then
		say "Debian packages: all ${#packages[@]} present"
		return
	fi
	local cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			cmd=(sudo "${cmd[@]}")
			say "installing with sudo: ${missing[*]}"
			sudo apt-get update -q
			DEBIAN_FRONTEND=noninteractive "${cmd[@]}"
			return
		fi
		echo "mk/deps.sh: these Debian packages are missing and installing them needs root:" >&2
		echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 2
	fi
	say "installing: ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive "${cmd[@]}"
}

# The venv is rebuilt only when mk/requirements.txt or the plugin's
# pyproject.toml change (their hash is kept in the venv), so a second
# `make deps` costs a second. The plugin is installed editable.
install_venv() {
	local want have=""
	want=$(cat "$top/mk/requirements.txt" "$top/python/pyproject.toml" 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ -f "$venv/.dtq-requirements" ] && have=$(cat "$venv/.dtq-requirements")
	if [ "$want" = "$have" ] && [ -x "$venv/bin/moto_server" ]; then
		say "virtualenv $venv: up to date"
		return
	fi
	say "virtualenv $venv: installing mk/requirements.txt (moto, Dagster, TaskIQ; a few minutes)"
	[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
	"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
	"$venv/bin/pip" install -q --disable-pip-version-check -r "$top/mk/requirements.txt"
	if [ -f "$top/python/pyproject.toml" ]; then
		"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$top/python"
	fi
	echo "$want" >"$venv/.dtq-requirements"
	say "virtualenv $venv: ready"
}

install_packages
install_venv
