#!/usr/bin/env bash
# mk/static.sh - `make static`: build build/static/dtq, one statically linked
# musl binary, from Debian source packages pinned in mk/static-versions.
#
# The dependencies (mbedtls, OpenSSL for libpq's TLS, curl, libpq, libev,
# cJSON) are built once into ${DTQ_STATIC_CACHE:-~/.cache/dtq-static}/<key>/,
# where <key> hashes the pins, the build recipes below and the toolchain, so a
# second build with the same pins only compiles dtq. See docs/static.md.
#
# Environment: DTQ_STATIC_CACHE (cache root), DTQ_STATIC_JOBS (parallel jobs,
# default: number of CPUs). Exit codes: 0 built and checked, 1 failed,
# 2 needs root to install packages or add deb-src entries.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PINS_FILE=$ROOT/mk/static-versions
OUT=$ROOT/build/static
CACHE_ROOT=${DTQ_STATIC_CACHE:-${HOME:-/root}/.cache/dtq-static}
JOBS=${DTQ_STATIC_JOBS:-$(nproc 2>/dev/null || echo 2)}
# curl's compiled-in CA file: where Debian, Ubuntu and Alpine keep it. Elsewhere
# set the ca_bundle setting; see docs/static.md.
CA_BUNDLE_DEFAULT=/etc/ssl/certs/ca-certificates.crt
# Build order matters: curl links mbedtls, libpq links OpenSSL.
DEPS=(mbedtls openssl curl postgresql-15 libev cjson)
# Debian packages this script needs on the build machine.
TOOLS=(musl-tools dpkg-dev file make gcc binutils perl linux-libc-dev xz-utils bzip2)

T_START=$EPOCHREALTIME

