#!/usr/bin/env bash
# bench/kill.sh — bytes fetched again after `kill -9` in the middle of a
# `bundle create` whose writer is slower than its downloads (see BENCHMARKS.md,
# "Killed mid-create: bytes fetched again").
#
# A registry whose storage this script writes itself (cached): --size-gib of
# incompressible blobs of --blob-mib each, 4 layers an image, behind
# bench/throttle_proxy.py without a cap (it only counts the bytes it serves).
# For each binary given (--old, then the one of this tree): run 1 creates with
# a high --level (the writer is slower than the downloads, so the look-ahead
# fills up) and is killed with SIGKILL once its volumes hold --kill-at of the
# content; run 2, the same command, finishes it; bundle verify checks it.
# "Fetched again" = bytes served to runs 1 and 2 together minus the registry's
# content (every blob and manifest once; HTTP heads and tag lists, a few KB,
# count as fetched again).
# Results go to bench/results/kill.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/kill.sh [options]

  --size-gib N     content of the registry in GiB (default 2)
  --blob-mib N     size of each layer in MiB (default 32)
  --level N        --compression-level of the creates (default 15: slower than the downloads)
  --kill-at F      kill run 1 once its volumes hold this fraction of the content (default 0.5)
  --volume-size S  --volume-size of the creates (default 512M)
  --old PATH       a bundle binary to measure first (e.g. one built from an older commit)
  --cache DIR      where the generated registry storage is kept (default /var/tmp/bundle-bench)
  --work DIR       scratch space (default CACHE/kill-work); removed unless --keep
  --keep           keep the scratch outputs
  --no-build       do not run `cargo build --release` first
  --bundle PATH    the bundle binary of this tree (default target/release/bundle)
  -h, --help       this text
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$REPO_ROOT/bench"
CMDLINE="bench/kill.sh"
for arg in "$@"; do CMDLINE+=" $(printf '%q' "$arg")"; done

SIZE_GIB=2
BLOB_MIB=32
LEVEL=15
KILL_AT=0.5
VOLUME_SIZE=512M
OLD=
CACHE=/var/tmp/bundle-bench
WORK=
KEEP=0
BUILD=1
BUNDLE="$REPO_ROOT/target/release/bundle"

while [ $# -gt 0 ]; do
    case "$1" in
        --size-gib) SIZE_GIB=$2; shift 2 ;;
        --blob-mib) BLOB_MIB=$2; shift 2 ;;
        --level) LEVEL=$2; shift 2 ;;
        --kill-at) KILL_AT=$2; shift 2 ;;
        --volume-size) VOLUME_SIZE=$2; shift 2 ;;
        --old) OLD=$2; shift 2 ;;
        --cache) CACHE=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "kill.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

BENCH_LOG_TAG=kill BENCH_NAME=kill.sh
# log, die, need, free_port, the registries
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

need curl curl
need jq jq
need python3 python3
need /usr/bin/docker-registry docker-registry
check_needs
positive --size-gib "$SIZE_GIB"
positive --blob-mib "$BLOB_MIB"
positive --level "$LEVEL"
python3 -c 'import sys; f=float(sys.argv[1]); assert 0 < f < 1' "$KILL_AT" 2>/dev/null \
    || die "--kill-at takes a fraction between 0 and 1"
[ -z "$OLD" ] || [ -x "$OLD" ] || die "--old: no bundle binary at $OLD"

