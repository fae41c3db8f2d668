"""Build time of the default image (NUT 2.8.4 from source) for each platform, cold and
warm, next to the design before cross-compiling: NUT compiled for arm64 under qemu.

Cold: `--no-cache`, so every stage runs (the base images are local and already there; the
Debian packages come from the mirror each time). Warm: the same build again, unchanged
tree: what a rebuild costs when nothing changed. The emulated build is the tree as it was
at EMULATED_COMMIT (git archive), built the same way. Its /opt/nut is compared with the
cross build's, file by file.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.markdown import minutes, table
from testbed import REPO
from testbed.docker import docker
from testbed.images import BUILD_TIMEOUT, TARGETS, Target, build, source_served

EMULATED_COMMIT = "2592666"  # the last tree that compiled NUT under qemu for arm64
EMULATED_TAG = "ups-nut-smart:emulated-arm64"


def _build(tag: str, target: Target, context: Path, args: list[str], cold: bool) -> float:
    # Why 2x the tests' limit: a cold emulated compile on a busy 2-core machine took 27 min.
    fresh = ["--no-cache"] if cold else []
    done = build(tag, target, *fresh, *args, context=context, timeout=2 * BUILD_TIMEOUT).seconds
    print(f"  {tag} {'cold' if cold else 'warm'}: {done:.0f} s", flush=True)
    return done


def _files(tag: str, platform: str) -> set[str]:
    listing = "cd /opt/nut && find . -printf '%y %p\\n'"
    run = ["run", "--rm", "--platform", platform, "--entrypoint", "sh", tag, "-c", listing]
    out = docker(*run, timeout=300).stdout
    return set(out.splitlines()) - {""}


def _emulated_tree(folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", EMULATED_COMMIT], capture_output=True, timeout=120, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, timeout=120, check=True)
    return folder


def run(emulated: bool = True) -> dict[str, Any]:
    """Cold and warm seconds per platform (and for the emulated arm64 build), and the
    files only one of the two arm64 builds installs. The emulated build goes first: it is
    the long one, and the comparison needs it."""
    results: dict[str, Any] = {"cross": {}}
    arm64 = TARGETS["arm64"]
    with source_served() as args:
        if emulated:
            with tempfile.TemporaryDirectory(prefix="ups-nut-smart-emulated-") as tmp:
                tree = _emulated_tree(Path(tmp))
                cold = _build(EMULATED_TAG, arm64, tree, args, cold=True)
                warm = _build(EMULATED_TAG, arm64, tree, args, cold=False)
            results["emulated_arm64"] = {"cold": cold, "warm": warm, "commit": EMULATED_COMMIT}
        for key, target in TARGETS.items():
            tag = "ups-nut-smart:source" if key == "amd64" else f"ups-nut-smart:source-{key}"
            cold = _build(tag, target, REPO, args, cold=True)
            warm = _build(tag, target, REPO, args, cold=False)
            results["cross"][key] = {"cold": cold, "warm": warm}
        if emulated:
            cross, old = _files("ups-nut-smart:source-arm64", arm64.platform), _files(EMULATED_TAG, arm64.platform)
            results["files"] = {
                "both": len(cross & old),
                "only_cross": sorted(cross - old),
                "only_emulated": sorted(old - cross),
            }
            print(f"  /opt/nut: {results['files']}", flush=True)
    return results


HEAD = """## Build time

The default image for each platform, on this machine: NUT compiled on the build machine's
own platform (cross-compiled for arm64 and arm/v7 with Debian's cross compilers), only the
runtime stage (the base image's package installs, NUT copied in) under qemu.

"""


def render(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on build time."""
    builds = r.get("builds")
    if not builds:
        return HEAD + "Not measured in this run (`python -m benchmarks --only builds`).\n\n"
    rows = [["image (NUT 2.8.4 from source)", "cold (--no-cache)", "warm (unchanged tree)"]]
    for key, t in builds["cross"].items():
        how = "native" if key == "amd64" else "cross-compiled, runtime stage under qemu"
        rows.append([f"{key} ({how})", minutes(t["cold"]), minutes(t["warm"])])
    emulated = builds.get("emulated_arm64")
    text = ""
    if emulated:
        rows.append(
            [
                f"arm64, NUT compiled under qemu (the tree at {emulated['commit']})",
                minutes(emulated["cold"]),
                minutes(emulated["warm"]),
            ]
        )
        files = builds["files"]
        differ = "; ".join(
            f"only in the {which} build: {', '.join(files[key]) or 'nothing'}"
            for which, key in (("cross", "only_cross"), ("emulated", "only_emulated"))
        )
        text = (
            f"\n\nWhat the two arm64 builds install under /opt/nut, compared path by path: "
            f"{files['both']} paths in both; {differ}."
        )
    return HEAD + table(rows) + text + "\n\n"
