#!/usr/bin/env bash
# Give a fresh Debian 12 machine (run as root) a working container engine for this project:
#   - docker.io, debootstrap, qemu-user-static, binfmt-support from bookworm
#   - docker compose v2 and docker buildx from trixie's .debs (trixie source added only for the download)
#   - a running dockerd (started in the background when no init system runs it)
#   - qemu-aarch64 and qemu-arm registered with binfmt_misc (the arm64 and arm/v7 images'
#     runtime stages run under emulation; NUT itself is cross-compiled, see the Dockerfile)
#   - local base images, since no container registry is used:
#       debian:bookworm-slim          (amd64, debootstrap minbase + docker import)
#       local/bookworm-slim:arm64     (arm64, debootstrap --arch=arm64 + FROM scratch, buildx --platform linux/arm64)
#       local/bookworm-slim:armhf     (arm/v7, debootstrap --arch=armhf, buildx --platform linux/arm/v7)
# Rootfs tarballs are cached in $UPS_NUT_CACHE_DIR (default /var/cache/ups-nut-smart); a second
# run only checks things. Safe to run any number of times.
#
# Environment knobs:
#   UPS_NUT_CACHE_DIR   cache for rootfs tarballs and .debs   (default /var/cache/ups-nut-smart)
#   DEBIAN_MIRROR       Debian mirror for debootstrap/apt     (default http://deb.debian.org/debian)
#   DEBIAN_SECURITY     security mirror written into images   (default http://deb.debian.org/debian-security)
#   DOCKERD_LOG         log file of a dockerd started here    (default /var/log/dockerd.log)
#   DOCKERD_ARGS        extra dockerd arguments, e.g. "--storage-driver=vfs" inside docker-in-docker
#   DOCKERD_WAIT        seconds to wait for dockerd           (default 60)
#   BASE_AMD64_TAG      amd64 base image tag                  (default debian:bookworm-slim)
#   BASE_ARM64_TAG      arm64 base image tag                  (default local/bookworm-slim:arm64)
#   BASE_ARMHF_TAG      arm/v7 base image tag                 (default local/bookworm-slim:armhf)
#   SKIP_ARM64=1        skip qemu/binfmt and the arm64 and arm/v7 base images
#   ENGINE_BASES        which base images: all (default), native (only the build machine's own:
#                       the engine is then ready for amd64 builds), foreign (only arm64 and arm/v7;
#                       dev.sh test makes these while the first lanes already run)
#   REBUILD_BASE=1      rebuild the base images even if present (reuses cached tarballs)
set -euo pipefail

CACHE_DIR=${UPS_NUT_CACHE_DIR:-/var/cache/ups-nut-smart}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_ARGS=${DOCKERD_ARGS:-}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}
BASE_AMD64_TAG=${BASE_AMD64_TAG:-debian:bookworm-slim}
BASE_ARM64_TAG=${BASE_ARM64_TAG:-local/bookworm-slim:arm64}
BASE_ARMHF_TAG=${BASE_ARMHF_TAG:-local/bookworm-slim:armhf}
SKIP_ARM64=${SKIP_ARM64:-0}
ENGINE_BASES=${ENGINE_BASES:-all}
case "$ENGINE_BASES" in all | native | foreign) ;; *) echo "ENGINE_BASES=$ENGINE_BASES: not all, native or foreign" >&2; exit 2 ;; esac
REBUILD_BASE=${REBUILD_BASE:-0}
SUITE=bookworm

TRIXIE_LIST=/etc/apt/sources.list.d/ups-nut-smart-trixie.list
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)

