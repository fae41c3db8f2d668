#!/bin/sh
# Map Docker's target platform (TARGETARCH, TARGETVARIANT) to Debian's architecture and GNU
# triplet, printed as shell assignments for `eval`:
#   DEB_ARCH=arm64 GNU_TYPE=aarch64-linux-gnu
#
# Usage: cross-target.sh TARGETARCH [TARGETVARIANT]
#
# Only the platforms we build and test are known; anything else fails here, naming it, so a
# typo in --platform never produces a binary for the wrong CPU.
set -eu
arch=${1:-}
variant=${2:-}
case "$arch/$variant" in
    amd64/ | amd64/v1 | amd64/v2 | amd64/v3) echo "DEB_ARCH=amd64 GNU_TYPE=x86_64-linux-gnu" ;;
    arm64/ | arm64/v8) echo "DEB_ARCH=arm64 GNU_TYPE=aarch64-linux-gnu" ;;
    # Why v7 and not v6: Debian's armhf is built for ARMv7 with VFPv3-D16, so its libc and
    # libusb do not run on an ARMv6 Pi (Pi 1, Zero, Zero W); those need a different distribution.
    arm/v7 | arm/) echo "DEB_ARCH=armhf GNU_TYPE=arm-linux-gnueabihf" ;;
    arm/v6)
        echo "cross-target.sh: linux/arm/v6 (Pi 1, Zero, Zero W) is not supported: Debian's armhf needs ARMv7" >&2
        exit 1
        ;;
    *)
        echo "cross-target.sh: unsupported target platform '$arch${variant:+/$variant}' (known: amd64, arm64, arm/v7)" >&2
        exit 1
        ;;
esac