STORAGE="$CACHE/kill-s$SIZE_GIB-b$BLOB_MIB/storage"
: "${WORK:=$CACHE/kill-work}"
RESULTS="$BENCH_DIR/results/kill.md"
REG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bundle-kill.XXXXXX")
PROXY_PID=
RUN_PID=
cleanup() {
    local rc=$?
    if [ -n "$RUN_PID" ]; then kill -9 "$RUN_PID" 2>/dev/null || true; fi
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    stop_registries
    rm -rf "$REG_DIR"
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$BUNDLE" ] || die "no bundle binary at $BUNDLE"

# ------------------------------------------------------------------ registry storage

# Written straight in distribution's storage layout (no push): blobs of
# seeded pseudo-random bytes, an OCI manifest and config per image.
if [ ! -f "$STORAGE/seeded.ok" ]; then
    log "writing the registry storage in $STORAGE"
    rm -rf "$STORAGE"
    python3 - "$STORAGE" "$SIZE_GIB" "$BLOB_MIB" <<'EOF'
import hashlib, json, os, random, sys
root, size_gib, blob_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v2 = os.path.join(root, "docker/registry/v2")
def put(data):
    d = hashlib.sha256(data).hexdigest()
    path = os.path.join(v2, "blobs/sha256", d[:2], d, "data")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + d
def link(repo, *parts, digest):
    path = os.path.join(v2, "repositories", repo, *parts, "link")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(digest)
rng = random.Random(20261206)
blob = blob_mib << 20
layers_total = (size_gib << 30) // blob
per_image = 4
for i in range((layers_total + per_image - 1) // per_image):
    repo = f"bench/kill-{i:02d}"
    layers = []
    for _ in range(min(per_image, layers_total - i * per_image)):
        d = put(rng.randbytes(blob))
        link(repo, "_layers/sha256", d[7:], digest=d)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": blob})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode()
    c = put(config)
    link(repo, "_layers/sha256", c[7:], digest=c)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": c, "size": len(config)},
                           "layers": layers}).encode()
    m = put(manifest)
    link(repo, "_manifests/revisions/sha256", m[7:], digest=m)
    link(repo, "_manifests/tags/1/current", digest=m)
    link(repo, "_manifests/tags/1/index/sha256", m[7:], digest=m)
EOF
    echo "$SIZE_GIB GiB in $BLOB_MIB MiB layers, written $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STORAGE/seeded.ok"
fi

rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$RESULTS")"
BLOBDIR="$STORAGE/docker/registry/v2/blobs"
CONTENT_BYTES=$(find "$BLOBDIR" -type f -name data -printf '%s\n' | awk '{s+=$1} END{printf "%d\n", s}')
LARGEST=$(find "$BLOBDIR" -type f -name data -printf '%s\n' | sort -n | tail -1)
# Warm the page cache: the writer is the bottleneck, not the registry's disk.
find "$BLOBDIR" -type f -name data -exec cat {} + > /dev/null

start_registry source "$STORAGE"
HOST=${REG_HOST[source]}
PROXY_STATS="$WORK/proxy-stats.json"
python3 "$BENCH_DIR/throttle_proxy.py" "$HOST" --rate 0 --latency 0 \
    --port-file "$WORK/proxy.port" --stats "$PROXY_STATS" > "$WORK/proxy.out" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/proxy.port" ] && break
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$WORK/proxy.out" >&2; die "the proxy did not start"; }
    sleep 0.1
done
[ -s "$WORK/proxy.port" ] || die "the proxy did not start in 10 s"
PROXY="127.0.0.1:$(cat "$WORK/proxy.port")"
curl -sf "http://$PROXY/v2/" >/dev/null || die "the registry does not answer through the proxy ($PROXY)"
log "registry on $HOST, counted through $PROXY: $CONTENT_BYTES bytes, largest blob $LARGEST"

DUMPS=0
served() { # served: bytes the proxy has sent to clients so far
    local n
    kill -USR1 "$PROXY_PID"
    for _ in $(seq 300); do
        n=$(jq -r '.dumps // 0' "$PROXY_STATS" 2>/dev/null || echo 0)
        [ "${n:-0}" -gt "$DUMPS" ] && break
        sleep 0.01
    done
    [ "${n:-0}" -gt "$DUMPS" ] || die "the proxy does not answer SIGUSR1"
    DUMPS=$n
    jq -r '.bytes_down' "$PROXY_STATS"
}
volume_bytes() { # volume_bytes DIR: bytes of its volume files (0 if it does not exist yet)
    [ -d "$1" ] || { echo 0; return; }
    find "$1" -maxdepth 1 -name 'images.tar.zst.*' -printf '%s\n' | awk '{s+=$1} END{printf "%d\n", s}'
}
spooled() { # spooled DIR: "COUNT BYTES" of the whole blobs (named by their hex digest) in it
    find "$1" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{64}' -printf '%s\n' |
        awk '{n++; s+=$1} END{printf "%d %d\n", n, s}'
}
mib() { awk "BEGIN{printf \"%.0f\", $1 / 1048576}"; }