log() { printf '[docker-engine %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# step NAME CMD... : run CMD (under set -e), print how long it took; on failure the EXIT trap names the step.
CURRENT_STEP=""
STEP_T0=""
step() {
    CURRENT_STEP=$1; shift
    STEP_T0=$(date +%s.%N)
    log "-> $CURRENT_STEP"
    "$@"
    log "<- $CURRENT_STEP: $(elapsed "$STEP_T0") s"
    CURRENT_STEP=""
}

cleanup_trixie() {
    if [ -e "$TRIXIE_LIST" ]; then
        log "removing temporary trixie source $TRIXIE_LIST"
        rm -f "$TRIXIE_LIST"
        timeout 600 apt-get "${APT_OPTS[@]}" update >/dev/null 2>&1 ||
            log "WARNING: apt-get update after removing the trixie source failed; run it by hand"
    fi
}
WORK_TMP=""
# Why: debootstrap mounts proc inside the root it builds, and a run cut off mid-way (a timeout, a
# killed job) leaves that mount behind. A plain rm -rf would then walk into the host's /proc.
# Unmount what lies below the root (deepest first), and never cross into another file system.
drop_root() {
    local root=$1 mnt
    [ -n "$root" ] && [ -d "$root" ] || return 0
    while read -r mnt; do
        timeout 30 umount -l "$mnt" || log "WARNING: cannot unmount $mnt"
    done < <(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$root" "$root.log"
}
on_exit() {
    local rc=$?
    cleanup_trixie
    drop_root "$WORK_TMP"
    if [ "$rc" -ne 0 ]; then
        if [ -n "$CURRENT_STEP" ]; then
            log "FAILED: step '$CURRENT_STEP' (exit $rc) after $(elapsed "$STEP_T0") s"
        else
            log "docker-engine.sh failed (exit $rc)"
        fi
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --------------------------------------------------------------------------- checks
preflight() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    if [ -r /etc/os-release ]; then
        # shellcheck disable=SC1091
        . /etc/os-release
        if [ "${ID:-}" != debian ] || [ "${VERSION_CODENAME:-}" != bookworm ]; then
            log "WARNING: written for Debian 12 (bookworm); this is ${PRETTY_NAME:-unknown}"
        fi
    fi
    case "$(dpkg --print-architecture)" in
        amd64) ;;
        *) log "WARNING: host architecture is $(dpkg --print-architecture), not amd64; the 'amd64' base image will be of the host architecture" ;;
    esac
    mkdir -p "$CACHE_DIR"
    cleanup_trixie # left behind by an interrupted earlier run
}

# --------------------------------------------------------------------------- packages
BOOKWORM_PKGS=(docker.io debootstrap ca-certificates iptables procps tar)
if [ "$SKIP_ARM64" != 1 ]; then BOOKWORM_PKGS+=(qemu-user-static binfmt-support); fi

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

install_bookworm_pkgs() {
    local missing=() p
    for p in "${BOOKWORM_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "already installed: ${BOOKWORM_PKGS[*]}"
        return 0
    fi
    log "installing: ${missing[*]}"
    timeout 600 apt-get "${APT_OPTS[@]}" update || die "apt-get update failed"
    timeout 1200 apt-get "${APT_OPTS[@]}" install --no-install-recommends "${missing[@]}" ||
        die "apt-get install ${missing[*]} failed"
}

compose_ok() { timeout 20 docker compose version 2>/dev/null | grep -qE 'v?2\.'; }
buildx_ok() { timeout 20 docker buildx version >/dev/null 2>&1; }

