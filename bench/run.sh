#!/usr/bin/env bash
# Stage commands are single-quoted on purpose: the `bash -c` they run in expands them.
# shellcheck disable=SC2016
# bench/run.sh — the bundle benchmark (see BENCHMARKS.md).
#
# In one run, on the same registry content:
#   (a) the seed pipeline people use today (curl catalog/tags, skopeo copy per
#       image into one OCI layout, tar | zstd | split, sha256sum, minisign, sync)
#   (b) bundle create
#   (c) the standard tools' shallow check of (a)'s output
#   (d) bundle verify (deep: every blob hashed)
#   (e) physical limits on the same bytes (GET, SHA-256, zstd, fsync'd write)
#   (f) the standard load of (a)'s output into a registry (cat | zstd -d |
#       tar -x, skopeo copy oci:... per image)
#   (g) bundle push of (b)'s output into another registry, then again into the
#       now loaded one
# and prints a markdown table, also written to bench/results/latest.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/run.sh [options]

  --scale S      size of the profile: 1.0 = 2 GiB of unique layers (default 1.0);
                 0.1 is a ~200 MiB quick run. Repositories and tags (40 / 120)
                 do not change with the scale.
  --fresh        regenerate and reseed the cached registry storage
  --cache DIR    where seeded registry storage is kept (default /var/tmp/bundle-bench)
  --work DIR     scratch space for the outputs (default CACHE/work); removed at
                 the end unless --keep
  --keep         keep the scratch outputs (layout, volumes, bundle)
  --port N       source registry port on 127.0.0.1 (default: a free one); the
                 two push targets of (f) and (g) always take free ones
  --jobs N       parallel skopeo pushes while seeding (default 4)
  --repeat N     run the measured stages N times and report each stage's median
                 wall and CPU time and its largest RSS (default 1)
  --no-build     do not run `cargo build --release` first
  --seed-only    only generate and seed the cached registry storage (if it is
                 missing, or with --fresh), then stop (bench/throttle.sh uses it)
  --bundle PATH  the bundle binary (default target/release/bundle)
  -h, --help     this text

The seeded registry storage is cached per profile version and scale in
CACHE/p<version>-s<scale>/ and reused by later runs.
EOF
}

RUN_START=$(date +%s)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$REPO_ROOT/bench"
CMDLINE="bench/run.sh"
for arg in "$@"; do CMDLINE+=" $(printf '%q' "$arg")"; done

SCALE=1.0
FRESH=0
CACHE=/var/tmp/bundle-bench
WORK=
KEEP=0
PORT=
JOBS=4
REPEAT=1
BUILD=1
SEED_ONLY=0
BUNDLE="$REPO_ROOT/target/release/bundle"

while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE=$2; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --cache) CACHE=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --port) PORT=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --seed-only) SEED_ONLY=1; BUILD=0; shift ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

BENCH_LOG_TAG=bench BENCH_NAME=run.sh
# log, die, need, free_port, the registries, timed, pending, median
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

# ------------------------------------------------------------------ tools

need skopeo skopeo
need minisign minisign
need zstd zstd
need curl curl
need jq jq
need python3 python3
need openssl openssl
need gzip gzip
need tar tar
need split coreutils
need sha256sum coreutils
need dd coreutils
need /usr/bin/docker-registry docker-registry
need /usr/bin/time time
check_needs
positive --repeat "$REPEAT"
[ "$BUILD" = 0 ] || command -v cargo >/dev/null 2>&1 || die "cargo not found (or pass --no-build)"

SCALE=$(python3 -c 'import sys; s=float(sys.argv[1]); assert s>0; print(f"{s:g}")' "$SCALE") \
    || die "--scale must be a positive number"
PROFILE_VERSION=$(python3 "$BENCH_DIR/gen_profile.py" --print-version x)
PROFILE_DIR="$CACHE/p$PROFILE_VERSION-s$SCALE"
STORAGE="$PROFILE_DIR/storage"
: "${WORK:=$CACHE/work}"
RESULTS_DIR="$BENCH_DIR/results"

# Bytes at this scale, for the disk check: storage + generated layout while
# seeding, then the seed layout, its volumes, the bundle, the dd file, and for
# (f) and (g) the unpacked layout and the two target registries' storage:
# seven copies at the end of a run (the dd file is gone by then), one spare.
EST_BYTES=$(python3 -c "print(int(2.2 * 1024**3 * float('$SCALE')))")
mkdir -p "$CACHE" "$WORK"
avail=$(df -B1 --output=avail "$CACHE" | tail -1)
if [ "$avail" -lt $((EST_BYTES * 8)) ]; then
    die "not enough free space in $CACHE: $((avail >> 20)) MiB free, need about $((EST_BYTES * 8 >> 20)) MiB (df -h $CACHE)"
fi

# ------------------------------------------------------------------ registry