ROWS=()
measure() { # measure LABEL BINARY
    local label=$1 bin=$2 out="$WORK/out-$1" keys="$WORK/keys-$1" before after1 after2 target vol spool parts spool_bytes rc
    mkdir -p "$keys"
    "$bin" keygen --out "$keys/k" > "$keys/keygen.log" 2>&1 || die "$label: bundle keygen failed"
    local cmd=("$bin" create --from "$PROXY" --tls-verify=false --out "$out" --key "$keys/k.key"
               --volume-size "$VOLUME_SIZE" --compression-level "$LEVEL")
    target=$(awk "BEGIN{printf \"%d\", $CONTENT_BYTES * $KILL_AT}")
    before=$(served)
    log "$label: run 1, killed once its volumes hold $(mib "$target") MiB"
    "${cmd[@]}" > "$WORK/$label.run1.log" 2>&1 &
    RUN_PID=$!
    while :; do
        kill -0 "$RUN_PID" 2>/dev/null || die "$label: run 1 ended before the kill: $(tail -3 "$WORK/$label.run1.log")"
        vol=$(volume_bytes "$out")
        [ "${vol:-0}" -ge "$target" ] && break
        sleep 0.2
    done
    kill -9 "$RUN_PID"
    wait "$RUN_PID" 2>/dev/null || true
    RUN_PID=
    vol=$(volume_bytes "$out")
    spool=0 parts=0 spool_bytes=0
    if [ -d "$out/.bundle-create.spool" ]; then
        read -r spool spool_bytes < <(spooled "$out/.bundle-create.spool")
        parts=$(find "$out/.bundle-create.spool" -maxdepth 1 -type f -name '*.part' | wc -l)
    fi
    after1=$(served)
    log "$label: run 2 (resume)"
    rc=0
    "${cmd[@]}" > "$WORK/$label.run2.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || die "$label: run 2 failed ($rc): $(tail -5 "$WORK/$label.run2.log")"
    after2=$(served)
    "$bin" verify "$out" --pubkey "$keys/k.pub" > "$WORK/$label.verify.log" 2>&1 \
        || die "$label: bundle verify failed: $(tail -5 "$WORK/$label.verify.log")"
    local run1=$((after1 - before)) run2=$((after2 - after1))
    local again=$((run1 + run2 - CONTENT_BYTES))
    local ahead=$((run1 > vol ? run1 - vol : 0))
    ROWS+=("| $label | $(mib "$vol") | $(mib "$ahead") | ${spool} ($(mib "$spool_bytes") MiB), $parts partial | $(mib "$run1") | $(mib "$run2") | **$(mib "$again")** |")
    log "$label: run 1 $(mib "$run1") MiB, run 2 $(mib "$run2") MiB, fetched again $(mib "$again") MiB"
    rm -rf "$out"
}

[ -z "$OLD" ] || measure old "$OLD"
measure new "$BUNDLE"

SRC_STATE="git $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
git -C "$REPO_ROOT" diff --quiet HEAD -- src 2>/dev/null || SRC_STATE+=", src modified"
{
    echo "# Killed mid-create: bytes fetched again"
    echo
    echo "\`$CMDLINE\` on $(date -u +%Y-%m-%dT%H:%M:%SZ), this tree $SRC_STATE${OLD:+, old binary $OLD}."
    echo "Registry: $(cat "$STORAGE/seeded.ok"), $(mib "$CONTENT_BYTES") MiB in all, largest blob $(mib "$LARGEST") MiB;"
    echo "create --compression-level $LEVEL --volume-size $VOLUME_SIZE (default --jobs), killed (SIGKILL) once the volumes held $KILL_AT of it."
    echo
    echo "| binary | in the volumes at the kill (MiB) | received ahead of the writer (MiB, run 1's bytes − volumes) | whole in the spool dir at the kill | run 1 fetched (MiB) | run 2 fetched (MiB) | fetched again (MiB) |"
    echo "|---|---:|---:|---|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Target: fetched again ≤ the blobs in flight at the kill, ≤ 6 × the largest blob = $(mib $((6 * LARGEST))) MiB."
} > "$RESULTS"
cat "$RESULTS"
