#!/usr/bin/env python3
"""Generate sample/layout/: a small OCI image layout, the same bytes on every run.

Images (ref names as skopeo's `oci:` transport expects them):

  openshift/php:5.5     one platform (linux/amd64): base layer + php 5.5 layer
  openshift/php:5.6     one platform (linux/amd64): base layer + php 5.6 layer
  library/busybox:1.36  OCI index: linux/amd64 and linux/arm64, each base + busybox

Every image shares the same base layer blob. File contents come from SHA-256 in
counter mode, tar headers have fixed owner, mode and mtime, and gzip is written
without a name or timestamp, so two runs give identical bytes (check with
`sha256sum`). Python 3 standard library only.

Usage: scripts/make-sample.py [OUTPUT_DIR]   (default: sample/layout in the repo)
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def pseudo_random(label, size):
    """Deterministic incompressible bytes: SHA-256 of label and a counter."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def layer(files):
    """A gzip'd tar of `files` ({path: bytes}) with parent directories; returns (gz, tar)."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        parts = [path.split("/")[:-1] for path in files]
        dirs = sorted({"/".join(p[: i + 1]) for p in parts for i in range(len(p))})
        for d in dirs:
            info = tarfile.TarInfo(d + "/")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = MTIME
            info.uname = info.gname = "root"
            tar.addfile(info)
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o755 if path.startswith(("bin/", "usr/local/bin/")) else 0o644
            info.mtime = MTIME
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    raw = tar_buf.getvalue()
    gz_buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz_buf, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    return gz_buf.getvalue(), raw


class Layout:
    """Writes blobs into an OCI layout directory and returns their descriptors."""

    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"))

    def blob(self, data, media_type, **extra):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.root, "blobs", "sha256", digest)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
        desc.update(extra)
        return desc

    def json_blob(self, obj, media_type, **extra):
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        return self.blob(data, media_type, **extra)

    def image(self, layers, arch, cmd, variant=None):
        """Config + manifest for `layers` [(gz, tar)]; returns the manifest descriptor."""
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        config = dict(platform)
        config.update({
            "created": CREATED,
            "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
            "rootfs": {"type": "layers",
                       "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest() for _, raw in layers]},
            "history": [{"created": CREATED, "created_by": "scripts/make-sample.py"} for _ in layers],
        })
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.json_blob(config, OCI_CONFIG),
            "layers": [self.blob(gz, OCI_LAYER_GZIP) for gz, _ in layers],
        }
        return self.json_blob(manifest, OCI_MANIFEST, platform=platform)

    def index(self, manifests):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.json_blob(index, OCI_INDEX)

    def finish(self, refs):
        """Writes oci-layout and index.json with one entry per (ref name, descriptor)."""
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        manifests = []
        for name, desc in refs:
            entry = {k: v for k, v in desc.items() if k != "platform"}
            entry["annotations"] = {REF_NAME: name}
            manifests.append(entry)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        with open(os.path.join(self.root, "index.json"), "w") as f:
            f.write(json.dumps(index, separators=(",", ":"), sort_keys=True))


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo, "sample", "layout")
    if os.path.exists(out):
        shutil.rmtree(out)
    lay = Layout(out)

    base = layer({
        "etc/os-release": b'NAME="bundle sample"\nID=sample\nVERSION_ID=1\n',
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        "usr/share/sample/base.bin": pseudo_random("base", 48 * 1024),
    })

    def php(version):
        return layer({
            "usr/local/bin/php": f"#!/bin/sh\necho 'PHP {version} (sample)'\n".encode(),
            f"usr/local/lib/php/{version}.bin": pseudo_random(f"php-{version}", 24 * 1024),
        })

    def busybox(arch):
        return layer({"bin/busybox": pseudo_random(f"busybox-{arch}", 16 * 1024)})

    php55 = lay.image([base, php("5.5")], "amd64", ["php"])
    php56 = lay.image([base, php("5.6")], "amd64", ["php"])
    busybox_index = lay.index([
        lay.image([base, busybox("amd64")], "amd64", ["sh"]),
        lay.image([base, busybox("arm64")], "arm64", ["sh"], variant="v8"),
    ])
    lay.finish([
        ("openshift/php:5.5", php55),
        ("openshift/php:5.6", php56),
        ("library/busybox:1.36", busybox_index),
    ])


if __name__ == "__main__":
    main()
