#!/usr/bin/env bash
# Configure, build and install Network UPS Tools from a source tree into /opt/nut, trimmed for a
# container image: USB + network-server build, no docs/dev files/serial drivers, stripped binaries,
# plus NUT's generated udev rules (VID:PID -> driver table) at share/nut/62-nut-usbups.rules.
#
# Usage: docker/build-nut.sh SRC_DIR
#
# Build deps (Debian 12): build-essential pkg-config libusb-1.0-0-dev libltdl-dev
#   (+ autoconf automake libtool python3 perl when SRC_DIR is a git checkout without ./configure)
# Run deps: libusb-1.0-0 libltdl7
#
# Environment knobs:
#   NUT_PREFIX            install prefix                           (default /opt/nut)
#   NUT_STATEPATH         state/pid directory                      (default /var/run/nut)
#   NUT_USER / NUT_GROUP  account the daemons drop privileges to   (default nut / nut)
#   NUT_WITH_SERIAL       yes|no: build serial drivers             (default no; USB + dummy-ups etc. stay)
#   NUT_CONFIGURE_EXTRA   extra configure arguments (word-split), e.g. "--with-drivers=usbhid-ups,dummy-ups"
#   NUT_KEEP_DOCS=1       keep man pages / docs / headers
#   NUT_HOST              GNU triplet to build for (configure --host), e.g. aarch64-linux-gnu;
#                         empty or the build machine's own triplet: a native build. A cross build
#                         uses ${NUT_HOST}-gcc, -strip and -readelf, and the target's
#                         pkg-config files (Debian multiarch: libusb-1.0-0-dev:arm64 and so on)
#   JOBS                  make parallelism                         (default: nproc)
set -euo pipefail

log() { printf '[build-nut %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ $# -eq 1 ] || die "usage: $0 SRC_DIR"
SRC_DIR=$1
[ -d "$SRC_DIR" ] || die "no such directory: $SRC_DIR"
SRC_DIR=$(cd "$SRC_DIR" && pwd)

PREFIX=${NUT_PREFIX:-/opt/nut}
STATEPATH=${NUT_STATEPATH:-/var/run/nut}
NUT_USER=${NUT_USER:-nut}
NUT_GROUP=${NUT_GROUP:-nut}
WITH_SERIAL=${NUT_WITH_SERIAL:-no}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
RULES_DEST="$PREFIX/share/nut/62-nut-usbups.rules"
BUILD_TYPE=$(dpkg-architecture -qDEB_BUILD_GNU_TYPE 2>/dev/null || gcc -dumpmachine)
HOST_TYPE=${NUT_HOST:-$BUILD_TYPE}
case "$HOST_TYPE" in
    *[!A-Za-z0-9_.-]*) die "NUT_HOST '$HOST_TYPE' is not a GNU triplet" ;;
esac
CROSS=0
[ "$HOST_TYPE" = "$BUILD_TYPE" ] || CROSS=1

T_START=$(date +%s)
T_PHASE=$T_START
phase_done() {
    local now
    now=$(date +%s)
    log "$1 took $((now - T_PHASE)) s"
    T_PHASE=$now
}

cd "$SRC_DIR"

# ------------------------------------------------------------------ autogen (git checkouts)
if [ ! -x ./configure ]; then
    [ -x ./autogen.sh ] || die "$SRC_DIR has neither ./configure nor ./autogen.sh: not a NUT source tree?"
    log "no ./configure: running ./autogen.sh (needs autoconf automake libtool python3 perl)"
    ./autogen.sh || die "./autogen.sh failed"
    [ -x ./configure ] || die "./autogen.sh did not produce ./configure"
    phase_done "autogen"
fi

# ------------------------------------------------------------------ configure
HELP=$(./configure --help 2>/dev/null) || die "./configure --help failed"

# supported OPTION: true when ./configure --help lists --with-NAME/--without-NAME/--enable-NAME.
supported() {
    local opt=${1%%=*} name
    case "$opt" in
        --with-*) name=${opt#--with-} ;;
        --without-*) name=${opt#--without-} ;;
        --enable-*) name=${opt#--enable-} ;;
        --disable-*) name=${opt#--disable-} ;;
        *) return 0 ;; # --prefix, --sysconfdir, ...: standard autoconf options
    esac
    grep -Eq -- "--(with|without|enable|disable)-${name}([^A-Za-z0-9_-]|$)" <<<"$HELP"
}

WANTED=(
    "--prefix=$PREFIX"
    "--sysconfdir=$PREFIX/etc"
    "--with-statepath=$STATEPATH"
    "--with-altpidpath=$STATEPATH"
    "--with-pidpath=$STATEPATH"
    "--with-user=$NUT_USER"
    "--with-group=$NUT_GROUP"
    "--with-usb=libusb-1.0"
    "--with-nut-scanner"
    "--with-serial=$WITH_SERIAL"
    "--with-dev=no"
    "--with-doc=no"
    "--without-snmp"
    "--without-neon"
    "--without-powerman"
    "--without-modbus"
    "--without-ipmi"
    "--without-avahi"
    "--without-cgi"
    "--without-ssl"
    "--without-wrap"
    "--without-nut_monitor"
    "--without-pynut"
    "--with-systemdsystemunitdir=no"
    "--with-udev-dir=no"
)
ARGS=()
for a in "${WANTED[@]}"; do
    if supported "$a"; then
        ARGS+=("$a")
    else
        log "note: this configure does not know ${a%%=*}; leaving it out"
    fi
