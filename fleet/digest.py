"""What the container was created from, as one digest: its compose.yaml, .env, config.toml
and secrets files. The rollout writes it into the container's labels (LABEL), so that what
runs can be told from what is on disk: compose's own config hash covers neither the
agent's config.toml (a bind mount) nor the secrets' content.

The same digest is computed in Python from the wanted files (`of`) and on the host from
the live project dir (`SHELL`, pyinfra fact FilesDigest): one line per file, as
`sha256sum` prints it, compose.yaml first without its label line (the label cannot hold
its own digest), then .env, config.toml, and secrets/<name> in byte order; the digest is
the SHA-256 of those lines. Only digests leave the host, never a secret.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from typing import Any

LABEL = "ups-nut-smart.files"
_LABEL_LINE = f'"{LABEL}"'  # how the label line is told (the yaml filter writes JSON)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def without_label(compose: str) -> str:
    return "".join(line for line in compose.splitlines(keepends=True) if _LABEL_LINE not in line)


def of(files: Mapping[str, str], secrets: Mapping[str, str]) -> str:
    """The digest of the project dir that holds `files` (compose.yaml, .env, config.toml)
    and the secrets files `secrets` (name -> content)."""
    lines = [f"{_sha(without_label(files['compose.yaml']))}  -\n"]
    lines += [f"{_sha(files[name])}  {name}\n" for name in (".env", "config.toml")]
    lines += [f"{_sha(secrets[name])}  secrets/{name}\n" for name in sorted(secrets)]
    return _sha("".join(lines))


def label_of(container: Any) -> str | None:
    """The digest a container was created from (its LABEL), from pyinfra's DockerContainer
    fact (a list: empty when there is no container), or None."""
    if not container:
        return None
    labels = (container[0].get("Config") or {}).get("Labels") or {}
    found = labels.get(LABEL)
    return found if isinstance(found, str) else None


def shell(project_dir: str) -> str:
    """A command that prints the digest of the live project dir, or nothing when it holds
    no deployment (no compose.yaml). Why LC_ALL=C: the glob's order is then byte order,
    as Python's sorted() of ASCII names."""
    here = shlex.quote(project_dir)
    return (
        f"cd {here} 2>/dev/null && [ -f compose.yaml ] && export LC_ALL=C && {{"
        f" grep -vF '{_LABEL_LINE}' compose.yaml | sha256sum;"
        " sha256sum .env config.toml;"
        ' set -- secrets/*; if [ -f "$1" ]; then sha256sum "$@"; fi;'
        " } 2>/dev/null | sha256sum | cut -c1-64 || true"
    )