# Registries by name (lib.sh): "source" (the seeded one), "target_a" and
# "target_b" (the empty ones (f) and (g) push into).
REG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bundle-bench-reg.XXXXXX")
cleanup() {
    local rc=$?
    stop_stage
    stop_registries
    rm -rf "$REG_DIR"
    rm -rf "$PROFILE_DIR/gen" 2>/dev/null || true
    if [ "$KEEP" = 0 ] && [ -n "${WORK:-}" ]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The seeded registry, on --port or on the port it had before in this run.
start_source_registry() {
    start_registry source "$STORAGE" "$PORT"
    HOST=${REG_HOST[source]}
    PORT=${HOST##*:}
}


# ------------------------------------------------------------------ build

BUNDLE_OK=0
BUNDLE_NOTE=
if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    if ! (cd "$REPO_ROOT" && cargo build --release --quiet 2>&1 | tail -20 >&2; exit "${PIPESTATUS[0]}"); then
        BUNDLE_NOTE="cargo build --release failed"
    fi
fi
if [ -z "$BUNDLE_NOTE" ]; then
    if [ ! -x "$BUNDLE" ]; then
        BUNDLE_NOTE="no binary at $BUNDLE"
    elif ! "$BUNDLE" create --help 2>/dev/null | grep -q -- '--from' \
        || ! "$BUNDLE" verify --help >/dev/null 2>&1 \
        || ! "$BUNDLE" keygen --help >/dev/null 2>&1; then
        BUNDLE_NOTE="bundle create/verify/keygen not available in $BUNDLE yet"
    else
        BUNDLE_OK=1
    fi
fi
[ "$BUNDLE_OK" = 1 ] || [ "$SEED_ONLY" = 1 ] || log "bundle rows will be pending: $BUNDLE_NOTE"
# push came later than the others: without it only (g) is pending.
PUSH_OK=0
PUSH_NOTE=
if [ "$BUNDLE_OK" != 1 ]; then
    PUSH_NOTE=$BUNDLE_NOTE
elif ! "$BUNDLE" push --help >/dev/null 2>&1; then
    PUSH_NOTE="bundle push not available in $BUNDLE yet"
    log "bundle push rows will be pending: $PUSH_NOTE"
else
    PUSH_OK=1
fi

# ------------------------------------------------------------------ seed (cached)

SEED_NOTE=
if [ "$FRESH" = 1 ] || [ ! -f "$PROFILE_DIR/seeded.ok" ]; then
    rm -rf "$PROFILE_DIR"
    mkdir -p "$PROFILE_DIR/gen" "$STORAGE"
    log "generating the profile (scale $SCALE) in $PROFILE_DIR/gen"
    t0=$(date +%s.%N)
    python3 "$BENCH_DIR/gen_profile.py" "$PROFILE_DIR/gen" --scale "$SCALE"
    t1=$(date +%s.%N)
    start_source_registry
    log "seeding $HOST with $(wc -l < "$PROFILE_DIR/gen/push.txt") tags (skopeo, $JOBS in parallel)"
    export SEED_LAYOUT="$PROFILE_DIR/gen/layout" SEED_HOST="$HOST" SEED_PUSH="$PROFILE_DIR/gen/push.txt"
    # One job per repository (its tags one after the other: concurrent pushes
    # to one repository make this registry answer 500), repositories in
    # parallel; each push retried twice.
    awk '{ sub(/:[^:]*$/, "", $1); print $1 }' "$SEED_PUSH" | sort -u |
    xargs -P "$JOBS" -n 1 bash -c '
        set -euo pipefail
        repo=$0
        awk -v r="$repo" "{ x = \$1; sub(/:[^:]*\$/, \"\", x) } x == r" "$SEED_PUSH" |
        while read -r ref mode; do
            case "$mode" in
                oci) args=() ;;
                v2s2) args=(--format v2s2) ;;
                oci-all) args=(--all) ;;
                v2s2-all) args=(--all --format v2s2) ;;
                *) echo "bad mode $mode" >&2; exit 255 ;;
            esac
            for attempt in 1 2 3; do
                if skopeo copy -q --retry-times 3 --dest-tls-verify=false "${args[@]}" \
                    "oci:$SEED_LAYOUT:$ref" "docker://$SEED_HOST/$ref" < /dev/null; then
                    continue 2
                fi
                echo "push of $ref failed (attempt $attempt)" >&2
                sleep 1
            done
            exit 255
        done
    '
    t2=$(date +%s.%N)
    # Check that every tag answers with the digest we expect to see.
    pushed=0
    while read -r ref _; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $ACCEPT" \
            "http://$HOST/v2/${ref%:*}/manifests/${ref##*:}")
        [ "$code" = 200 ] || die "seeding: $ref answers $code"
        pushed=$((pushed + 1))
    done < "$PROFILE_DIR/gen/push.txt"
    stop_registry source
    cp "$PROFILE_DIR/gen/profile.json" "$PROFILE_DIR/profile.json"
    cp "$PROFILE_DIR/gen/push.txt" "$PROFILE_DIR/push.txt"
    rm -rf "$PROFILE_DIR/gen"
    gen_s=$(awk "BEGIN{printf \"%.1f\", $t1-$t0}")
    push_s=$(awk "BEGIN{printf \"%.1f\", $t2-$t1}")
    printf 'generated in %s s, pushed %s tags in %s s (skopeo -P %s), on %s\n' \
        "$gen_s" "$pushed" "$push_s" "$JOBS" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$PROFILE_DIR/seeded.ok"
    SEED_NOTE="seeded in this run: $(cat "$PROFILE_DIR/seeded.ok")"