done
if [ "$CROSS" = 1 ]; then
    command -v "$HOST_TYPE-gcc" >/dev/null 2>&1 || die "cross build for $HOST_TYPE: no $HOST_TYPE-gcc (apt-get install crossbuild-essential-<arch>)"
    ARGS+=("--build=$BUILD_TYPE" "--host=$HOST_TYPE")
    # Why: autoconf looks for $HOST_TYPE-pkg-config first; where that wrapper is missing, the
    # plain pkg-config must read the target's .pc files only, never the build machine's.
    if ! command -v "$HOST_TYPE-pkg-config" >/dev/null 2>&1; then
        export PKG_CONFIG_LIBDIR="/usr/lib/$HOST_TYPE/pkgconfig:/usr/share/pkgconfig"
    fi
    log "cross build: $BUILD_TYPE -> $HOST_TYPE"
fi
if [ -n "${NUT_CONFIGURE_EXTRA:-}" ]; then
    # shellcheck disable=SC2206  # word splitting of the extra arguments is intended
    EXTRA=($NUT_CONFIGURE_EXTRA)
    ARGS+=("${EXTRA[@]}")
fi

log "configure ${ARGS[*]}"
if ! ./configure "${ARGS[@]}" >configure.out 2>&1; then
    tail -n 40 configure.out >&2 || true
    [ -f config.log ] && tail -n 60 config.log >&2
    die "./configure failed (see $SRC_DIR/config.log)"
fi
grep -Ei 'warning|unrecognized' configure.out | sort -u | head -n 20 >&2 || true
phase_done "configure"

# ------------------------------------------------------------------ build + install
log "make -j$JOBS"
make -j"$JOBS" >make.out 2>&1 || { tail -n 60 make.out >&2; die "make failed (full log: $SRC_DIR/make.out)"; }
phase_done "make"
make install >make-install.out 2>&1 || { tail -n 60 make-install.out >&2; die "make install failed"; }
phase_done "make install"

# ------------------------------------------------------------------ trim
if [ "${NUT_KEEP_DOCS:-0}" != 1 ]; then
    rm -rf "$PREFIX/share/man" "$PREFIX/share/doc" "$PREFIX/share/info" "$PREFIX/html" \
        "$PREFIX/include" "$PREFIX/lib/pkgconfig"
fi
find "$PREFIX" \( -name '*.a' -o -name '*.la' \) -type f -delete

is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' \n')" = '177ELF' ]; }
if [ "$CROSS" = 1 ]; then STRIP=${STRIP:-$HOST_TYPE-strip}; else STRIP=${STRIP:-strip}; fi
if command -v "$STRIP" >/dev/null 2>&1; then
    n=0
    while IFS= read -r -d '' f; do
        if is_elf "$f"; then
            "$STRIP" --strip-unneeded "$f" || die "strip $f failed"
            n=$((n + 1))
        fi
    done < <(find "$PREFIX" -type f \( -perm -u+x -o -name '*.so' -o -name '*.so.*' \) -print0)
    log "stripped $n ELF files"
else
    log "WARNING: $STRIP not found; binaries left unstripped"
fi

# ------------------------------------------------------------------ udev rules (VID:PID -> driver table)
RULES_SRC=""
for c in scripts/udev/nut-usbups.rules scripts/udev/62-nut-usbups.rules; do
    if [ -s "$c" ]; then RULES_SRC=$c; break; fi
done
[ -n "$RULES_SRC" ] || die "generated udev rules not found (scripts/udev/nut-usbups.rules): was configure run with USB support?"
install -D -m 0644 "$RULES_SRC" "$RULES_DEST"
entries=$(grep -c 'ATTR{idVendor}==' "$RULES_DEST" || true)
[ "$entries" -gt 0 ] || die "$RULES_DEST lists no ATTR{idVendor} entries"
log "installed $RULES_DEST ($entries VID:PID entries)"

# ------------------------------------------------------------------ summary
for b in sbin/upsd sbin/upsmon sbin/upsdrvctl bin/upsc bin/nut-scanner bin/usbhid-ups bin/dummy-ups; do
    [ -x "$PREFIX/$b" ] || die "expected $PREFIX/$b after install"
done
if [ "$CROSS" = 1 ]; then
    # A cross-built upsd cannot run here; check instead that it is an ELF for the target's CPU.
    machine=$("$HOST_TYPE-readelf" -h "$PREFIX/sbin/upsd" | sed -n 's/^ *Machine: *//p')
    case "$HOST_TYPE/$machine" in
        aarch64-*/AArch64 | arm-*/ARM | x86_64-*/*X86-64*) log "upsd is an ELF for $machine" ;;
        *) die "upsd was built for '$machine', not for $HOST_TYPE" ;;
    esac
else
    log "$("$PREFIX/sbin/upsd" -V 2>&1 | head -n 1)"
fi
log "installed: $(du -sh "$PREFIX" | cut -f1) in $PREFIX; $(find "$PREFIX/bin" "$PREFIX/sbin" -type f | wc -l) programs"
log "total $(($(date +%s) - T_START)) s"
