#!/usr/bin/env bash
# Stage commands are single-quoted on purpose: the `bash -c` they run in expands them.
# shellcheck disable=SC2016
# bench/enumerate.sh — enumerating a large catalog (see BENCHMARKS.md).
#
# A registry holding 2,000 repositories × 3 tags of one tiny image (every
# image shares the same blobs, so almost no data moves), and:
#   (a) bundle create of the whole catalog: the catalog (paginated), 2,000 tag
#       lists and 6,000 manifests, then a tiny bundle; the enumeration and
#       manifest phases are timed apart from the progress messages
#   (b) the shell way: curl the catalog page by page, then curl | jq each
#       tags/list one after the other (like run.sh's a1 stage)
#   (c) reference floors: one curl process, one keep-alive connection, every
#       tags/list, then every manifest
# Results go to bench/results/enumerate.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/enumerate.sh [options]

  --repos N      repositories (default 2000), 3 tags each
  --repeat N     run the measured stages N times, report medians (default 3)
  --fresh        reseed the cached registry storage
  --cache DIR    where the seeded storage is kept (default /var/tmp/bundle-bench);
                 it lives in CACHE/enum-N/ and is reused by later runs
  --work DIR     scratch space (default CACHE/enum-work); removed unless --keep
  --keep         keep the scratch outputs (bundles, stage logs)
  --port N       registry port on 127.0.0.1 (default: a free one)
  --no-build     do not run `cargo build --release` first
  --bundle PATH  the bundle binary (default target/release/bundle)
  -h, --help     this text
EOF
}

RUN_START=$(date +%s)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMDLINE="bench/enumerate.sh"
for arg in "$@"; do CMDLINE+=" $(printf '%q' "$arg")"; done

REPOS=2000
REPEAT=3
FRESH=0
CACHE=/var/tmp/bundle-bench
WORK=
KEEP=0
PORT=
BUILD=1
BUNDLE="$REPO_ROOT/target/release/bundle"

while [ $# -gt 0 ]; do
    case "$1" in
        --repos) REPOS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --cache) CACHE=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --port) PORT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "enumerate.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

BENCH_LOG_TAG=enum BENCH_NAME=enumerate.sh
# log, die, need, free_port, the registries, timed, median
# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"

need skopeo skopeo
need curl curl
need jq jq
need python3 python3
need gzip gzip
need /usr/bin/docker-registry docker-registry
need /usr/bin/time time
check_needs
positive --repos "$REPOS"
[ "$REPOS" -le 10000 ] || die "--repos: at most 10000"
positive --repeat "$REPEAT"
TAGS=$((REPOS * 3))

