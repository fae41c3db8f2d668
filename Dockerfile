# ups-nut-smart: Network UPS Tools + the nut-reconcile agent.
#
# Platforms: linux/amd64, linux/arm64 (64-bit Pi OS), linux/arm/v7 (32-bit Pi OS). NUT is
# compiled on the build machine's own platform: natively on a Pi or for amd64 on a PC, and
# cross-compiled (Debian's crossbuild-essential-<arch>, the target's libusb and libltdl
# through multiarch, configure --host) when the target is another CPU. Only the runtime
# stages (the target's base image, its packages, NUT copied in) run under qemu.
#
# Build arguments:
#   BASE_IMAGE   Debian 12 base image of the target (default debian:bookworm-slim; offline,
#                pass one labelled with the target's platform, e.g. local/bookworm-slim:arm64
#                or local/bookworm-slim:armhf from docker/engine-setup.sh)
#   BUILD_BASE_IMAGE  Debian 12 image of the *build* machine's platform, for the stages that
#                never run under qemu: NUT's download and compile, the pure-Python install
#                (default debian:bookworm-slim). Must be the same Debian release as
#                BASE_IMAGE (the compiled NUT links against its libc and libusb).
#   NUT_SOURCE   tarball (default): build NUT ${NUT_VERSION} from the release tarball
#                debian:  offline variant, Debian's nut-server/nut-client packages (NUT 2.8.0)
#   NUT_VERSION / NUT_SHA256   release and its SHA-256 (override together)
#   NUT_URL      optional download URL of the tarball (default: the networkupstools.org release URL)
#
# Both variants give the same layout: /opt/nut/{bin,sbin,etc,share/nut/62-nut-usbups.rules}.
#
#   docker buildx build --platform linux/amd64 -t ups-nut-smart:latest --load .
#   docker buildx build --platform linux/arm64 -t ups-nut-smart:latest --load .
#   docker buildx build --platform linux/arm/v7 -t ups-nut-smart:latest --load .
#   docker buildx build --platform linux/amd64 --build-arg NUT_SOURCE=debian -t ups-nut-smart:latest --load .
#   docker buildx build --platform linux/arm64 --build-arg BASE_IMAGE=local/bookworm-slim:arm64 \
#       --build-arg NUT_SOURCE=debian -t ups-nut-smart:arm64 --load .

ARG BASE_IMAGE=debian:bookworm-slim
ARG BUILD_BASE_IMAGE=debian:bookworm-slim
ARG NUT_SOURCE=tarball

# --------------------------------------------------------------------------------------------
# base: Python and the agent's runtime dependencies, all from Debian (no PyPI inside images).
FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/nut/sbin:/opt/nut/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-usb python3-jinja2 python3-prometheus-client \
        apprise python3-paho-mqtt python3-schedule \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log

# --------------------------------------------------------------------------------------------
# nut-tarball: the release tarball, fetched and checked. Runs on the build machine's platform,
# so one download serves the amd64, arm64 and arm/v7 builds alike. Why NUT_URL may point at a
# fixed loopback address (the tests do): BuildKit keys this step on its arguments, so the same
# URL and SHA-256 hit the cache on the next run (a random port never would).
FROM --platform=$BUILDPLATFORM ${BUILD_BASE_IMAGE} AS nut-tarball
ARG NUT_VERSION=2.8.4
ARG NUT_SHA256=0130ba82ea79f04ba4f34c5249a85943977efd984ed7df6aec1a518d5a3594f8
ARG NUT_URL=
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
RUN set -eu; \
    url="${NUT_URL:-https://www.networkupstools.org/source/${NUT_VERSION%.*}/nut-${NUT_VERSION}.tar.gz}"; \
    echo "fetching $url"; \
    curl -fsSL --retry 3 --connect-timeout 30 --max-time 900 -o nut.tar.gz "$url"; \
    got=$(sha256sum nut.tar.gz | cut -d' ' -f1); \
    if [ "$got" != "$NUT_SHA256" ]; then \
        echo "SHA-256 mismatch for $url: got $got, expected $NUT_SHA256" >&2; exit 1; \
    fi; \
    mkdir src; \
    tar -xzf nut.tar.gz -C src --strip-components=1; \
    rm nut.tar.gz