install_compose_buildx() {
    local debdir="$CACHE_DIR/debs" cached=1
    mkdir -p "$debdir"
    if ! ls "$debdir"/docker-compose_*.deb >/dev/null 2>&1 || ! ls "$debdir"/docker-buildx_*.deb >/dev/null 2>&1; then
        cached=0
    fi
    # Why the .debs are kept even when compose and buildx are installed: the fleet tests put
    # them into their docker-in-docker Pis from this cache.
    if compose_ok && buildx_ok && [ "$cached" = 1 ]; then
        log "already there: $(docker compose version 2>/dev/null | head -1); $(docker buildx version 2>/dev/null | head -1)"
        return 0
    fi
    if [ "$cached" = 0 ]; then
        log "adding temporary trixie source to download docker-compose and docker-buildx"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR trixie main" >"$TRIXIE_LIST"
        timeout 600 apt-get "${APT_OPTS[@]}" update || die "apt-get update with the trixie source failed"
        rm -f "$debdir"/docker-compose_*.deb "$debdir"/docker-buildx_*.deb
        (cd "$debdir" && timeout 600 apt-get -q download docker-compose/trixie docker-buildx/trixie) ||
            die "apt-get download docker-compose/trixie docker-buildx/trixie failed"
        cleanup_trixie
    else
        log "using cached .debs in $debdir"
    fi
    timeout 300 dpkg -i "$debdir"/docker-compose_*.deb "$debdir"/docker-buildx_*.deb ||
        die "dpkg -i of trixie's docker-compose/docker-buildx failed"
    compose_ok || die "'docker compose version' does not report v2 after install"
    buildx_ok || die "'docker buildx version' fails after install"
    log "$(docker compose version | head -1); $(docker buildx version | head -1)"
}

# --------------------------------------------------------------------------- dockerd
docker_up() { timeout 20 docker info >/dev/null 2>&1; }

start_dockerd() {
    if docker_up; then
        log "dockerd already running (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        log "starting docker through systemd"
        timeout 120 systemctl start docker || log "WARNING: systemctl start docker failed; trying dockerd directly"
    fi
    local pid=""
    if ! docker_up; then
        if pgrep -x dockerd >/dev/null 2>&1; then
            log "a dockerd process exists but does not answer yet; waiting for it"
        else
            log "starting dockerd in the background (log: $DOCKERD_LOG)"
            mkdir -p "$(dirname "$DOCKERD_LOG")"
            echo "=== $(date -u +%FT%TZ) started by docker-engine.sh: dockerd $DOCKERD_ARGS" >>"$DOCKERD_LOG"
            # shellcheck disable=SC2086  # DOCKERD_ARGS is a word list on purpose
            setsid nohup dockerd $DOCKERD_ARGS >>"$DOCKERD_LOG" 2>&1 </dev/null &
            pid=$!
        fi
    fi
    local i
    for ((i = 0; i < DOCKERD_WAIT; i++)); do
        if docker_up; then
            log "dockerd answers after ${i}s${pid:+ (pid $pid)} (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd (pid $pid) exited; last lines of $DOCKERD_LOG:"
            tail -n 40 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "dockerd is not up"
        fi
        sleep 1
    done
    log "dockerd did not answer 'docker info' within ${DOCKERD_WAIT}s; last lines of $DOCKERD_LOG:"
    tail -n 40 "$DOCKERD_LOG" >&2 2>/dev/null || true
    die "dockerd is not up"
}

# --------------------------------------------------------------------------- qemu / binfmt
QEMU_TARGETS=(aarch64 arm)
binfmt_ok() { [ -r "/proc/sys/fs/binfmt_misc/qemu-$1" ] && head -1 "/proc/sys/fs/binfmt_misc/qemu-$1" | grep -qx enabled; }

setup_binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        log "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
            die "cannot mount binfmt_misc (a container without it cannot run arm binaries; set SKIP_ARM64=1)"
    fi
    local q
    for q in "${QEMU_TARGETS[@]}"; do
        if ! binfmt_ok "$q"; then
            log "registering qemu-$q with binfmt_misc"
            timeout 60 update-binfmts --import "qemu-$q" >/dev/null 2>&1 || true
            timeout 60 update-binfmts --enable "qemu-$q" || true
        fi
        binfmt_ok "$q" || die "qemu-$q is not registered in /proc/sys/fs/binfmt_misc (is qemu-user-static installed?)"
        # The F flag makes the kernel open the interpreter at registration, so it works inside containers/chroots.
        if ! grep -q '^flags:.*F' "/proc/sys/fs/binfmt_misc/qemu-$q"; then
            log "WARNING: qemu-$q is registered without the F (fix-binary) flag; its containers may fail to exec"
        fi
        log "qemu-$q: $(grep -E '^(interpreter|flags)' "/proc/sys/fs/binfmt_misc/qemu-$q" | tr '\n' ' ')"
    done
}