STORE_DIR="$CACHE/enum-$REPOS"
STORAGE="$STORE_DIR/storage"
: "${WORK:=$CACHE/enum-work}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bundle-enum.XXXXXX")
REG_DIR=$TMP
cleanup() {
    local rc=$?
    stop_stage
    stop_registries
    rm -rf "$TMP" "$STORE_DIR/gen"
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build

if [ "$BUILD" = 1 ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found (or pass --no-build)"
    log "cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$BUNDLE" ] || die "no bundle binary at $BUNDLE"
"$BUNDLE" create --help 2>/dev/null | grep -q -- '--from' || die "$BUNDLE has no create --from"
# The tree as it is now (the sources may change while the stages run).
SRC_STATE="git $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
git -C "$REPO_ROOT" diff --quiet HEAD -- src 2>/dev/null || SRC_STATE+=", src modified"
if [ "$BUILD" = 1 ]; then
    SRC_STATE="built by this run from $SRC_STATE"
else
    SRC_STATE="binary of $(date -u -r "$BUNDLE" +%Y-%m-%dT%H:%M:%SZ), not built by this run; tree at the start: $SRC_STATE"
fi

# ------------------------------------------------------------------ registry

if [ "$FRESH" = 1 ] || [ ! -f "$STORE_DIR/seeded.ok" ]; then
    rm -rf "$STORE_DIR"
fi
mkdir -p "$STORAGE" "$WORK"
start_registry source "$STORAGE" "$PORT"
HOST=${REG_HOST[source]}
export HOST

repo_name() { printf 'enum/r%04d' "$1"; }

# The catalog, page by page (following Link), one repository a line.
export CATALOG_SH='
    url="/v2/_catalog?n=1000"
    while [ -n "$url" ]; do
        curl -sf -D "$0.hdr" "http://$HOST$url" | jq -r "(.repositories // [])[]"
        url=$(tr -d "\r" < "$0.hdr" | sed -n "s/^[Ll]ink: *<\([^>]*\)>.*rel=\"next\".*/\1/p")
    done'

# ------------------------------------------------------------------ seed (cached)

SEED_NOTE="cached storage reused ($STORE_DIR)"
if [ ! -f "$STORE_DIR/seeded.ok" ]; then
    log "seeding $REPOS repositories × 3 tags into $STORAGE"
    t0=$(date +%s.%N)
    # One image: a 4 KB tar layer (gzip -n), its config and manifest.
    python3 - "$STORE_DIR/gen/layout" <<'EOF'
import gzip, hashlib, io, json, os, random, sys, tarfile
root = sys.argv[1]
os.makedirs(os.path.join(root, "blobs/sha256"), exist_ok=True)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(root, "blobs/sha256", d), "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
content = random.Random(4).randbytes(4000)
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
    info = tarfile.TarInfo("data.bin"); info.size = len(content); info.mtime = 0
    t.addfile(info, io.BytesIO(content))
layer = gzip.compress(tar.getvalue(), mtime=0)
config = json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]},
    "config": {}}, sort_keys=True).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(layer)}]},
    sort_keys=True).encode()
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    **put(manifest), "annotations": {"org.opencontainers.image.ref.name": "img"}}]}
open(os.path.join(root, "index.json"), "w").write(json.dumps(index))
open(os.path.join(root, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
EOF
    first=$(repo_name 0)
    for tag in t1 t2 t3; do
        skopeo copy -q --retry-times 3 --dest-tls-verify=false \
            "oci:$STORE_DIR/gen/layout:img" "docker://$HOST/$first:$tag" < /dev/null
    done
    # The other repositories: copies of the first one's directory in the
    # storage (as tests/cli/support/seed.rs does); the registry serves them at once.
    REPOS_DIR="$STORAGE/docker/registry/v2/repositories"
    for ((i = 1; i < REPOS; i++)); do
        cp -a "$REPOS_DIR/$first" "$REPOS_DIR/$(repo_name "$i")"
    done
    t1=$(date +%s.%N)
    printf 'one skopeo push of 3 tags and %d directory copies in %.1f s, on %s\n' \
        "$((REPOS - 1))" "$(awk "BEGIN{print $t1 - $t0}")" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STORE_DIR/seeded.check"
    rm -rf "$STORE_DIR/gen"
fi

# Check: the catalog holds every repository, and a few random ones answer
# their three tags with the first one's digest.
n=$(bash -o pipefail -c "$CATALOG_SH" "$TMP/catalog" | wc -l)
[ "$n" = "$REPOS" ] || die "the catalog lists $n repositories, not $REPOS (reseed with --fresh)"
head_digest() {
    curl -sfI -H "Accept: $ACCEPT" "http://$HOST/v2/$1/manifests/$2" |
        tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p' || true
}
want=$(head_digest "$(repo_name 0)" t1)
[ -n "$want" ] || die "$(repo_name 0):t1 does not answer (reseed with --fresh)"
for i in $((REPOS - 1)) $((RANDOM % REPOS)) $((RANDOM % REPOS)) $((RANDOM % REPOS)); do
    for tag in t1 t2 t3; do
        got=$(head_digest "$(repo_name "$i")" "$tag")
        [ "$got" = "$want" ] || die "$(repo_name "$i"):$tag answers '${got:-nothing}', not $want"
    done
done
if [ -f "$STORE_DIR/seeded.check" ]; then
    mv "$STORE_DIR/seeded.check" "$STORE_DIR/seeded.ok"
    SEED_NOTE="seeded in this run: $(cat "$STORE_DIR/seeded.ok")"
else
    SEED_NOTE+=": $(cat "$STORE_DIR/seeded.ok")"
fi
log "$SEED_NOTE; catalog of $n repositories checked"

# ------------------------------------------------------------------ stages

# Warm the page cache with the storage (link files, the three blobs).
find "$STORAGE" -type f -print0 | xargs -0 cat > /dev/null

# A pty for bundle's stderr (copied to the stage's stderr file), so that it
# shows its progress messages; each
# one's first appearance is timed from the start (resolution ~0.1 s: the
# spinner redraws every 120 ms).
cat > "$TMP/phases.py" <<'EOF'
import fcntl, os, re, struct, subprocess, sys, termios, time
out, cmd = sys.argv[1], sys.argv[2:]
marks = {"enumerated": rb"fetching the manifests of", "planned": rb"images [0-9]+/"}
seen = {}
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=slave)
os.close(slave)
tail = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    now = time.monotonic() - t0
    sys.stderr.buffer.write(chunk)
    tail = tail[-100:] + chunk
    for name, pattern in marks.items():
        if name not in seen and re.search(pattern, tail):
            seen[name] = now
rc = p.wait()
with open(out, "w") as f:
    for name in marks:
        f.write(f"{name} {seen.get(name, '')}\n")
sys.exit(rc)
EOF

rm -rf "$WORK"
mkdir -p "$WORK/times" "$WORK/keys"
"$BUNDLE" keygen --out "$WORK/keys/k" > /dev/null 2>&1 || die "bundle keygen --out $WORK/keys/k failed"
KEY=
for k in "$WORK/keys/k.key" "$WORK/keys/k"; do [ -f "$k" ] && KEY=$k && break; done
[ -n "$KEY" ] || die "bundle keygen gave no secret key in $WORK/keys"

TIMES_DIR="$WORK/times"
TIMED_PTY="$TMP/phases.py"

export ACCEPT TMP JQ_TAGS='(.tags // [])[] | $r + ":" + .'
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ENUMS="" PLANS="" RESTS="" PER_RUN=""
for RUN in $(seq "$REPEAT"); do
    OUT="$WORK/out.$RUN"
    # (a) bundle create of the whole catalog
    timed a_bundle_create --pty "$BUNDLE" create --from "$HOST" --tls-verify=false --out "$OUT" --key "$KEY" || true
    tf="$WORK/times/a_bundle_create.$RUN"
    images=$(sed -n 's/.*: \([0-9]*\) images, .*/\1/p' "$tf.out")
    if [ "${images:-0}" != "$TAGS" ]; then
        STATE[a_bundle_create]=failed
        log "bundle create bundled ${images:-no} images, not $TAGS"
    fi
    enum=$(awk '$1 == "enumerated" { print $2 }' "$tf.phases")
    plan=$(awk '$1 == "planned" { print $2 }' "$tf.phases")
    wall=$(echo "${WALLS[a_bundle_create]}" | awk '{ print $NF }')
    if [ -n "$enum" ] && [ -n "$plan" ]; then
        e=$(awk "BEGIN{printf \"%.2f\", $enum}")
        p=$(awk "BEGIN{printf \"%.2f\", $plan - $enum}")
        rest=$(awk "BEGIN{printf \"%.2f\", $wall - $plan}")
        ENUMS+="$e " PLANS+="$p " RESTS+="$rest "
    else
        e=n/a p=n/a rest=n/a
    fi
    rm -rf "$OUT"
    # (b) the shell way: catalog pages, then curl | jq per tags/list, sequential
    timed b_curl_enumerate bash -o pipefail -c '
        bash -o pipefail -c "$CATALOG_SH" "$TMP/b" > "$TMP/b.repos"
        while read -r repo; do
            curl -sf "http://$HOST/v2/$repo/tags/list" | jq -r --arg r "$repo" "$JQ_TAGS"
        done < "$TMP/b.repos" > "$TMP/b.refs"' || true
    got=$(wc -l < "$TMP/b.refs")
    [ "$got" = "$TAGS" ] || { STATE[b_curl_enumerate]=failed; log "the shell way listed $got tags, not $TAGS"; }
    # (c) floors: one curl, one keep-alive connection, every URL
    awk -v h="$HOST" '{ printf "url = \"http://%s/v2/%s/tags/list\"\noutput = \"/dev/null\"\n", h, $1 }' \
        "$TMP/b.repos" > "$TMP/tags.cfg"
    awk -v h="$HOST" '{ split($1, a, ":"); printf "url = \"http://%s/v2/%s/manifests/%s\"\noutput = \"/dev/null\"\n", h, a[1], a[2] }' \
        "$TMP/b.refs" > "$TMP/manifests.cfg"
    timed c1_curl_tags_keepalive curl -s -w '%{http_code}\n' -K "$TMP/tags.cfg" || true
    timed c2_curl_manifests_keepalive curl -s -H "Accept: $ACCEPT" -w '%{http_code}\n' -K "$TMP/manifests.cfg" || true
    for s in c1_curl_tags_keepalive c2_curl_manifests_keepalive; do
        bad=$(grep -vc '^200$' "$WORK/times/$s.$RUN.out" || true)
        [ "$bad" = 0 ] || { STATE[$s]=failed; log "$s: $bad requests did not answer 200"; }
    done
    PER_RUN+="- run $RUN: bundle create $wall s (enumeration $e s, manifests $p s, the rest $rest s); curl + jq $(echo "${WALLS[b_curl_enumerate]}" | awk '{ print $NF }') s"$'\n'
done

# ------------------------------------------------------------------ report

declare -A LABEL=(
    [a_bundle_create]="**(a) bundle create**, whole catalog ($TAGS images)"
    [b_curl_enumerate]="(b) curl _catalog pages + curl \| jq per tags/list (sequential)"
    [c1_curl_tags_keepalive]="(c) one curl, keep-alive: every tags/list ($REPOS GETs)"
    [c2_curl_manifests_keepalive]="(c) one curl, keep-alive: every manifest ($TAGS GETs)"
)
# shellcheck disable=SC2086
{
    echo "| stage | wall s | CPU s (user+sys) | max RSS MiB | registry CPU s |"
    echo "|---|---:|---:|---:|---:|"
    for n in "${ORDER[@]}"; do
        if [ "${STATE[$n]}" = ok ]; then
            printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$n]}" "$(median ${WALLS[$n]})" \
                "$(median ${CPUS[$n]})" "${RSS[$n]}" "$(median ${RCPUS[$n]})"
        else
            printf '| %s | failed | | | |\n' "${LABEL[$n]}"
        fi
        if [ "$n" = a_bundle_create ] && [ -n "$ENUMS" ]; then
            printf '| (a) of which: enumeration (catalog + %s tag lists) | %s | | | |\n' "$REPOS" "$(median $ENUMS)"
            printf '| (a) of which: the %s manifests | %s | | | |\n' "$TAGS" "$(median $PLANS)"
            printf '| (a) of which: the rest (blobs, volume, signature) | %s | | | |\n' "$(median $RESTS)"
        fi
    done
} > "$WORK/table.md"

