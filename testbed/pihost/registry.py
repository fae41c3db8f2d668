"""A pull-only container registry for the fleet tests (no registry is reachable here).

    python3 registry.py IMAGE.tar PORT

Serves the image of a `docker save` archive over the registry HTTP API v2 on 127.0.0.1:PORT
(a Pi's own loopback: Docker treats 127.0.0.0/8 registries as plain HTTP), under every
repository name and tag it is asked for: /v2/, manifests (schema 2, layers gzipped on
start) and blobs by digest. Enough for `docker pull` and `docker manifest inspect`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import tarfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def load(archive: str) -> tuple[bytes, dict[str, bytes]]:
    """(manifest, blobs by digest) of the first image in a `docker save` archive."""
    blobs: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None, name
            return member.read()

        entry = json.loads(read("manifest.json"))[0]
        config = read(entry["Config"])
        layers = []
        for name in entry["Layers"]:
            blob = gzip.compress(read(name), compresslevel=1, mtime=0)
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            blobs[digest] = blob
            layers.append(
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(blob), "digest": digest}
            )
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    blobs[config_digest] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": layers,
    }
    return json.dumps(manifest).encode(), blobs


def serve(archive: str, port: int) -> None:
    manifest, blobs = load(archive)
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: bytes, content_type: str, digest: str | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/v2", "/v2/"):
                self._send(b"{}", "application/json")
            elif "/manifests/" in path:
                self._send(manifest, MANIFEST, manifest_digest)
            elif "/blobs/" in path and path.rsplit("/", 1)[-1] in blobs:
                digest = path.rsplit("/", 1)[-1]
                self._send(blobs[digest], "application/octet-stream", digest)
            else:
                self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
