#!/usr/bin/env python3
"""Generate the benchmark profile: one OCI image layout holding every image.

Usage: bench/gen_profile.py OUT_DIR [--scale S] [--jobs N]

Writes:
  OUT_DIR/layout/      an OCI image layout (blobs deduplicated), index.json with
                       org.opencontainers.image.ref.name = "<repo>:<tag>"
  OUT_DIR/push.txt     one line per tag: "<repo>:<tag> <mode>", mode one of
                         oci       plain `skopeo copy`           (OCI manifest)
                         v2s2      `--format v2s2`               (Docker schema2)
                         oci-all   `--all`                       (OCI index)
                         v2s2-all  `--all --format v2s2`         (Docker manifest list)
  OUT_DIR/profile.json a summary (counts and sizes)

The shape (independent of --scale, which only scales byte sizes; at 1.0 the
unique layer bytes are 2 GiB):

  * 40 repositories, 3 tags each (120 tags); in 1 of 4 repositories the third
    tag is `latest`, an alias of the second (same manifest).
  * 4 "distributions" (base images) per platform, one or two base layers each,
    shared by every repository built on them.
  * per repository a runtime layer shared by its tags, per tag 1-3 app layers,
    some tiny (a few KiB), some tens of MiB.
  * 10 repositories are multi-arch (2 or 3 platforms: amd64, arm64, s390x),
    each platform with its own layers; pushed as OCI indexes or Docker
    manifest lists.
  * about half the images are pushed as Docker schema2 (`--format v2s2`).

Layers are real tar archives of pseudo-random file contents, compressed with
`gzip -1 -n` (incompressible, like real layers). Contents come from
random.Random seeded per layer, so the same profile version and scale give the
same bytes on every run. Python 3 standard library and gzip only.
"""

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile

PROFILE_VERSION = 1
SEED = 20240101
TARGET_BYTES = 2 * 1024**3  # unique layer bytes at scale 1.0
MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

PLATFORMS = ["amd64", "arm64", "s390x"]
# name, base layer weights (MiB-ish before normalisation)
DISTROS = [
    ("ubi", [150.0, 12.0]),
    ("debian", [90.0]),
    ("alpine", [3.4]),
    ("busybox", [0.9, 0.02]),
]
NAMESPACES = ["library", "openshift", "team-a", "team-b/tools", "vendor/x/y"]
NAMES = [
    "php", "nginx", "httpd", "postgres", "redis", "python", "ruby", "node",
    "golang", "openjdk", "mariadb", "rabbitmq", "memcached", "haproxy",
    "grafana", "prometheus", "alertmanager", "etcd", "coredns", "traefik",
    "vault", "consul", "keycloak", "jenkins", "gitea", "minio", "kafka",
    "zookeeper", "elasticsearch", "kibana", "fluentd", "logstash", "tomcat",
    "wildfly", "dotnet", "perl", "busybox-tools", "curl", "jq", "git",
]
N_REPOS = 40
TAGS_PER_REPO = 3
N_MULTIARCH = 10
CHUNK = 8 * 1024 * 1024


# ---------------------------------------------------------------- layers

class HashingWriter(io.RawIOBase):
    """Write-through to `sink`, hashing and counting (the layer's diff_id)."""

    def __init__(self, sink):
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def write(self, b):
        self.hash.update(b)
        self.sink.write(b)
        self.size += len(b)
        return len(b)


class RandomReader(io.RawIOBase):
    """`size` pseudo-random bytes from `rng`, read in chunks."""

    def __init__(self, rng, size):
        self.rng = rng
        self.left = size

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        b[:n] = self.rng.randbytes(n)
        self.left -= n
        return n