say() { printf '[static] %s\n' "$*"; }
die() { printf '[static] error: %s\n' "$*" >&2; exit 1; }
# seconds since $1 (an $EPOCHREALTIME value), one decimal
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# Debian version -> upstream version: 1:4.33-1 -> 4.33
upstream_version() { local v=${1#*:}; printf '%s' "${v%-*}"; }

# ---------------------------------------------------------------- pins
declare -A PIN=()
read_pins() {
	local line name
	[[ -r $PINS_FILE ]] || die "missing $PINS_FILE"
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line%%#*}
		line=${line//[[:space:]]/}
		[[ -z $line ]] && continue
		[[ $line == *=* ]] || die "$PINS_FILE: '$line' is not source=version"
		PIN[${line%%=*}]=${line#*=}
	done <"$PINS_FILE"
	for name in "${DEPS[@]}"; do
		[[ -n ${PIN[$name]:-} ]] || die "$PINS_FILE has no pin for '$name'"
	done
}

# ---------------------------------------------------------------- host setup
is_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

ensure_tools() {
	local missing=() p
	for p in "${TOOLS[@]}"; do is_installed "$p" || missing+=("$p"); done
	((${#missing[@]} == 0)) && return 0
	if ((EUID != 0)); then
		printf '[static] missing packages; as root run:\n  apt-get update && apt-get install -y --no-install-recommends %s\n' \
			"${missing[*]}" >&2
		exit 2
	fi
	say "installing ${missing[*]}"
	apt_install "${missing[@]}" >/dev/null 2>&1 || {
		apt_update
		apt_install "${missing[@]}" >/dev/null
	}
}

apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=300 "$@"
}

has_deb_src() {
	grep -qsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}

# deb-src entries mirroring the binary ones (deb822 file if there is one,
# deb.debian.org otherwise), so `apt-get source` can fetch bookworm sources.
DEB_SRC_FILE=/etc/apt/sources.list.d/dtq-deb-src.sources
APT_UPDATED=0
ensure_deb_src() {
	has_deb_src && return 0
	if ((EUID != 0)); then
		printf '[static] no deb-src entries in APT sources; as root run:\n  %s\n  apt-get update\n' \
			"sed 's/^Types: deb\$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > $DEB_SRC_FILE" >&2
		exit 2
	fi
	if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
		sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$DEB_SRC_FILE"
	else
		cat >"$DEB_SRC_FILE" <<-'EOF'
			Types: deb-src
			URIs: http://deb.debian.org/debian
			Suites: bookworm bookworm-updates
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

			Types: deb-src
			URIs: http://deb.debian.org/debian-security
			Suites: bookworm-security
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
	fi
	say "added deb-src entries ($DEB_SRC_FILE); apt-get update"
	apt_update
}

apt_update() {
	((APT_UPDATED)) && return 0
	apt-get update -q >/dev/null || die "apt-get update failed"
	APT_UPDATED=1
}

# ---------------------------------------------------------------- sources
source_versions() {
	apt-cache showsrc --only-source "$1" 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -uV
}

has_source_version() { source_versions "$1" | grep -qxF "$2"; }

# Before building anything: does the archive still have every pinned version?
# (Security updates replace old versions.) Refresh the index once if not.
check_pins_available() {
	local name bad=()
	for name in "$@"; do
		has_source_version "$name" "${PIN[$name]}" || bad+=("$name")
	done
	((${#bad[@]} == 0)) && return 0
	if ((EUID == 0)); then
		apt_update
		bad=()
		for name in "$@"; do
			has_source_version "$name" "${PIN[$name]}" || bad+=("$name")
		done
		((${#bad[@]} == 0)) && return 0
	fi
	for name in "${bad[@]}"; do
		printf '[static] error: the archive has no source %s=%s (pinned in mk/static-versions)\n' \
			"$name" "${PIN[$name]}" >&2
		printf '[static]   versions it has: %s\n' "$(source_versions "$name" | tr '\n' ' ')" >&2
	done
	printf '%s\n' \
		"[static] to update a pin: set 'source=version' in mk/static-versions to a version listed" \
		"[static] above (apt-cache showsrc <source>), rerun 'make static' (a new pin builds into a" \
		"[static] new cache directory) and commit mk/static-versions." >&2
	exit 1
}

# Download (into the shared download cache) and unpack, Debian patches applied,
# the pinned source of $1 into $SRC/$1.
fetch_source() {
	local name=$1 version=${PIN[$1]} dsc
	mkdir -p "$DOWNLOADS"
	# _apt cannot read root's home; apt then downloads unsandboxed and says so.
	# The download directory is shared by all cache keys: one writer at a time.
	if ! (cd "$DOWNLOADS" && flock "$DOWNLOADS/.lock" \
		apt-get source -q --download-only "$name=$version") >>"$LOG" 2>&1; then
		show_log_tail
		die "downloading the source of $name=$version failed (the archive lists it but did not serve it)"
	fi
	dsc=$DOWNLOADS/${name}_${version#*:}.dsc
	[[ -r $dsc ]] || die "apt-get source did not leave $dsc"
	rm -rf "${SRC:?}/$name"
	mkdir -p "$SRC"
	dpkg-source --no-copy -x "$dsc" "$SRC/$name" >>"$LOG" 2>&1 || {
		show_log_tail
		die "unpacking $dsc failed"
	}
}

show_log_tail() {
	printf '[static] --- last lines of %s ---\n' "$LOG" >&2
	tail -n 40 "$LOG" >&2 || true
	printf '[static] ---\n' >&2
}

# ---------------------------------------------------------------- recipes
# Each build_<dep> runs in $SRC/<dep> with output to its log, and installs
# headers and static libraries into $PREFIX. Their text is part of the cache
# key: editing a recipe rebuilds the dependencies.
DCC= # the compiler wrapper, set in setup_toolchain
DCFLAGS="-O2 -pipe -ffunction-sections -fdata-sections"

build_mbedtls() {
	# as Debian's package: thread-safe RNG/contexts (MBEDTLS_THREADING_PTHREAD)
	sed -i -e 's|^//\(#define MBEDTLS_THREADING_C\)$|\1|' \
		-e 's|^//\(#define MBEDTLS_THREADING_PTHREAD\)$|\1|' include/mbedtls/config.h
	# mbedtls 2.28 calls getrandom(2) only under glibc and otherwise reads
	# /dev/urandom, which a scratch image or chroot may lack; musl has syscall().
	grep -q 'defined(__linux__) && defined(__GLIBC__)' library/entropy_poll.c
	sed -i 's|(defined(__linux__) \&\& defined(__GLIBC__))|defined(__linux__)|' library/entropy_poll.c
	make -C library -j"$JOBS" CC="$DCC" AR=ar CFLAGS="$DCFLAGS" static
	mkdir -p "$PREFIX/include" "$PREFIX/lib"
	cp -R include/mbedtls include/psa "$PREFIX/include/"
	cp library/libmbedcrypto.a library/libmbedx509.a library/libmbedtls.a "$PREFIX/lib/"
}

build_openssl() {
	# Only for libpq (PostgreSQL's TLS needs OpenSSL); curl uses mbedtls.
	CC="$DCC" CFLAGS="$DCFLAGS" ./Configure "linux-$ARCH" --prefix="$PREFIX" --libdir=lib \
		--openssldir=/etc/ssl no-shared no-module no-dso no-engine no-async no-afalgeng \
		no-ktls no-tests no-comp no-ssl3 no-weak-ssl-ciphers no-idea no-mdc2 no-rc5 \
		no-seed no-ec2m no-legacy
	make -j"$JOBS" build_libs
	make install_dev
}

build_curl() {
	CC="$DCC" CFLAGS="$DCFLAGS" PKG_CONFIG=false ./configure --prefix="$PREFIX" \
		--disable-shared --enable-static --disable-dependency-tracking \
		--without-openssl --with-mbedtls="$PREFIX" \
		--with-ca-bundle="$CA_BUNDLE_DEFAULT" --without-ca-path \
		--enable-http --enable-proxy --enable-threaded-resolver --enable-ipv6 \
		--disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp \
		--disable-dict --disable-telnet --disable-tftp --disable-pop3 --disable-imap \
		--disable-smb --disable-smtp --disable-gopher --disable-mqtt --disable-manual \
		--disable-ntlm-wb --disable-alt-svc --disable-websockets \
		--without-libpsl --without-zlib --without-brotli --without-zstd --without-libidn2 \
		--without-nghttp2 --without-ngtcp2 --without-nghttp3 --without-quiche \
		--without-librtmp --without-libssh2 --without-libssh --without-wolfssh \
		--without-gssapi --without-hyper --without-libgsasl
	make -C lib -j"$JOBS"
	make -C lib install
	make -C include install
	install -D -m 644 libcurl.pc "$PREFIX/lib/pkgconfig/libcurl.pc"
}

build_postgresql_15() {
	# libpq only: no readline/zlib/icu; TLS through the OpenSSL built above.
	CC="$DCC" CFLAGS="$DCFLAGS" ./configure --prefix="$PREFIX" \
		--with-includes="$PREFIX/include" --with-libraries="$PREFIX/lib" \
		--with-ssl=openssl --without-readline --without-zlib --without-icu \
		--without-gssapi --without-ldap --without-pam --without-libxml --without-libxslt \
		--without-lz4 --without-zstd --without-llvm --without-systemd --without-selinux \
		--without-perl --without-python --without-tcl --disable-nls
	make -C src/backend generated-headers
	make -C src/port -j"$JOBS" libpgport_shlib.a
	make -C src/common -j"$JOBS" libpgcommon_shlib.a
	make -C src/interfaces/libpq -j"$JOBS" all-static-lib
	# The _shlib variants are what libpq itself is linked with.
	mkdir -p "$PREFIX/include" "$PREFIX/lib"
	install -m 644 src/port/libpgport_shlib.a "$PREFIX/lib/libpgport.a"
	install -m 644 src/common/libpgcommon_shlib.a "$PREFIX/lib/libpgcommon.a"
	install -m 644 src/interfaces/libpq/libpq.a "$PREFIX/lib/libpq.a"
	install -m 644 src/interfaces/libpq/libpq-fe.h src/interfaces/libpq/libpq-events.h \
		src/include/postgres_ext.h src/include/pg_config_ext.h "$PREFIX/include/"
}

build_libev() {
	CC="$DCC" CFLAGS="$DCFLAGS" ./configure --prefix="$PREFIX" --disable-shared --enable-static
	make -j"$JOBS"
	make install-libLTLIBRARIES
	install -m 644 ev.h "$PREFIX/include/ev.h"
}

build_cjson() {
	$DCC $DCFLAGS -std=c89 -c cJSON.c -o cJSON.o
	ar rcs libcJSON.a cJSON.o
	install -D -m 644 cJSON.h "$PREFIX/include/cjson/cJSON.h"
	install -D -m 644 libcJSON.a "$PREFIX/lib/libcjson.a"
}

RECIPES=(build_mbedtls build_openssl build_curl build_postgresql_15 build_libev build_cjson)

# ---------------------------------------------------------------- toolchain
MULTIARCH=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
ARCH=$(uname -m) # OpenSSL's target names: linux-x86_64, linux-aarch64

# musl-tools ships no Linux UAPI headers; OpenSSL and curl want a few
# (linux/random.h, linux/tcp.h...). They are libc-independent, so expose only
# linux/, asm/ and asm-generic/ from linux-libc-dev next to musl's headers.
# A wrapper rather than CFLAGS, so every configure test sees them too.
setup_toolchain() {
	local kh=$CACHE/kernel-headers
	mkdir -p "$kh" "$CACHE/bin"
	ln -sfn /usr/include/linux "$kh/linux"
	ln -sfn /usr/include/asm-generic "$kh/asm-generic"
	ln -sfn "/usr/include/$MULTIARCH/asm" "$kh/asm"
	cat >"$CACHE/bin/musl-cc" <<-EOF
		#!/bin/sh
		exec musl-gcc -isystem "$kh" "\$@"
	EOF
	chmod 755 "$CACHE/bin/musl-cc"
	DCC=$CACHE/bin/musl-cc
	KERNEL_HEADERS=$kh
}

cache_key() {
	{
		grep -vE '^[[:space:]]*(#|$)' "$PINS_FILE" | tr -d '[:blank:]' | sort
		declare -f "${RECIPES[@]}" setup_toolchain
		echo "$DCFLAGS $CA_BUNDLE_DEFAULT $ARCH"
		dpkg-query -W -f='${Version}\n' musl-tools gcc linux-libc-dev 2>/dev/null || true
	} | sha256sum | cut -c1-16
}

# ---------------------------------------------------------------- dependencies
build_dep() {
	local name=$1 recipe=build_${1//-/_} t
	local stamp=$CACHE/stamps/$name version=${PIN[$1]}
	if [[ -e $stamp ]]; then
		say "$name $(upstream_version "$version"): cached"
		return 0
	fi
	LOG=$CACHE/logs/$name.log
	mkdir -p "$CACHE/logs" "$CACHE/stamps"
	: >"$LOG"
	t=$EPOCHREALTIME
	say "fetching $name $version ..."
	fetch_source "$name"
	say "building $name $(upstream_version "$version") ... (log: $LOG)"
	# A background subshell, because errexit is off inside a tested one
	# (`if ! ( ... )`). The outer make's variables must not leak in.
	(
		cd "$SRC/$name"
		unset MAKEFLAGS MFLAGS MAKELEVEL CFLAGS CPPFLAGS LDFLAGS LIBS CC
		export PKG_CONFIG_LIBDIR=$PREFIX/lib/pkgconfig PKG_CONFIG_PATH=
		set -x
		"$recipe"
	) >>"$LOG" 2>&1 &
	if ! wait $!; then
		show_log_tail
		die "building $name failed; full log: $LOG"
	fi
	# sources are no longer needed once installed into the prefix
	rm -rf "${SRC:?}/$name"
	echo "$version" >"$stamp"
	say "built $name $(upstream_version "$version") in $(since "$t")s"
}

# A cache someone pruned by hand: rebuild everything rather than fail to link.
PREFIX_LIBS=(libmbedtls.a libmbedx509.a libmbedcrypto.a libssl.a libcrypto.a libcurl.a libpq.a
             libpgcommon.a libpgport.a libev.a libcjson.a)
check_prefix() {
	local lib
	[[ -d $CACHE/stamps ]] || return 0
	for lib in "${PREFIX_LIBS[@]}"; do
		[[ -e $PREFIX/lib/$lib ]] && continue
		if [[ -n $(ls -A "$CACHE/stamps") ]]; then
			say "cache incomplete ($lib missing): rebuilding the dependencies"
			rm -rf "${CACHE:?}/stamps" "${PREFIX:?}"
		fi
		return 0
	done
}

# ---------------------------------------------------------------- dtq
build_dtq() {
	local t=$EPOCHREALTIME
	local libs="-L$PREFIX/lib -Wl,--start-group -lcurl -lmbedtls -lmbedx509 -lmbedcrypto"
	libs+=" -lpq -lpgcommon -lpgport -lssl -lcrypto -lcjson -lev -Wl,--end-group -lm"
	# objects compiled against other dependency versions must not be reused
	if [[ -e $OUT/VERSIONS ]] && ! grep -qxF "cache-key=$KEY" "$OUT/VERSIONS"; then
		say "dependencies changed since the last static build: cleaning build/static"
		rm -rf "${OUT:?}"/*
	fi
	say "compiling dtq (make BUILD=build/static CC=musl-gcc) ..."
	# Everything on the command line, so nothing from the host's pkg-config
	# (glibc include paths) reaches the musl build. include/cjson as in
	# libcjson.pc, which makes both <cjson/cJSON.h> and <cJSON.h> work; -isystem
	# as for the dynamic build, which gets them from /usr/include.
	(cd "$ROOT" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j"$JOBS" \
		BUILD=build/static CC=musl-gcc \
		PKG_CFLAGS="-isystem $PREFIX/include -isystem $PREFIX/include/cjson -isystem $KERNEL_HEADERS" \
		CFLAGS="${CFLAGS:-} -ffunction-sections -fdata-sections" \
		LDFLAGS="-static -Wl,--gc-sections" \
		LIBS="$libs" \
		build/static/dtq)
	# Ship stripped; keep the symbols next to it for gdb (debuglink).
	if file "$OUT/dtq" | grep -q 'not stripped'; then
		objcopy --only-keep-debug "$OUT/dtq" "$OUT/dtq.debug"
		strip --strip-all "$OUT/dtq"
		objcopy --add-gnu-debuglink="$OUT/dtq.debug" "$OUT/dtq"
	fi
	say "dtq compiled in $(since "$t")s"
}

write_versions() {
	local name
	{
		echo "# Debian source packages build/static/dtq was built from (mk/static-versions)"
		for name in "${DEPS[@]}"; do echo "$name=${PIN[$name]}"; done
		echo "musl-tools=$(dpkg-query -W -f='${Version}' musl-tools)"
		echo "gcc=$(dpkg-query -W -f='${Version}' gcc)"
		echo "cache-key=$KEY"
	} >"$OUT/VERSIONS"
}

# ---------------------------------------------------------------- checks
check_binary() {
	local bin=$OUT/dtq desc jail rc=0 runner=()
	desc=$(file -b "$bin")
	say "file: $desc"
	[[ $desc == *"statically linked"* ]] || die "build/static/dtq is not statically linked"
	say "size: $(stat -c %s "$bin") bytes, stripped ($(du -h "$bin" | cut -f1)); debug info:" \
		"build/static/dtq.debug ($(du -h "$OUT/dtq.debug" 2>/dev/null | cut -f1 || echo none))"
	((EUID == 0)) || runner=(unshare -r)
	jail=$(mktemp -d)
	cp "$bin" "$jail/dtq"
	say "chroot (only /dtq inside): dtq --help, dtq --version"
	"${runner[@]}" chroot "$jail" /dtq --help >"$jail.help" 2>&1 || rc=$?
	if ((rc != 0)); then
		cat "$jail.help" >&2
		rm -rf "$jail" "$jail.help"
		die "dtq --help failed in an empty chroot (exit $rc)"
	fi
	"${runner[@]}" chroot "$jail" /dtq --version >"$jail.version" 2>&1 || rc=$?
	sed 's/^/[static]   /' "$jail.version"
	rm -rf "$jail" "$jail.help" "$jail.version"
	((rc == 0)) || die "dtq --version failed in an empty chroot (exit $rc)"
}

# ---------------------------------------------------------------- main
main() {
	local name cold=0 t
	read_pins
	ensure_tools
	KEY=$(cache_key)
	CACHE=$CACHE_ROOT/$KEY
	DOWNLOADS=$CACHE_ROOT/downloads
	SRC=$CACHE/src
	PREFIX=$CACHE/prefix
	mkdir -p "$CACHE" "$OUT"
	# one build per cache directory at a time (CI and a developer, two worktrees)
	exec 9>"$CACHE/.lock"
	flock 9
	setup_toolchain
	say "cache: $CACHE"
	check_prefix
	for name in "${DEPS[@]}"; do [[ -e $CACHE/stamps/$name ]] || cold=1; done
	if ((cold)); then
		ensure_deb_src
		local todo=()
		for name in "${DEPS[@]}"; do [[ -e $CACHE/stamps/$name ]] || todo+=("$name"); done
		check_pins_available "${todo[@]}"
		t=$EPOCHREALTIME
		for name in "${DEPS[@]}"; do build_dep "$name"; done
		say "dependencies built in $(since "$t")s"
	else
		say "dependencies: all cached (pins unchanged)"
	fi
	build_dtq
	write_versions
	check_binary
	say "OK build/static/dtq ($( ((cold)) && echo cold || echo warm) build, $(since "$T_START")s total)"
}

main "$@"