else
    SEED_NOTE="cached storage reused ($PROFILE_DIR): $(cat "$PROFILE_DIR/seeded.ok")"
fi
log "$SEED_NOTE"
[ "$SEED_ONLY" = 0 ] || exit 0

# ------------------------------------------------------------------ the run

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_source_registry
log "registry on $HOST (storage $STORAGE)"
rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS_DIR"
TIMES_DIR="$WORK/times"
mkdir -p "$TIMES_DIR"
BLOBDIR="$STORAGE/docker/registry/v2/blobs"

# What the registry holds: every blob file (layers, configs, manifests).
find "$BLOBDIR" -type f -name data -print0 > "$WORK/blobfiles"
CONTENT_BYTES=$(xargs -0 stat -c %s < "$WORK/blobfiles" | awk '{s+=$1} END{printf "%d\n", s}')
CONTENT_BLOBS=$(tr -cd '\0' < "$WORK/blobfiles" | wc -c)
CONTENT_MB=$(awk "BEGIN{printf \"%.1f\", $CONTENT_BYTES/1048576}")
log "registry content: $CONTENT_BLOBS blobs, $CONTENT_MB MiB"

# Warm the page cache so every stage starts from the same state.
xargs -0 cat < "$WORK/blobfiles" > /dev/null

# Each stage's medians (the values per run are in lib.sh's WALLS, CPUS, RCPUS).
declare -A WALL CPU RCPU
# The stages charge the registry they talk to, STAGE_REG (lib.sh): the source
# (it serves (a), (b) and (e1)), or the target (f) or (g) pushes into.
STAGE_REG=source
RUN=1

export HOST ACCEPT
export JQ_TAGS='(.tags // [])[] | $r + ":" + .'
export A_LAYOUT="$WORK/seed-layout" A_OUT="$WORK/seed-out" B_OUT="$WORK/bundle-out"
export UNPACKED="$WORK/unpacked"
mkdir -p "$A_OUT" "$WORK/keys"

# Keys, outside the timings.
minisign -G -W -f -p "$WORK/keys/seed.pub" -s "$WORK/keys/seed.key" > /dev/null
if [ "$BUNDLE_OK" = 1 ]; then
    if "$BUNDLE" keygen --out "$WORK/keys/bench" > "$WORK/keys/keygen.log" 2>&1; then
        for k in "$WORK/keys/bench.key" "$WORK/keys/bench"; do [ -f "$k" ] && B_KEY=$k && break; done
        for k in "$WORK/keys/bench.pub" "$WORK/keys/bench.key.pub"; do [ -f "$k" ] && B_PUB=$k && break; done
    fi
    if [ -z "${B_KEY:-}" ] || [ -z "${B_PUB:-}" ]; then
        BUNDLE_OK=0
        BUNDLE_NOTE="bundle keygen --out DIR/bench did not give a key pair: $(tail -3 "$WORK/keys/keygen.log" 2>/dev/null | tr '\n' ' ')"
        log "$BUNDLE_NOTE"
    fi
fi

# (e)'s URL list: one GET of every blob, blobs through /v2/<repo>/blobs/,
# manifests through /v2/<repo>/manifests/ (a repository that links each, read
# from the storage).
blob_url_config "$STORAGE" "$HOST" > "$WORK/urls.cfg"
URLS=$(grep -c '^url' "$WORK/urls.cfg")
export BLOBFILES="$WORK/blobfiles"
DD_MB=$(( (CONTENT_BYTES + 1048575) / 1048576 ))
GET_BAD=0

# digests HOST: "ref<TAB>digest<TAB>media type" for every ref of refs.txt, as
# HOST answers a HEAD of its manifest with every Accept type; "-" for a ref
# it does not answer 200 for (a target may lack some).
digests() {
    python3 - "$1" "$WORK/refs.txt" "$ACCEPT" <<'EOF'
import sys, urllib.error, urllib.request
host, refs, accept = sys.argv[1:4]
for line in open(refs):
    ref = line.strip()
    if not ref:
        continue
    repo, tag = ref.rsplit(":", 1)
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req) as r:
            print(ref, r.headers["Docker-Content-Digest"], r.headers["Content-Type"].split(";")[0], sep="\t")
    except urllib.error.URLError:
        print(ref, "-", "-", sep="\t")
EOF
}
# at_source FILE: how many refs of a digests FILE have the source's digest.
at_source() {
    awk -F'\t' 'NR == FNR { src[$1] = $2; next } $2 != "-" && src[$1] == $2 { n++ } END { print n + 0 }' \
        "$WORK/source-digests.tsv" "$1"
}
# Per run, how many tags each target holds at the source's digest.
LOAD_AT_SOURCE=()
PUSH_AT_SOURCE=()