# --------------------------------------------------------------------------- base images
# Make a slim-style rootfs tarball (cached): debootstrap minbase, docker-style dpkg/apt config.
make_rootfs_tar() {
    local arch=$1 out=$2
    if [ -s "$out" ]; then
        log "using cached rootfs $out ($(du -h "$out" | cut -f1))"
        return 0
    fi
    local root
    root=$(mktemp -d "$CACHE_DIR/rootfs-$arch.XXXXXX")
    WORK_TMP=$root
    log "debootstrap --arch=$arch --variant=minbase $SUITE (this takes a minute or two)"
    if ! timeout 1800 debootstrap --arch="$arch" --variant=minbase "$SUITE" "$root" "$DEBIAN_MIRROR" \
        >"$root.log" 2>&1; then
        tail -n 30 "$root.log" >&2 || true
        [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
        die "debootstrap for $arch failed (full log: $root.log)"
    fi
    rm -f "$root.log"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $DEBIAN_SECURITY $SUITE-security main
EOF
    # Same trimming the official slim images do: no docs/man/locales from later installs, no apt caches.
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
    echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/usr/share/doc/*/changelog* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright -type f -delete 2>/dev/null || true
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    : >"$root/etc/machine-id" 2>/dev/null || true
    rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
    # Why: mktemp made the root 0700, and the tarball's "./" entry carries that mode. Storage
    # drivers that apply it (vfs) then give every container a / that only root can enter.
    chmod 0755 "$root"
    tar --numeric-owner --xattrs -C "$root" -cf "$out.tmp" . || die "tar of $arch rootfs failed"
    mv "$out.tmp" "$out"
    drop_root "$root"
    WORK_TMP=""
    log "rootfs $out: $(du -h "$out" | cut -f1)"
}

# The image's architecture with its variant, as a platform names it: amd64, arm64, arm/v7.
rootfs_tar() { echo "$CACHE_DIR/$SUITE-minbase-$1-r2.tar"; }  # r2: root dir 0755

# The rootfs tarballs that are missing, made side by side: a foreign debootstrap's second
# stage runs under qemu on one core for minutes, so two of them at once take little longer
# than one. Each writes its own log; a failure names the architecture.
rootfs_tarballs() {
    local arch pids=() arches=() failed=() i stale
    # Why: a run killed outright (SIGKILL) runs no trap; its half-built roots, mounts and all,
    # would stay in the cache for good. Two hours is well past debootstrap's own 30 min timeout,
    # so no live run's root is taken.
    while read -r stale; do
        log "removing a half-built root left by an earlier run: $stale"
        drop_root "$stale"
    done < <(find "$CACHE_DIR" -maxdepth 1 -type d -name 'rootfs-*.*' -mmin +120 2>/dev/null)
    for arch in "$@"; do
        [ -s "$(rootfs_tar "$arch")" ] && continue
        # Why its own traps: a subshell does not inherit the EXIT trap, so its root would be left.
        (
            trap 'drop_root "$WORK_TMP"' EXIT
            trap 'exit 143' TERM HUP
            make_rootfs_tar "$arch" "$(rootfs_tar "$arch")"
        ) &
        pids+=("$!")
        arches+=("$arch")
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=("${arches[$i]}")
    done
    [ "${#failed[@]}" -eq 0 ] || die "debootstrap failed for: ${failed[*]}"
}

image_arch() { docker image inspect --format '{{.Architecture}}{{with index . "Variant"}}/{{.}}{{end}}' "$1" 2>/dev/null || true; }

base_amd64() {
    local have
    have=$(image_arch "$BASE_AMD64_TAG")
    if [ -n "$have" ] && [ "$REBUILD_BASE" != 1 ]; then
        log "$BASE_AMD64_TAG present (architecture $have)"
        return 0
    fi
    local arch
    arch=$(dpkg --print-architecture)
    local tarball
    tarball=$(rootfs_tar "$arch")
    make_rootfs_tar "$arch" "$tarball"
    timeout 600 docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tarball" "$BASE_AMD64_TAG" >/dev/null || die "docker import $tarball failed"
    log "$BASE_AMD64_TAG imported (architecture $(image_arch "$BASE_AMD64_TAG"))"
}

# base_foreign DEB_ARCH PLATFORM TAG UNAME: a base image for another CPU, labelled with its
# platform (docker import would label it amd64, and buildx would then try to pull).
base_foreign() {
    local deb_arch=$1 platform=$2 tag=$3 uname_m=$4 have
    have=$(image_arch "$tag")
    if [ "$have" = "${platform#linux/}" ] && [ "$REBUILD_BASE" != 1 ]; then
        log "$tag present ($platform)"
        return 0
    fi
    [ -z "$have" ] || log "$tag exists as '$have'; rebuilding"
    local tarball
    tarball=$(rootfs_tar "$deb_arch")
    make_rootfs_tar "$deb_arch" "$tarball"
    local ctx
    ctx=$(mktemp -d "$CACHE_DIR/ctx-$deb_arch.XXXXXX")
    WORK_TMP=$ctx
    ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["bash"]
EOF
    timeout 900 docker buildx build --platform "$platform" -t "$tag" --load "$ctx" ||
        die "docker buildx build of $tag failed"
    rm -rf "$ctx"
    WORK_TMP=""
    have=$(image_arch "$tag")
    [ "$have" = "${platform#linux/}" ] || die "$tag is '$have', expected ${platform#linux/}"
    local m
    m=$(timeout 120 docker run --rm --platform "$platform" "$tag" uname -m) ||
        die "cannot run $tag under qemu"
    [ "$m" = "$uname_m" ] || die "$tag: uname -m printed '$m', expected $uname_m"
    log "$tag built ($platform, uname -m: $m)"
}

# --------------------------------------------------------------------------- main
T_ALL=$(date +%s.%N)
step "preflight" preflight
step "bookworm packages" install_bookworm_pkgs
step "dockerd" start_dockerd
step "compose v2 + buildx" install_compose_buildx
if [ "$SKIP_ARM64" != 1 ]; then step "binfmt qemu-aarch64 qemu-arm" setup_binfmt; fi
# have TAG PLATFORM: the base image is there, for that platform, and no rebuild is asked for.
have() { [ "$REBUILD_BASE" != 1 ] && [ "$(image_arch "$1")" = "$2" ]; }
NATIVE=1 FOREIGN=1
[ "$ENGINE_BASES" != foreign ] || NATIVE=0
[ "$ENGINE_BASES" != native ] && [ "$SKIP_ARM64" != 1 ] || FOREIGN=0
MISSING_ROOTFS=()
if [ "$NATIVE" = 1 ]; then
    have "$BASE_AMD64_TAG" "$(dpkg --print-architecture)" || MISSING_ROOTFS+=("$(dpkg --print-architecture)")
fi
if [ "$FOREIGN" = 1 ]; then
    have "$BASE_ARM64_TAG" arm64 || MISSING_ROOTFS+=(arm64)
    have "$BASE_ARMHF_TAG" arm/v7 || MISSING_ROOTFS+=(armhf)
fi
if [ "${#MISSING_ROOTFS[@]}" -gt 1 ]; then
    step "rootfs tarballs ${MISSING_ROOTFS[*]} (side by side)" rootfs_tarballs "${MISSING_ROOTFS[@]}"
fi
if [ "$NATIVE" = 1 ]; then step "base image $BASE_AMD64_TAG" base_amd64; fi
if [ "$FOREIGN" = 1 ]; then
    step "base image $BASE_ARM64_TAG" base_foreign arm64 linux/arm64 "$BASE_ARM64_TAG" aarch64
    step "base image $BASE_ARMHF_TAG" base_foreign armhf linux/arm/v7 "$BASE_ARMHF_TAG" armv7l
fi
log "engine ready in $(elapsed "$T_ALL") s: $(docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}' 2>/dev/null)"