def make_layer(args):
    """Worker: write one gzip'd tar layer into blobs_dir. Returns its facts."""
    blobs_dir, label, size = args
    rng = random.Random(f"{SEED}/{label}")
    # Split the content into a few files, like a real layer.
    nfiles = 1 if size < 64 * 1024 else min(1 + size // (24 * 1024 * 1024), 12)
    sizes = [size // nfiles] * nfiles
    sizes[-1] += size - sum(sizes)
    fd, tmp = tempfile.mkstemp(dir=blobs_dir, prefix=".tmp-")
    with os.fdopen(fd, "wb") as out:
        gz = subprocess.Popen(["gzip", "-1", "-n"], stdin=subprocess.PIPE, stdout=out)
        hw = HashingWriter(gz.stdin)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            d = tarfile.TarInfo(f"opt/{label}")
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            d.mtime = MTIME
            d.uname = d.gname = "root"
            tar.addfile(d)
            for i, fsize in enumerate(sizes):
                info = tarfile.TarInfo(f"opt/{label}/file{i:02d}.bin")
                info.size = fsize
                info.mode = 0o644
                info.mtime = MTIME
                info.uname = info.gname = "root"
                tar.addfile(info, io.BufferedReader(RandomReader(rng, fsize), CHUNK))
        gz.stdin.close()
        if gz.wait() != 0:
            raise RuntimeError(f"gzip failed for layer {label}")
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    digest = h.hexdigest()
    gz_size = os.path.getsize(tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(blobs_dir, digest))
    return label, "sha256:" + digest, gz_size, "sha256:" + hw.hash.hexdigest()


# ---------------------------------------------------------------- plan

def plan():
    """The profile's shape: layers (label -> weight) and images, scale-free."""
    rng = random.Random(SEED)
    layers = {}  # label -> weight

    def base_layers(distro, arch):
        name, weights = DISTROS[distro]
        labels = []
        for i, w in enumerate(weights):
            label = f"base-{name}-{arch}-{i}"
            layers[label] = w
            labels.append(label)
        return labels

    repos = []
    names = list(NAMES)
    multi = set(rng.sample(range(N_REPOS), N_MULTIARCH))
    for r in range(N_REPOS):
        repo = f"{NAMESPACES[r % len(NAMESPACES)]}/{names[r]}"
        distro = rng.choice([0, 0, 1, 1, 1, 2, 2, 3])
        arches = ["amd64"]
        if r in multi:
            arches = PLATFORMS[: rng.choice([2, 2, 3])]
        runtime_w = rng.uniform(3.0, 35.0)
        alias = rng.random() < 0.25
        tags = []
        versions = [f"{1 + r % 3}.{t}" for t in range(TAGS_PER_REPO)]
        for t in range(TAGS_PER_REPO):
            if alias and t == TAGS_PER_REPO - 1:
                tags.append({"tag": "latest", "alias_of": versions[t - 1]})
                continue
            napp = rng.choice([1, 2, 2, 3])
            app_ws = []
            for _ in range(napp):
                roll = rng.random()
                if roll < 0.2:
                    app_ws.append(rng.uniform(0.002, 0.05))  # a few KiB .. 50 KiB
                elif roll < 0.85:
                    app_ws.append(rng.uniform(0.5, 12.0))
                elif roll < 0.97:
                    app_ws.append(rng.uniform(12.0, 40.0))
                else:
                    app_ws.append(rng.uniform(120.0, 300.0))
            platforms = []
            for arch in arches:
                rt = f"rt-{r}-{arch}"
                layers[rt] = runtime_w
                ls = base_layers(distro, arch) + [rt]
                for i, w in enumerate(app_ws):
                    label = f"app-{r}-{t}-{arch}-{i}"
                    layers[label] = w
                    ls.append(label)
                platforms.append({"arch": arch, "layers": ls})
            if r in multi:
                mode = "v2s2-all" if rng.random() < 0.5 else "oci-all"
            else:
                mode = "v2s2" if rng.random() < 0.5 else "oci"
            tags.append({"tag": versions[t], "platforms": platforms, "mode": mode,
                         "multi": r in multi})
        repos.append({"repo": repo, "tags": tags})
    return layers, repos


# ---------------------------------------------------------------- layout

class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)

    def blob(self, data, media_type, **extra):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.blobs, digest)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
        desc.update(extra)
        return desc

    def json_blob(self, obj, media_type, **extra):
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        return self.blob(data, media_type, **extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--print-version", action="store_true")
    a = ap.parse_args()
    if a.print_version:
        print(PROFILE_VERSION)
        return

    weights, repos = plan()
    total_w = sum(weights.values())
    per_w = TARGET_BYTES * a.scale / total_w
    sizes = {label: max(1024, int(w * per_w)) for label, w in weights.items()}

    layout = Layout(os.path.join(a.out, "layout"))
    with open(os.path.join(a.out, "layout", "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')

    # Biggest first so the pool stays busy to the end.
    jobs = sorted(sizes.items(), key=lambda kv: -kv[1])
    facts = {}
    done_bytes = 0
    tty = sys.stderr.isatty()
    with concurrent.futures.ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for label, digest, gz_size, diff_id in pool.map(
            make_layer, [(layout.blobs, label, size) for label, size in jobs], chunksize=1
        ):
            facts[label] = (digest, gz_size, diff_id)
            done_bytes += gz_size
            if tty:
                print(f"\r  layers: {len(facts)}/{len(jobs)}  {done_bytes / 2**20:8.1f} MiB",
                      end="", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)

    index = []
    push = []
    n_images = 0
    for repo in repos:
        by_version = {}
        for t in repo["tags"]:
            if "alias_of" in t:
                desc, mode = by_version[t["alias_of"]]
            else:
                manifests = []
                for p in t["platforms"]:
                    arch = p["arch"]
                    ldescs = [{"mediaType": OCI_LAYER_GZIP, "digest": facts[l][0],
                               "size": facts[l][1]} for l in p["layers"]]
                    config = {
                        "architecture": arch,
                        "os": "linux",
                        "created": CREATED,
                        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                   "Cmd": ["/bin/sh"],
                                   "Labels": {"bench.repo": repo["repo"], "bench.tag": t["tag"]}},
                        "rootfs": {"type": "layers", "diff_ids": [facts[l][2] for l in p["layers"]]},
                        "history": [{"created": CREATED, "created_by": f"ADD {l}"} for l in p["layers"]],
                    }
                    cdesc = layout.json_blob(config, OCI_CONFIG)
                    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "config": cdesc, "layers": ldescs}
                    manifests.append(layout.json_blob(
                        manifest, OCI_MANIFEST,
                        platform={"architecture": arch, "os": "linux"}))
                    n_images += 1
                if t["multi"]:
                    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
                    desc = layout.json_blob(idx, OCI_INDEX)
                else:
                    desc = dict(manifests[0])
                    desc.pop("platform")
                mode = t["mode"]
                by_version[t["tag"]] = (desc, mode)
            ref = f"{repo['repo']}:{t['tag']}"
            entry = dict(desc)
            entry["annotations"] = {REF_NAME: ref}
            index.append(entry)
            push.append(f"{ref} {mode}")

    with open(os.path.join(a.out, "layout", "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}, f,
                  separators=(",", ":"), sort_keys=True)
    with open(os.path.join(a.out, "push.txt"), "w") as f:
        f.write("\n".join(push) + "\n")

    blob_files = os.listdir(layout.blobs)
    total = sum(os.path.getsize(os.path.join(layout.blobs, b)) for b in blob_files)
    modes = {}
    for line in push:
        m = line.split()[1]
        modes[m] = modes.get(m, 0) + 1
    summary = {
        "profile_version": PROFILE_VERSION,
        "scale": a.scale,
        "repositories": len(repos),
        "tags": len(push),
        "platform_manifests": n_images,
        "layers": len(facts),
        "layer_bytes": sum(f[1] for f in facts.values()),
        "blobs_in_layout": len(blob_files),
        "bytes_in_layout": total,
        "push_modes": modes,
    }
    with open(os.path.join(a.out, "profile.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(summary, sort_keys=True), file=sys.stderr)


if __name__ == "__main__":
    main()