set +e
for RUN in $(seq "$REPEAT"); do
if [ "$RUN" -gt 1 ]; then
    stop_registry target_a
    stop_registry target_b
    rm -rf "$A_LAYOUT" "$B_OUT" "$WORK/refs.txt" "$UNPACKED" "$WORK/mirror-config" \
        "$WORK/registry-target_a" "$WORK/registry-target_b"
    rm -f "$A_OUT"/*
fi
# (a) the seed pipeline, stage by stage
timed a1_enumerate bash -o pipefail -c '
    curl -sf "http://$HOST/v2/_catalog?n=1000" | jq -r ".repositories[]" |
    while read -r repo; do
        curl -sf "http://$HOST/v2/$repo/tags/list" | jq -r --arg r "$repo" "$JQ_TAGS"
    done > "$A_OUT/../refs.txt"'
timed a2_skopeo_copy bash -o pipefail -c '
    while read -r ref; do
        skopeo copy -q --all --src-tls-verify=false "docker://$HOST/$ref" "oci:$A_LAYOUT:$ref" < /dev/null || exit 1
    done < "$A_OUT/../refs.txt"'
timed a3_tar_zstd_split bash -o pipefail -c \
    'tar -C "$A_LAYOUT" -cf - . | zstd -q -T0 -3 | split -b 1G -d - "$A_OUT/images.tar.zst."'
timed a4_sha256sum bash -c 'cd "$A_OUT" && sha256sum images.tar.zst.* > SHA256SUMS'
timed a5_minisign_sign minisign -S -s "$WORK/keys/seed.key" -m "$A_OUT/SHA256SUMS"
timed a6_sync bash -c 'sync "$A_OUT"/*'

# (b) bundle create
if [ "$BUNDLE_OK" = 1 ]; then
    timed b_bundle_create "$BUNDLE" create --from "$HOST" --tls-verify=false --out "$B_OUT" --key "$B_KEY"
else
    pending b_bundle_create
fi

# (c) and (d) read media as just plugged in: neither output in the page
# cache (bundle create already leaves its volumes out of it; the seed
# pipeline's stay cached unless evicted). Untimed.
evict() { for f in "$@"; do [ -f "$f" ] && dd if="$f" iflag=nocache count=0 status=none; done; }
evict "$A_OUT"/images.tar.zst.* "$B_OUT"/images.tar.zst.*

# (c) the standard tools' shallow check of (a)'s output
timed c1_minisign_verify bash -c 'cd "$A_OUT" && minisign -Vm SHA256SUMS -p "$0"' "$WORK/keys/seed.pub"
timed c2_sha256sum_check bash -c 'cd "$A_OUT" && sha256sum -c --quiet SHA256SUMS'
timed c3_zstd_d_tar_t bash -o pipefail -c 'cat "$A_OUT"/images.tar.zst.* | zstd -q -d | tar -t > /dev/null'

# (d) bundle verify
if [ "$BUNDLE_OK" = 1 ] && [ "${STATE[b_bundle_create]}" = ok ]; then
    timed d_bundle_verify "$BUNDLE" verify "$B_OUT" --pubkey "$B_PUB"
else
    pending d_bundle_verify
fi

# (e) physical limits on the same bytes
timed e1_get_every_blob curl -s -H "Accept: $ACCEPT" -w '%{http_code}\n' -K "$WORK/urls.cfg"
bad=$(grep -vc '^200$' "$TIMES_DIR/e1_get_every_blob.$RUN.out" || true)
[ "$bad" = 0 ] || { log "e1: $bad of $URLS GETs did not answer 200"; STATE[e1_get_every_blob]=failed; GET_BAD=$bad; }
timed e2_sha256_pass bash -o pipefail -c 'xargs -0 cat < "$BLOBFILES" | openssl sha256 > /dev/null'
timed e3_zstd_pass bash -o pipefail -c 'xargs -0 cat < "$BLOBFILES" | zstd -q -T1 -1 -c > /dev/null'
timed e4_write_fsync dd if=/dev/zero of="$WORK/dd.bin" bs=1M count="$DD_MB" conv=fsync status=none
rm -f "$WORK/dd.bin"

# (f) and (g) load the same images into two registries, each empty at the
# start of every run: (f) (a)'s output the standard way, (g) (b)'s with
# bundle push. They come last so that the stages above run as they always
# have. Each stage's registry CPU is its target's.
for name in target_a target_b; do
    mkdir -p "$WORK/registry-$name"
    start_registry "$name" "$WORK/registry-$name"
done
export TARGET_A=${REG_HOST[target_a]} TARGET_B=${REG_HOST[target_b]}
log "push targets: (f) $TARGET_A, (g) $TARGET_B"
mkdir -p "$UNPACKED"
# What the source gives each tag, to compare the targets with (untimed).
digests "$HOST" > "$WORK/source-digests.tsv"

# (f) the standard load: join the volumes (as just plugged in, like (c)),
# unpack the layout, then one skopeo copy per tag, one after the other like
# a2. skopeo 1.9.3 wrote every image into the layout as OCI, so the Docker-
# typed ones reach the target with other digests; counted, not a failure.
STAGE_REG=target_a
evict "$A_OUT"/images.tar.zst.*
timed f1_unpack bash -o pipefail -c 'cat "$A_OUT"/images.tar.zst.* | zstd -q -d | tar -x -C "$UNPACKED"'
timed f2_skopeo_copy bash -o pipefail -c '
    while read -r ref; do
        skopeo copy -q --all --dest-tls-verify=false "oci:$UNPACKED:$ref" "docker://$TARGET_A/$ref" < /dev/null || exit 1
    done < "$A_OUT/../refs.txt"'
digests "$TARGET_A" > "$WORK/target_a-digests.tsv"
LOAD_AT_SOURCE+=("$(at_source "$WORK/target_a-digests.tsv")")

# (g) bundle push, volumes as just plugged in; then the same command again
# into the now loaded registry (volumes evicted again, so that a push that
# reads them anyway is charged for it).
STAGE_REG=target_b
if [ "$PUSH_OK" = 1 ] && [ "$BUNDLE_OK" = 1 ] && [ "${STATE[b_bundle_create]}" = ok ]; then
    push_cmd=("$BUNDLE" push "$B_OUT" --to "$TARGET_B" --pubkey "$B_PUB" --tls-verify=false
        --mirror-config "$WORK/mirror-config")
    evict "$B_OUT"/images.tar.zst.*
    timed g1_bundle_push "${push_cmd[@]}"
    digests "$TARGET_B" > "$WORK/target_b-digests.tsv"
    PUSH_AT_SOURCE+=("$(at_source "$WORK/target_b-digests.tsv")")
    evict "$B_OUT"/images.tar.zst.*
    timed g2_bundle_push_again "${push_cmd[@]}"
else
    pending g1_bundle_push
    pending g2_bundle_push_again
    PUSH_AT_SOURCE+=(pending)
fi
STAGE_REG=source
done
set -e

# Per run: the totals and the four ratios, to show the spread.
nth() { local i=$1; shift; eval "echo \${$i:-}"; }
times_x() { awk "BEGIN{ if ($2 > 0) printf \"%.3f\", $1 / $2; else print \"n/a\" }"; }
PER_RUN=
for ((i = 1; i <= REPEAT; i++)); do
    at=0; ct=0; ft=0
    for n in "${ORDER[@]}"; do
        # shellcheck disable=SC2086
        w=$(nth "$i" ${WALLS[$n]})
        [ -n "$w" ] || continue
        case "$n" in
            a*) at=$(awk "BEGIN{print $at + $w}") ;;
            c*) ct=$(awk "BEGIN{print $ct + $w}") ;;
            f*) ft=$(awk "BEGIN{print $ft + $w}") ;;
        esac
    done
    # shellcheck disable=SC2086
    bw=$(nth "$i" ${WALLS[b_bundle_create]:-})
    # shellcheck disable=SC2086
    dw=$(nth "$i" ${WALLS[d_bundle_verify]:-})
    PER_RUN+="- run $i: seed pipeline $at s, bundle create ${bw:-pending} s"
    [ -n "$bw" ] && PER_RUN+=" ($(awk "BEGIN{printf \"%.3f\", $bw / $at}")×)"
    PER_RUN+="; shallow check $ct s, bundle verify ${dw:-pending} s"
    [ -n "$dw" ] && PER_RUN+=" ($(awk "BEGIN{printf \"%.3f\", $dw / $ct}")×)"
    # shellcheck disable=SC2086
    g1w=$(nth "$i" ${WALLS[g1_bundle_push]:-})
    # shellcheck disable=SC2086
    g2w=$(nth "$i" ${WALLS[g2_bundle_push_again]:-})
    PER_RUN+="; standard load $ft s, bundle push ${g1w:-pending} s"
    [ -n "$g1w" ] && PER_RUN+=" ($(times_x "$g1w" "$ft")×)"
    PER_RUN+=", again ${g2w:-pending} s"
    [ -n "$g2w" ] && PER_RUN+=" ($(times_x "$g2w" "$g1w")× of the push)"
    PER_RUN+="; tags at the source digest: pushed ${PUSH_AT_SOURCE[i - 1]:-pending}, loaded ${LOAD_AT_SOURCE[i - 1]:-n/a} of $(wc -l < "$WORK/source-digests.tsv")"
    PER_RUN+=$'\n'
done

# Each stage: median wall and CPU over the runs, largest RSS.
for n in "${ORDER[@]}"; do
    # shellcheck disable=SC2086
    WALL[$n]=$(median ${WALLS[$n]})
    # shellcheck disable=SC2086
    CPU[$n]=$(median ${CPUS[$n]})
    # shellcheck disable=SC2086
    RCPU[$n]=$(median ${RCPUS[$n]})
done

# ------------------------------------------------------------------ digests

# Docker-typed tags whose digest changed: the registry's Docker-Content-Digest
# (source-digests.tsv, from the run above) against the digest the output's
# index.json gives that ref.name.
count_changed() { # count_changed INDEX_JSON -> "changed docker_total missing"
    python3 - "$WORK/source-digests.tsv" "$1" <<'EOF'
import json, sys
src = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
try:
    index = json.load(open(sys.argv[2]))
except Exception:
    print("n/a n/a n/a"); sys.exit(0)
names = {}
for m in index.get("manifests", []):
    name = (m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
    if name:
        names[name] = m["digest"]
docker = [(ref, d) for ref, d, mt in src if mt.startswith("application/vnd.docker.")]
changed = sum(1 for ref, d in docker if ref in names and names[ref] != d)
missing = sum(1 for ref, d in docker if ref not in names)
print(changed, len(docker), missing)
EOF
}
read -r A_CHANGED DOCKER_TAGS A_MISSING < <(count_changed "$A_LAYOUT/index.json")
if [ "${STATE[b_bundle_create]}" = ok ]; then
    (cat "$B_OUT"/images.tar.zst.* | zstd -q -d | tar -xO index.json > "$WORK/bundle-index.json") 2>/dev/null || true
    read -r B_CHANGED _ B_MISSING < <(count_changed "$WORK/bundle-index.json")
else
    B_CHANGED=pending B_MISSING=pending
fi
TAGS_TOTAL=$(wc -l < "$WORK/source-digests.tsv")

# Disk used by each side's outputs.
du_mib() { du -sm "$@" 2>/dev/null | awk '{s+=$1} END{print s+0}'; }
A_LAYOUT_MB=$(du_mib "$A_LAYOUT")
A_VOL_MB=$(du_mib "$A_OUT")
B_VOL_MB=$( [ -d "$B_OUT" ] && du_mib "$B_OUT" || echo pending)
F_LAYOUT_MB=$(du_mib "$UNPACKED")
TA_MB=$(du_mib "$WORK/registry-target_a")
TB_MB=$(du_mib "$WORK/registry-target_b")

# ------------------------------------------------------------------ report

sum_of() { # sum_of PREFIX: total wall of the ok stages starting with PREFIX, or "failed"
    local s=0 n
    for n in "${ORDER[@]}"; do
        case "$n" in "$1"*)
            [ "${STATE[$n]}" = ok ] || { echo "${STATE[$n]}"; return; }
            s=$(awk "BEGIN{print $s + ${WALL[$n]}}") ;;
        esac
    done
    printf '%.2f' "$s"
}
cpu_of() { # cpu_of PREFIX [rcpu]: total CPU s of the stages starting with PREFIX
    local s=0 n v
    for n in "${ORDER[@]}"; do
        if [ "${2:-}" = rcpu ]; then v=${RCPU[$n]:-}; else v=${CPU[$n]:-}; fi
        case "$n" in "$1"*) [ -n "$v" ] && s=$(awk "BEGIN{print $s + $v}") ;; esac
    done
    printf '%.2f' "$s"
}
max_of() {
    local m=0 n
    for n in "${ORDER[@]}"; do
        case "$n" in "$1"*) [ -n "${RSS[$n]}" ] && m=$(awk "BEGIN{print (${RSS[$n]} > $m) ? ${RSS[$n]} : $m}") ;; esac
    done
    printf '%.1f' "$m"
}
ratio() { # ratio NUM DEN: NUM/DEN, or why there is none (pending, failed)
    case "$1" in ''|*[!0-9.]*) echo "${1:-pending}"; return ;; esac
    case "$2" in ''|*[!0-9.]*) echo "${2:-pending}"; return ;; esac
    awk "BEGIN{ if ($2 > 0) printf \"%.3f\", $1 / $2; else print \"n/a\" }"
}
mbps() {
    case "$1" in ''|*[!0-9.]*) echo "" ; return ;; esac
    awk "BEGIN{ if ($1 > 0) printf \"%.0f\", $CONTENT_BYTES / 1048576 / $1 }"
}
cell() { # cell NAME FIELD
    local n=$1
    case "${STATE[$n]}" in
        ok) case "$2" in wall) echo "${WALL[$n]}" ;; cpu) echo "${CPU[$n]}" ;; rcpu) echo "${RCPU[$n]}" ;; *) echo "${RSS[$n]}" ;; esac ;;
        *) echo "${STATE[$n]}" ;;
    esac
}

A_TOTAL=$(sum_of a)
C_TOTAL=$(sum_of c)
E_TOTAL=$(sum_of e)
B_WALL=$( [ "${STATE[b_bundle_create]}" = ok ] && echo "${WALL[b_bundle_create]}" || echo "${STATE[b_bundle_create]}")
D_WALL=$( [ "${STATE[d_bundle_verify]}" = ok ] && echo "${WALL[d_bundle_verify]}" || echo "${STATE[d_bundle_verify]}")
F_TOTAL=$(sum_of f)
G1_WALL=$( [ "${STATE[g1_bundle_push]}" = ok ] && echo "${WALL[g1_bundle_push]}" || echo "${STATE[g1_bundle_push]}")
G2_WALL=$( [ "${STATE[g2_bundle_push_again]}" = ok ] && echo "${WALL[g2_bundle_push_again]}" || echo "${STATE[g2_bundle_push_again]}")
CREATE_RATIO=$(ratio "$B_WALL" "$A_TOTAL")
VERIFY_RATIO=$(ratio "$D_WALL" "$C_TOTAL")
PUSH_RATIO=$(ratio "$G1_WALL" "$F_TOTAL")
REPUSH_RATIO=$(ratio "$G2_WALL" "$G1_WALL")

declare -A LABEL=(
    [a1_enumerate]="(a) curl _catalog + tags/list"
    [a2_skopeo_copy]="(a) skopeo copy --all per tag → one OCI layout (sequential)"
    [a3_tar_zstd_split]="(a) tar \| zstd -T0 -3 \| split -b 1G"
    [a4_sha256sum]="(a) sha256sum volumes > SHA256SUMS"
    [a5_minisign_sign]="(a) minisign -S SHA256SUMS"
    [a6_sync]="(a) sync volumes to disk"
    [b_bundle_create]="**(b) bundle create**"
    [c1_minisign_verify]="(c) minisign -Vm SHA256SUMS"
    [c2_sha256sum_check]="(c) sha256sum -c SHA256SUMS"
    [c3_zstd_d_tar_t]="(c) cat volumes \| zstd -d \| tar -t"
    [d_bundle_verify]="**(d) bundle verify** (deep)"
    [e1_get_every_blob]="(e) one GET of every blob (one curl, keep-alive)"
    [e2_sha256_pass]="(e) one SHA-256 pass (openssl)"
    [e3_zstd_pass]="(e) one zstd -T1 -1 pass"
    [e4_write_fsync]="(e) one write of the same size (dd conv=fsync)"
    [f1_unpack]="(f) cat \| zstd -d \| tar -x"
    [f2_skopeo_copy]="(f) skopeo copy oci:… per tag → registry (sequential)"
    [g1_bundle_push]="**(g) bundle push**"
    [g2_bundle_push_again]="(g) bundle push again (already loaded)"
)

row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
{
    echo "| stage | wall s | max RSS MiB | ratio bundle/baseline | MiB/s of content | CPU s (user+sys) | registry CPU s |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    # (e) runs before (f) and (g) but is listed last: the reference below both sides.
    for part in a b c d f g e; do
    for n in "${ORDER[@]}"; do
        [[ "$n" == "$part"* ]] || continue
        case "$n" in
            b_*) row "${LABEL[$n]}" "$(cell "$n" wall)" "$(cell "$n" rss)" "**$CREATE_RATIO** (target ≤ 0.3)" "$(mbps "$B_WALL")" "$(cell "$n" cpu)" "$(cell "$n" rcpu)" ;;
            d_*) row "${LABEL[$n]}" "$(cell "$n" wall)" "$(cell "$n" rss)" "**$VERIFY_RATIO** (target ≤ 0.5)" "$(mbps "$D_WALL")" "$(cell "$n" cpu)" "$(cell "$n" rcpu)" ;;
            g1_*) row "${LABEL[$n]}" "$(cell "$n" wall)" "$(cell "$n" rss)" "**$PUSH_RATIO** (target ≤ 0.5)" "$(mbps "$G1_WALL")" "$(cell "$n" cpu)" "$(cell "$n" rcpu)" ;;
            # Moves no content: no MiB/s; its ratio is against the first push.
            g2_*) row "${LABEL[$n]}" "$(cell "$n" wall)" "$(cell "$n" rss)" "**$REPUSH_RATIO** of the push (target ≤ 0.05)" "" "$(cell "$n" cpu)" "$(cell "$n" rcpu)" ;;
            a1_*|a5_*|a6_*|c1_*) row "${LABEL[$n]}" "$(cell "$n" wall)" "$(cell "$n" rss)" "" "" "$(cell "$n" cpu)" "$(cell "$n" rcpu)" ;;
            *) row "${LABEL[$n]}" "$(cell "$n" wall)" "$(cell "$n" rss)" "" "$(mbps "$(cell "$n" wall)")" "$(cell "$n" cpu)" "$(cell "$n" rcpu)" ;;
        esac
        case "$n" in
            a6_*) row "**(a) seed pipeline, total**" "**$A_TOTAL**" "$(max_of a)" "" "$(mbps "$A_TOTAL")" "$(cpu_of a)" "$(cpu_of a rcpu)" ;;
            c3_*) row "**(c) standard-tools shallow check, total**" "**$C_TOTAL**" "$(max_of c)" "" "$(mbps "$C_TOTAL")" "$(cpu_of c)" "$(cpu_of c rcpu)" ;;
            e4_*) row "(e) sum of the physical passes" "$E_TOTAL" "$(max_of e)" "" "$(mbps "$E_TOTAL")" "$(cpu_of e)" "$(cpu_of e rcpu)" ;;
            f2_*) row "**(f) standard load, total**" "**$F_TOTAL**" "$(max_of f)" "" "$(mbps "$F_TOTAL")" "$(cpu_of f)" "$(cpu_of f rcpu)" ;;
        esac
    done
    done
} > "$WORK/table.md"

target() { # target VALUE LIMIT
    case "$1" in ''|*[!0-9.]*) echo "${1:-pending}"; return ;; esac
    awk "BEGIN{ print ($1 <= $2) ? \"met\" : \"NOT met\" }"
}
B_RSS=$( [ "${STATE[b_bundle_create]}" = ok ] && echo "${RSS[b_bundle_create]}" || echo "${STATE[b_bundle_create]}")
D_RSS=$( [ "${STATE[d_bundle_verify]}" = ok ] && echo "${RSS[d_bundle_verify]}" || echo "${STATE[d_bundle_verify]}")
G_RSS=$( [ "${STATE[g1_bundle_push]}" = ok ] && max_of g || echo "${STATE[g1_bundle_push]}")

# Tags at the source's digest in each target: one figure, or each run's if
# they differ.
runs_of() {
    if [ "$(printf '%s\n' "$@" | sort -u | wc -l)" -le 1 ]; then echo "${1:-n/a}"; else (IFS=/; echo "$* (by run)"); fi
}
PUSH_MATCH=$(runs_of "${PUSH_AT_SOURCE[@]}")
LOAD_MATCH=$(runs_of "${LOAD_AT_SOURCE[@]}")
PUSH_MATCH_NOTE=
case "$PUSH_MATCH" in
    pending|"$TAGS_TOTAL") ;;
    *) PUSH_MATCH_NOTE=" — **NOT all**: bundle push must keep every digest"
       log "bundle push: $PUSH_MATCH of $TAGS_TOTAL tags at the source digest" ;;
esac

profile_line=$(profile_summary "$PROFILE_DIR/profile.json")

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
    echo "# bundle benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Command: \`$CMDLINE\`"
    echo
    echo "## Machine"
    echo
    echo "- nproc: $(nproc); CPU: ${cpu_model:-unknown}; memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr); load average before the stages: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $(skopeo --version); zstd $(zstd -V | grep -o 'v[0-9.]*' | head -1); $(/usr/bin/docker-registry --version 2>&1 | head -1)"
    echo "- minisign $(minisign -v 2>&1 | awk '{print $2}'); $(openssl version | cut -d' ' -f1-2); curl $(curl -V | head -1 | cut -d' ' -f2)"
    echo "- bundle: $( [ "$BUNDLE_OK" = 1 ] && ("$BUNDLE" --version 2>/dev/null || echo "$BUNDLE") || echo "not measured: $BUNDLE_NOTE")$( [ -z "$PUSH_NOTE" ] || [ "$BUNDLE_OK" != 1 ] || echo "; push not measured: $PUSH_NOTE") (git $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO_ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ', src modified'))"
    echo
    echo "## Data"
    echo
    echo "- profile v$PROFILE_VERSION at scale $SCALE: $profile_line"
    echo "- registry content: $CONTENT_BLOBS blobs (layers, configs, manifests), $CONTENT_MB MiB; $URLS distinct digests fetched in (e)$( [ "$GET_BAD" = 0 ] || echo ", $GET_BAD of them NOT answering 200")"
    echo "- $SEED_NOTE"
    echo
    echo "## Results"
    echo
    cat "$WORK/table.md"
    echo
    echo "Targets: create ≤ 0.3× seed pipeline: **$(target "$CREATE_RATIO" 0.3)** ($CREATE_RATIO); deep verify ≤ 0.5× shallow check: **$(target "$VERIFY_RATIO" 0.5)** ($VERIFY_RATIO); peak RSS ≤ 100 MiB: create **$(target "$B_RSS" 100)** ($B_RSS MiB), verify **$(target "$D_RSS" 100)** ($D_RSS MiB), push **$(target "$G_RSS" 100)** ($G_RSS MiB); push ≤ 0.5× standard load: **$(target "$PUSH_RATIO" 0.5)** ($PUSH_RATIO); re-push of a loaded bundle ≤ 0.05× push: **$(target "$REPUSH_RATIO" 0.05)** ($REPUSH_RATIO)."
    echo
    echo "Docker-typed tags (schema2 or manifest list) whose digest differs from the registry's: seed pipeline **$A_CHANGED of $DOCKER_TAGS** (missing: $A_MISSING); bundle **$B_CHANGED of $DOCKER_TAGS** (missing: $B_MISSING). $TAGS_TOTAL tags in all."
    echo
    echo "Tags at the source registry's digest once loaded: push **$PUSH_MATCH of $TAGS_TOTAL**$PUSH_MATCH_NOTE; standard load **$LOAD_MATCH of $TAGS_TOTAL** (skopeo copy from the oci: layout, whose Docker-typed images skopeo rewrote to OCI in (a))."
    echo
    echo "Disk: seed pipeline OCI layout $A_LAYOUT_MB MiB + volumes $A_VOL_MB MiB; bundle output $B_VOL_MB MiB. Loading: (f) unpacked layout $F_LAYOUT_MB MiB, then the target's storage $TA_MB MiB; (g) the target's storage $TB_MB MiB."
    echo
    echo "Stages run $REPEAT time(s); the table gives each stage's median wall and CPU time and its largest RSS."
    echo
    printf '%s' "$PER_RUN"
    echo
    echo "Whole run (build, seeding if any, all stages): $(( $(date +%s) - RUN_START )) s."
    echo
    echo "Wall, max RSS and CPU from \`/usr/bin/time -v\`; for a pipeline the RSS is the largest single process, not the sum; registry CPU is what the registry process used during the stage (from /proc): the source registry's, or for (f) and (g) the target's. Page cache warm for the registry's blobs (read once before the stages); both outputs evicted from it before (c) and (d), as media just plugged in; \`sync -f\` of the work filesystem (untimed) before every stage; bundle create fsyncs its volumes, so (a) ends with \`sync\` of its volumes too. (f) and (g) push into two more registries of the same build and config, each with empty storage in every run; the volumes are evicted from the page cache before (f), before (g)'s push and again before its re-push; (f)'s skopeo copy reads the layout it just unpacked, from the page cache."
} > "$RESULTS_DIR/latest.md"
cp "$RESULTS_DIR/latest.md" "$RESULTS_DIR/scale-$SCALE.md"

echo
cat "$RESULTS_DIR/latest.md"
echo
log "written to bench/results/latest.md and bench/results/scale-$SCALE.md"