# shellcheck disable=SC2086
A_WALL=$(median ${WALLS[a_bundle_create]})
# shellcheck disable=SC2086
A_ENUM=$( [ -n "$ENUMS" ] && median $ENUMS || echo n/a)
if [ "${STATE[a_bundle_create]}" != ok ]; then
    VERDICT="**not measured** (bundle create failed)"
elif awk "BEGIN{exit !($A_WALL <= 10)}"; then
    VERDICT="**met**: the whole create takes $A_WALL s (enumeration alone $A_ENUM s)"
elif [ "$A_ENUM" != n/a ] && awk "BEGIN{exit !($A_ENUM <= 10)}"; then
    VERDICT="**met for the enumeration** ($A_ENUM s), not for the whole create ($A_WALL s)"
else
    VERDICT="**NOT met**: the whole create takes $A_WALL s, the enumeration $A_ENUM s"
fi

RESULTS="$REPO_ROOT/bench/results/enumerate.md"
mkdir -p "$(dirname "$RESULTS")"
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
    echo "# bundle enumeration benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Command: \`$CMDLINE\`"
    echo
    echo "## Machine"
    echo
    echo "- nproc: $(nproc); CPU: ${cpu_model:-unknown}; memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr); load average before the stages: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $(skopeo --version); $(/usr/bin/docker-registry --version 2>&1 | head -1); curl $(curl -V | head -1 | cut -d' ' -f2); $(jq --version)"
    echo "- bundle: $("$BUNDLE" --version 2>/dev/null || echo "$BUNDLE") ($BUNDLE, $SRC_STATE)"
    echo
    echo "## Data"
    echo
    echo "- $REPOS repositories (\`enum/r0000\` …) × 3 tags (t1, t2, t3) = $TAGS tags, all the same OCI image (one 4 KB layer): 3 blobs in all"
    echo "- registry on $HOST, storage $STORAGE; $SEED_NOTE"
    echo
    echo "## Results"
    echo
    cat "$WORK/table.md"
    echo
    echo "Target (issue 4: enumerating $REPOS repositories × 3 tags on loopback in ≤ 10 s): $VERDICT."
    echo
    echo "Stages run $REPEAT time(s); the table gives medians of wall and CPU time and the largest RSS."
    echo
    printf '%s' "$PER_RUN"
    echo
    echo "Whole run (build, seeding if any, checks, stages): $(( $(date +%s) - RUN_START )) s."
    echo
    echo "Wall, CPU and max RSS from \`/usr/bin/time -v\`; registry CPU from /proc. (a)'s phases come from its progress messages (stderr on a pty): enumeration = start to \"fetching the manifests of N images\", manifests = from there to the first \"images K/N\" (the plan is made), the rest = to the exit; resolution ~0.1 s. The storage's files are read once before the stages (warm page cache)."
} > "$RESULTS"

echo
cat "$RESULTS"
echo
log "written to bench/results/enumerate.md"