# --------------------------------------------------------------------------------------------
# nut-build: NUT compiled on the build machine's platform with Debian's cross compiler for the
# target (TARGETARCH/TARGETVARIANT from --platform) and the target's libusb and libltdl through
# multiarch. Nothing here runs under emulation: only the runtime stages below do.
# (Only built when NUT_SOURCE=tarball.)
FROM --platform=$BUILDPLATFORM ${BUILD_BASE_IMAGE} AS nut-build
ARG TARGETARCH
ARG TARGETVARIANT
ENV DEBIAN_FRONTEND=noninteractive
COPY docker/cross-target.sh /usr/local/bin/cross-target.sh
# Why one script picks the toolchain: the Debian architecture (arm64, armhf) and the GNU
# triplet (aarch64-linux-gnu, arm-linux-gnueabihf) follow from Docker's platform name, and a
# platform we have no toolchain for must fail here, not as a wrong binary later.
RUN set -eu; \
    # Why the assignment first: a failing command substitution inside eval would be ignored.
    target=$(sh /usr/local/bin/cross-target.sh "${TARGETARCH}" "${TARGETVARIANT}"); \
    eval "$target"; \
    build_arch=$(dpkg --print-architecture); \
    if [ "$DEB_ARCH" != "$build_arch" ]; then \
        dpkg --add-architecture "$DEB_ARCH"; \
        compilers="crossbuild-essential-$DEB_ARCH"; \
    else \
        compilers="build-essential"; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $compilers pkg-config \
        "libusb-1.0-0-dev:$DEB_ARCH" "libltdl-dev:$DEB_ARCH"; \
    rm -rf /var/lib/apt/lists/*
COPY --from=nut-tarball /build/src /build/src
COPY docker/build-nut.sh /usr/local/bin/build-nut.sh
RUN set -eu; \
    target=$(sh /usr/local/bin/cross-target.sh "${TARGETARCH}" "${TARGETVARIANT}"); \
    eval "$target"; \
    NUT_HOST="$GNU_TYPE" bash /usr/local/bin/build-nut.sh /build/src

# --------------------------------------------------------------------------------------------
# runtime-tarball: NUT built above plus its run-time libraries.
FROM base AS runtime-tarball
RUN apt-get update \
 && apt-get install -y --no-install-recommends libusb-1.0-0 libltdl7 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
 && (getent group nut >/dev/null || groupadd --system nut) \
 && (getent passwd nut >/dev/null || useradd --system --gid nut --home-dir /var/lib/nut \
        --no-create-home --shell /usr/sbin/nologin nut)
COPY --from=nut-build /opt/nut /opt/nut
RUN echo /opt/nut/lib >/etc/ld.so.conf.d/nut.conf && ldconfig
LABEL io.ups-nut-smart.nut-source="tarball"

# --------------------------------------------------------------------------------------------
# runtime-debian: offline variant, Debian's NUT packages with the /opt/nut layout as symlinks
# (to the real binaries: /sbin/upsd and /sbin/upsmon are Debian's nut.conf-checking wrappers).
# Debian's stock config files become *.sample, as in the tarball build: the agent writes its own.
FROM base AS runtime-debian
RUN apt-get update \
 && apt-get install -y --no-install-recommends nut-server nut-client \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
RUN set -eu; \
    mkdir -p /opt/nut/bin /opt/nut/sbin /opt/nut/share/nut; \
    for p in upsc upscmd upsrw upslog nut-scanner upssched-cmd; do \
        if [ -x "/bin/$p" ]; then ln -s "/bin/$p" "/opt/nut/bin/$p"; fi; \
    done; \
    for d in /lib/nut/*; do \
        case "${d##*/}" in upsd|upsmon) continue ;; esac; \
        ln -s "$d" "/opt/nut/bin/${d##*/}"; \
    done; \
    ln -s /lib/nut/upsd /opt/nut/sbin/upsd; \
    ln -s /lib/nut/upsmon /opt/nut/sbin/upsmon; \
    ln -s /sbin/upsdrvctl /opt/nut/sbin/upsdrvctl; \
    ln -s /sbin/upssched /opt/nut/sbin/upssched; \
    ln -s /etc/nut /opt/nut/etc; \
    for f in /etc/nut/*.conf /etc/nut/upsd.users; do \
        if [ -f "$f" ]; then mv "$f" "$f.sample"; fi; \
    done; \
    ln -s /lib/udev/rules.d/62-nut-usbups.rules /opt/nut/share/nut/62-nut-usbups.rules
LABEL io.ups-nut-smart.nut-source="debian"

# --------------------------------------------------------------------------------------------
# pybuild: installs the project with Debian's pip, offline, into /staging (pip and setuptools
# stay in this throwaway stage). Pure Python, so it runs on the build machine's own platform.
FROM --platform=$BUILDPLATFORM ${BUILD_BASE_IMAGE} AS pybuild
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-setuptools python3-wheel \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip install --root /staging --break-system-packages --no-deps --no-build-isolation \
        --no-index --no-cache-dir --no-warn-script-location . \
 && test -x /staging/usr/local/bin/nut-reconcile \
 && test -x /staging/usr/local/bin/nut-reconcile-notify

# --------------------------------------------------------------------------------------------
# final: whichever runtime NUT_SOURCE selects (BuildKit skips the unused stages).
FROM runtime-${NUT_SOURCE} AS final
COPY --from=pybuild /staging/ /
# The HEALTHCHECK (below): a POSIX sh script that reads the verdict the agent records.
COPY docker/nut-health.sh /usr/local/bin/nut-health
# The image's OpenVEX statements (docs/security.md): CVE-2026-54161 in NUT 2.8.4's upsmon.
COPY docker/ups-nut-smart.openvex.json /usr/share/doc/ups-nut-smart/ups-nut-smart.openvex.json
RUN set -eu; \
    if [ ! -e /opt/nut/bin/upsdrvctl ]; then ln -s ../sbin/upsdrvctl /opt/nut/bin/upsdrvctl; fi; \
    # NUT's state dir: group nut may write (upsd runs as nut); setgid, so driver sockets are group nut.
    install -d -o root -g nut -m 2770 /var/run/nut; \
    # The agent's own state (names, generated credentials, process records): root only, never in NUT's.
    install -d -o root -g root -m 0700 /var/lib/nut-reconcile; \
    install -d -o root -g root -m 0750 /var/log/nut; \
    # upssched: a [[device]] rule's on_battery_max_seconds (the relay runs it).
    for b in /opt/nut/sbin/upsd /opt/nut/sbin/upsmon /opt/nut/sbin/upsdrvctl /opt/nut/sbin/upssched /opt/nut/bin/upsc \
             /opt/nut/bin/nut-scanner /opt/nut/bin/usbhid-ups /opt/nut/bin/dummy-ups; do \
        [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }; \
    done; \
    test -s /opt/nut/share/nut/62-nut-usbups.rules; \
    /opt/nut/sbin/upsd -V; \
    nut-reconcile --version; \
    # upsmon's NOTIFYCMD (reconcile/outputs/relay.py): the path the agent writes into upsmon.conf
    # is this script's, and it runs (no agent listens here: it says where it looked, exit 0).
    test "$(python3 -c 'from reconcile.settings import notify_program; print(notify_program())')" \
        = /usr/local/bin/nut-reconcile-notify; \
    NUT_STATEPATH=/nonexistent /usr/local/bin/nut-reconcile-notify "image build check" 2>&1 \
        | grep -qx "nut-reconcile-notify: cannot reach the agent at /nonexistent/nut-reconcile-notify.sock: .*"; \
    # Why a run here: the check needs this image's sh and find (GNU -newermt), on every platform.
    chmod 0755 /usr/local/bin/nut-health; \
    echo "healthy: built" >/tmp/nut-health-check; \
    HEALTH_FILE=/tmp/nut-health-check /usr/local/bin/nut-health; \
    rm /tmp/nut-health-check
LABEL org.opencontainers.image.title="ups-nut-smart" \
      org.opencontainers.image.description="Network UPS Tools with a self-healing reconcile agent" \
      io.ups-nut-smart.openvex="/usr/share/doc/ups-nut-smart/ups-nut-smart.openvex.json"
EXPOSE 3493
# NUT's state dir (/var/run/nut: sockets, PID files) is rebuilt at every start: compose.yaml
# puts it on a tmpfs. What must survive a restart is the agent's dir and the log.
VOLUME ["/var/lib/nut-reconcile", "/var/log/nut"]
STOPSIGNAL SIGTERM
# Why not `nut-reconcile health`: a Python start every 30 s was most of the idle container's
# CPU. nut-health starts a shell and one find: it reads the verdict `run` records at every
# tick (the same checks: upsd answers, every UPS on the bus has fresh data, the shutdown
# path is whole) and fails when that is older than HEALTH_MAX_AGE (the loop is stuck).
# `nut-reconcile health` stays, for people: it checks live, with a pass of its own.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["/usr/local/bin/nut-health"]
ENTRYPOINT ["nut-reconcile"]
CMD ["run"]
