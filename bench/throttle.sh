#!/usr/bin/env bash
# Stage commands are single-quoted on purpose: the `bash -c` they run in expands them.
# shellcheck disable=SC2016
# bench/throttle.sh — parallel downloads behind a throttled link (see
# BENCHMARKS.md, "Throttled link: parallel downloads").
#
# The cached, seeded registry of bench/run.sh behind bench/throttle_proxy.py,
# which caps each TCP connection at --rate bytes/s and adds --latency ms to
# each new connection and each request; through it, in one run:
#   bundle create --jobs N for each N of --jobs-list, and with no --jobs (the
#       default), each over the whole catalog and checked with bundle verify
#       afterwards (not timed);
#   the baseline: run.sh's (a) step 2, skopeo copy --all per tag into one OCI
#       layout, one tag after the other;
#   references: one curl GETting every blob over one keep-alive connection
#       (measured), and the floors bytes / rate and bytes / (N × rate).
# Results go to bench/results/throttle.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/throttle.sh [options]

  --rate RATE        cap of each connection, server to client, in bytes/s
                     (10M = 10 MB/s, 1.5Mi = 1.5 MiB/s; default 10M)
  --latency MS       added to each new connection and to each request (default 20)
  --scale S          which cached profile of bench/run.sh (default 0.1: 205 MiB;
                     seeded through run.sh --seed-only if missing)
  --jobs-list "N…"   the --jobs values to run (default "1 4 8"); bundle create
                     without --jobs (its default) always runs too
  --repeat N         run the stages N times, report medians (default 1)
  --no-skopeo        leave out the skopeo baseline
  --no-curl          leave out the one-connection curl reference
  --cache DIR        where run.sh keeps the seeded storage (default /var/tmp/bundle-bench)
  --work DIR         scratch space (default CACHE/throttle-work); removed unless --keep
  --keep             keep the scratch outputs (bundles, layout, stage logs, proxy log)
  --no-build         do not run `cargo build --release` first
  --bundle PATH      the bundle binary (default target/release/bundle)
  -h, --help         this text

A binary without `create --jobs` still runs the default create; the --jobs
rows then say "no --jobs in this binary".
EOF
}

RUN_START=$(date +%s)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$REPO_ROOT/bench"
CMDLINE="bench/throttle.sh"
for arg in "$@"; do CMDLINE+=" $(printf '%q' "$arg")"; done

RATE=10M
LATENCY=20
SCALE=0.1
JOBS_LIST="1 4 8"
REPEAT=1
SKOPEO=1
CURL=1
CACHE=/var/tmp/bundle-bench
WORK=
KEEP=0
BUILD=1
BUNDLE="$REPO_ROOT/target/release/bundle"

while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=$2; shift 2 ;;
        --latency) LATENCY=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --jobs-list) JOBS_LIST=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --no-skopeo) SKOPEO=0; shift ;;
        --no-curl) CURL=0; shift ;;
        --cache) CACHE=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "throttle.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

BENCH_LOG_TAG=throttle BENCH_NAME=throttle.sh
# log, die, need, free_port, the registries, timed, pending, median
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

need skopeo skopeo
need curl curl
need jq jq
need python3 python3
need /usr/bin/docker-registry docker-registry
need /usr/bin/time time
check_needs
positive --repeat "$REPEAT"
case "$LATENCY" in ''|*[!0-9.]*) die "--latency takes milliseconds (a number)" ;; esac
for j in $JOBS_LIST; do
    positive --jobs-list "$j"
done
[ "$BUILD" = 0 ] || command -v cargo >/dev/null 2>&1 || die "cargo not found (or pass --no-build)"
RATE_BPS=$(python3 -B -c 'import sys; sys.path.insert(0, sys.argv[1]); import throttle_proxy as t; r = t.parse_rate(sys.argv[2]); assert r > 0; print(int(r))' \
    "$BENCH_DIR" "$RATE" 2>/dev/null) || die "--rate: not a positive rate: $RATE (say 10M, 10MB/s, 1.5Mi)"
RATE_MB=$(awk "BEGIN{printf \"%g\", $RATE_BPS / 1e6}")

SCALE=$(python3 -c 'import sys; s=float(sys.argv[1]); assert s>0; print(f"{s:g}")' "$SCALE") \
    || die "--scale must be a positive number"
PROFILE_VERSION=$(python3 "$BENCH_DIR/gen_profile.py" --print-version x)
PROFILE_DIR="$CACHE/p$PROFILE_VERSION-s$SCALE"
STORAGE="$PROFILE_DIR/storage"
: "${WORK:=$CACHE/throttle-work}"
RESULTS="$BENCH_DIR/results/throttle.md"

REG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bundle-throttle.XXXXXX")
PROXY_PID=
cleanup() {
    local rc=$?
    stop_stage
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

# ------------------------------------------------------------------ build

if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$BUNDLE" ] || die "no bundle binary at $BUNDLE"
"$BUNDLE" create --help 2>/dev/null | grep -q -- '--from' || die "$BUNDLE has no create --from"
"$BUNDLE" verify --help >/dev/null 2>&1 || die "$BUNDLE has no verify"
CREATE_HELP=$("$BUNDLE" create --help 2>/dev/null)
if grep -q -- '--jobs' <<< "$CREATE_HELP"; then
    HAS_JOBS=1
    # "--jobs <N>  … [default: 6]": the default create's N, for its label.
    DEFAULT_JOBS=$(grep -- '--jobs' <<< "$CREATE_HELP" | sed -n 's/.*\[default: \([0-9]*\)\].*/\1/p' | head -1)
    DEFAULT_LABEL="**bundle create** (no --jobs: default${DEFAULT_JOBS:+ $DEFAULT_JOBS})"
else
    HAS_JOBS=0
    DEFAULT_JOBS=
    DEFAULT_LABEL="**bundle create** (no --jobs: this binary has none)"
    log "$BUNDLE has no create --jobs: the --jobs rows will say so"
fi
SRC_STATE="git $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
git -C "$REPO_ROOT" diff --quiet HEAD -- src 2>/dev/null || SRC_STATE+=", src modified"
if [ "$BUILD" = 1 ]; then
    SRC_STATE="built by this run from $SRC_STATE"
else
    SRC_STATE="binary of $(date -u -r "$BUNDLE" +%Y-%m-%dT%H:%M:%SZ), not built by this run; this tree: $SRC_STATE"
fi

# ------------------------------------------------------------------ registry and proxy

if [ ! -f "$PROFILE_DIR/seeded.ok" ]; then
    log "no seeded storage in $PROFILE_DIR: seeding it with bench/run.sh --seed-only"
    "$BENCH_DIR/run.sh" --seed-only --scale "$SCALE" --cache "$CACHE" || die "seeding with run.sh failed"
fi
SEED_NOTE="cached storage of bench/run.sh ($PROFILE_DIR): $(cat "$PROFILE_DIR/seeded.ok")"

rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$RESULTS")"
TIMES_DIR="$WORK/times"
mkdir -p "$TIMES_DIR" "$WORK/keys"

start_registry source "$STORAGE"
HOST=${REG_HOST[source]}
log "registry on $HOST (storage $STORAGE)"

# What the registry holds: every blob file (layers, configs, manifests).
BLOBDIR="$STORAGE/docker/registry/v2/blobs"
find "$BLOBDIR" -type f -name data -print0 > "$WORK/blobfiles"
CONTENT_BYTES=$(xargs -0 stat -c %s < "$WORK/blobfiles" | awk '{s+=$1} END{printf "%d\n", s}')
CONTENT_BLOBS=$(tr -cd '\0' < "$WORK/blobfiles" | wc -c)
CONTENT_MB=$(awk "BEGIN{printf \"%.1f\", $CONTENT_BYTES / 1e6}")
# Warm the page cache: the link is the bottleneck, not the registry's disk.
xargs -0 cat < "$WORK/blobfiles" > /dev/null

PROXY_STATS="$WORK/proxy-stats.json"
python3 "$BENCH_DIR/throttle_proxy.py" "$HOST" --rate "$RATE_BPS" --latency "$LATENCY" \
    --port-file "$WORK/proxy.port" --stats "$PROXY_STATS" --log "$WORK/proxy-connections.log" --trace "$WORK/proxy-trace.jsonl" \
    > "$WORK/proxy.out" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/proxy.port" ] && break
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$WORK/proxy.out" >&2; die "the proxy did not start"; }
    sleep 0.1
done
[ -s "$WORK/proxy.port" ] || die "the proxy did not start in 10 s"
PROXY="127.0.0.1:$(cat "$WORK/proxy.port")"
curl -sf "http://$PROXY/v2/" >/dev/null || die "the registry does not answer through the proxy ($PROXY)"
log "$(cat "$WORK/proxy.out")"

# The tags, from the registry itself (untimed): the skopeo loop's list.
export HOST PROXY JQ_TAGS='(.tags // [])[] | $r + ":" + .'
curl -sf "http://$HOST/v2/_catalog?n=1000" | jq -r '.repositories[]' |
while read -r repo; do
    curl -sf "http://$HOST/v2/$repo/tags/list" | jq -r --arg r "$repo" "$JQ_TAGS"
done > "$WORK/refs.txt"
TAGS=$(wc -l < "$WORK/refs.txt")
log "registry content: $CONTENT_BLOBS blobs, $CONTENT_MB MB, $TAGS tags"

# The reference's URL list: every blob and manifest once, through the proxy.
blob_url_config "$STORAGE" "$PROXY" > "$WORK/urls.cfg"
URLS=$(grep -c '^url' "$WORK/urls.cfg")

"$BUNDLE" keygen --out "$WORK/keys/k" > "$WORK/keys/keygen.log" 2>&1 || die "bundle keygen failed: $(cat "$WORK/keys/keygen.log")"
KEY='' PUB=''
for k in "$WORK/keys/k.key" "$WORK/keys/k"; do [ -f "$k" ] && KEY=$k && break; done
for k in "$WORK/keys/k.pub" "$WORK/keys/k.key.pub"; do [ -f "$k" ] && PUB=$k && break; done
if [ -z "$KEY" ] || [ -z "$PUB" ]; then die "bundle keygen gave no key pair in $WORK/keys"; fi

# ------------------------------------------------------------------ per-stage proxy figures

# proxy_read: ask the proxy for its counters (SIGUSR1; it also resets its peak
# of concurrent connections) and set P_UP (its clock) P_CONNS P_PEAK P_BYTES
# P_REQS P_XFER P_PACED P_WAIT from them (the last three: seconds summed over connections
# that a response was in flight, of which paced by the cap, and waiting for
# the client to read).
P_DUMPS=0
proxy_read() {
    local n
    kill -USR1 "$PROXY_PID"
    for _ in $(seq 300); do
        n=$(jq -r '.dumps // 0' "$PROXY_STATS" 2>/dev/null || echo 0)
        [ "${n:-0}" -gt "$P_DUMPS" ] && break
        sleep 0.01
    done
    [ "${n:-0}" -gt "$P_DUMPS" ] || die "the proxy does not answer SIGUSR1"
    P_DUMPS=$n
    read -r P_UP P_CONNS P_PEAK P_BYTES P_REQS P_XFER P_PACED P_WAIT < <(jq -r \
        '[.uptime_s, .connections, .peak_active, .bytes_down, .requests, .transfer_s, .throttled_s, .client_wait_s] | @tsv' "$PROXY_STATS")
}
declare -A PCPUS=() PPEAK=() PCONNS=() PMB=() PREQS=() PXFER=() PPACED=() PWAIT=() PWIN=()
on_stage_start() {
    proxy_read
    S_TICKS=$(reg_ticks "$PROXY_PID") S_CONNS=$P_CONNS S_BYTES=$P_BYTES S_REQS=$P_REQS
    S_XFER=$P_XFER S_PACED=$P_PACED S_WAIT=$P_WAIT S_UP=$P_UP
}
on_stage_end() {
    local name=$1 ticks
    ticks=$(reg_ticks "$PROXY_PID")
    proxy_read
    PCPUS[$name]+="$(awk "BEGIN{printf \"%.2f\", ($ticks - $S_TICKS) / $CLK_TCK}") "
    PCONNS[$name]+="$((P_CONNS - S_CONNS)) "
    PREQS[$name]+="$((P_REQS - S_REQS)) "
    PMB[$name]+="$(awk "BEGIN{printf \"%.1f\", ($P_BYTES - $S_BYTES) / 1e6}") "
    PPEAK[$name]=$(( P_PEAK > ${PPEAK[$name]:-0} ? P_PEAK : ${PPEAK[$name]:-0} ))
    PXFER[$name]+="$(awk "BEGIN{printf \"%.2f\", $P_XFER - $S_XFER}") "
    PPACED[$name]+="$(awk "BEGIN{printf \"%.2f\", $P_PACED - $S_PACED}") "
    PWAIT[$name]+="$(awk "BEGIN{printf \"%.2f\", $P_WAIT - $S_WAIT}") "
    PWIN[$name]+="$S_UP,$P_UP "
}

# ------------------------------------------------------------------ stages

declare -A VERIFY=() NOTE=()
# create_stage NAME [--jobs N]: bundle create of the whole catalog through the
# proxy, then (untimed) bundle verify of what it wrote.
create_stage() {
    local name=$1 out="$WORK/out-$1" images; shift
    rm -rf "$out"
    if timed "$name" "$BUNDLE" create "$@" --from "$PROXY" --tls-verify=false --out "$out" --key "$KEY"; then
        images=$(sed -n 's/.*: \([0-9]*\) images, .*/\1/p' "$TIMES_DIR/$name.$RUN.out")
        if [ "${images:-0}" != "$TAGS" ]; then
            STATE[$name]=failed
            log "$name bundled ${images:-no} images, not $TAGS"
        fi
        if "$BUNDLE" verify "$out" --pubkey "$PUB" > "$TIMES_DIR/$name.$RUN.verify" 2>&1; then
            VERIFY[$name]+="ok "
        else
            VERIFY[$name]+="FAILED "
            log "bundle verify of $name's output FAILED:"
            tail -5 "$TIMES_DIR/$name.$RUN.verify" >&2
        fi
    fi
    rm -rf "$out"
}

export LAYOUT="$WORK/layout" REFS="$WORK/refs.txt"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
PER_RUN=
for RUN in $(seq "$REPEAT"); do
    for j in $JOBS_LIST; do
        if [ "$HAS_JOBS" = 1 ]; then
            create_stage "create_j$j" --jobs "$j"
        else
            pending "create_j$j"
            NOTE[create_j$j]="no --jobs in this binary"
        fi
    done
    create_stage create_default
    if [ "$SKOPEO" = 1 ]; then
        rm -rf "$LAYOUT"
        timed skopeo_copy bash -o pipefail -c '
            while read -r ref; do
                skopeo copy -q --all --src-tls-verify=false "docker://$PROXY/$ref" "oci:$LAYOUT:$ref" < /dev/null || exit 1
            done < "$REFS"' || true
        got=$(jq '.manifests | length' "$LAYOUT/index.json" 2>/dev/null || echo 0)
        [ "$got" = "$TAGS" ] || { STATE[skopeo_copy]=failed; log "skopeo's layout holds $got tags, not $TAGS"; }
        rm -rf "$LAYOUT"
    fi
    if [ "$CURL" = 1 ]; then
        timed curl_one_connection curl -s -H "Accept: $ACCEPT" -w '%{http_code}\n' -K "$WORK/urls.cfg" || true
        bad=$(grep -vc '^200$' "$TIMES_DIR/curl_one_connection.$RUN.out" || true)
        [ "$bad" = 0 ] || { STATE[curl_one_connection]=failed; log "curl: $bad of $URLS GETs did not answer 200"; }
    fi
    line="- run $RUN:"
    for n in "${ORDER[@]}"; do
        w=$(echo "${WALLS[$n]}" | awk '{ print $NF }')
        [ -n "$w" ] && line+=" $n $w s;"
    done
    PER_RUN+="${line%;}"$'\n'
done

# ------------------------------------------------------------------ report

declare -A LABEL=(
    [create_default]=$DEFAULT_LABEL
    [skopeo_copy]="skopeo copy --all per tag → one OCI layout (sequential; run.sh's (a) step 2)"
    [curl_one_connection]="(ref) one curl, one keep-alive connection: every blob once ($URLS GETs)"
)
for j in $JOBS_LIST; do LABEL[create_j$j]="**bundle create --jobs $j**"; done

# Medians; the reference for speed-ups is --jobs 1 (or, without it, nothing).
# shellcheck disable=SC2086
med() { [ -n "$1" ] && median $1; }
mbps() { awk "BEGIN{ if ($1 > 0) printf \"%.1f\", $CONTENT_BYTES / 1e6 / $1 }"; }
J1_WALL=
if [ "${STATE[create_j1]:-}" = ok ]; then J1_WALL=$(med "${WALLS[create_j1]}"); fi
row() { printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
{
    echo "| stage | wall s | MB/s of content | × one connection's rate | speed-up over --jobs 1 | max RSS MiB | CPU s (user+sys) | registry CPU s | proxy CPU s | connections (peak / opened) | MB through the proxy | bundle verify |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for n in "${ORDER[@]}"; do
        case "${STATE[$n]}" in
            ok)
                w=$(med "${WALLS[$n]}")
                sp=
                [ -n "$J1_WALL" ] && sp=$(awk "BEGIN{printf \"%.2f×\", $J1_WALL / $w}")
                row "${LABEL[$n]}" "$w" "$(mbps "$w")" \
                    "$(awk "BEGIN{printf \"%.2f\", $CONTENT_BYTES / $w / $RATE_BPS}")" "$sp" \
                    "${RSS[$n]}" "$(med "${CPUS[$n]}")" "$(med "${RCPUS[$n]}")" "$(med "${PCPUS[$n]}")" \
                    "${PPEAK[$n]} / $(med "${PCONNS[$n]}" | sed 's/\.00$//')" "$(med "${PMB[$n]}")" \
                    "$(echo "${VERIFY[$n]:-}" | xargs)" ;;
            pending) row "${LABEL[$n]}" "${NOTE[$n]:-pending}" "" "" "" "" "" "" "" "" "" "" ;;
            *) row "${LABEL[$n]}" "${STATE[$n]}" "" "" "" "" "" "" "" "" "" "$(echo "${VERIFY[$n]:-}" | xargs)" ;;
        esac
    done
    # The floors: the bytes at the rate of one connection, and of N.
    floor1=$(awk "BEGIN{printf \"%.2f\", $CONTENT_BYTES / $RATE_BPS}")
    row "(ref) floor, one connection: bytes / rate" "$floor1" "$RATE_MB" "1.00" "" "" "" "" "" "" "" ""
    rtt1=$(awk "BEGIN{printf \"%.2f\", $floor1 + $URLS * $LATENCY / 1000}")
    row "(ref) floor, one connection with a round trip per GET: bytes / rate + $URLS × $LATENCY ms" "$rtt1" \
        "$(mbps "$rtt1")" "$(awk "BEGIN{printf \"%.2f\", $CONTENT_BYTES / $rtt1 / $RATE_BPS}")" "" "" "" "" "" "" "" ""
    # N connections: the bytes alone, and the bytes with one round trip per GET.
    # shellcheck disable=SC2086 # (split on purpose: a list of numbers)
    for j in $(printf '%s\n' $JOBS_LIST ${DEFAULT_JOBS:-} | sort -n -u); do
        [ "$j" = 1 ] && continue
        row "(ref) ideal $j connections: bytes / ($j × rate)" "$(awk "BEGIN{printf \"%.2f\", $floor1 / $j}")" \
            "$(awk "BEGIN{printf \"%g\", $RATE_MB * $j}")" "$j.00" "" "" "" "" "" "" "" ""
        rttj=$(awk "BEGIN{printf \"%.2f\", $rtt1 / $j}")
        row "(ref) ideal $j connections with a round trip per GET: (bytes / rate + $URLS × $LATENCY ms) / $j" "$rttj" \
            "$(mbps "$rttj")" "$(awk "BEGIN{printf \"%.2f\", $CONTENT_BYTES / $rttj / $RATE_BPS}")" "" "" "" "" "" "" "" ""
    done
} > "$WORK/table.md"

# From the proxy's trace: requests open (sent by the client, answer not yet
# all passed on) over each stage's window, time-weighted: "NAME mean share"
# with share = the part of the stage with at most one request open (medians
# over the runs).
for n in "${ORDER[@]}"; do [ -n "${PWIN[$n]:-}" ] && echo "$n ${PWIN[$n]}"; done > "$WORK/windows.txt"
python3 - "$WORK/proxy-trace.jsonl" "$WORK/windows.txt" > "$WORK/open.txt" <<'EOF'
import json, statistics, sys
reqs = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["last"] is not None:
        reqs.append((r["request"], r["last"]))
for line in open(sys.argv[2]):
    name, *wins = line.split()
    means, shares = [], []
    for w in wins:
        a, b = map(float, w.split(","))
        if b <= a:
            continue
        events = []
        for s, e in reqs:
            s, e = max(s, a), min(e, b)
            if e > s:
                events += [(s, 1), (e, -1)]
        events.sort()
        t, n, area, low = a, 0, 0.0, 0.0
        for when, d in events + [(b, 0)]:
            area += n * (when - t)
            low += (when - t) if n <= 1 else 0.0
            t, n = when, n + d
        means.append(area / (b - a))
        shares.append(low / (b - a))
    if means:
        print(name, f"{statistics.median(means):.2f}", f"{100 * statistics.median(shares):.0f}%")
EOF

# How each stage used the link: the proxy's view.
pct() { awk "BEGIN{ if ($2 > 0) printf \"%.0f%%\", 100 * $1 / $2 }"; }
{
    echo "| stage | requests open (mean) | time with ≤ 1 request open | responses in flight (mean) | of their time: paced by the cap | of their time: waiting for the client to read | requests | new connections |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for n in "${ORDER[@]}"; do
        [ "${STATE[$n]}" = ok ] || continue
        w=$(med "${WALLS[$n]}") x=$(med "${PXFER[$n]}")
        read -r _ open_mean open_low < <(awk -v n="$n" '$1 == n' "$WORK/open.txt") || true
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$n]}" "${open_mean:-}" "${open_low:-}" \
            "$(awk "BEGIN{printf \"%.2f\", $x / $w}")" \
            "$(pct "$(med "${PPACED[$n]}")" "$x")" "$(pct "$(med "${PWAIT[$n]}")" "$x")" \
            "$(med "${PREQS[$n]}" | sed 's/\.00$//')" "$(med "${PCONNS[$n]}" | sed 's/\.00$//')"
    done
} > "$WORK/link.md"

# Was the proxy ever the bottleneck? Its CPU against the wall time, per stage.
PROXY_NOTE=$(for n in "${ORDER[@]}"; do
    [ "${STATE[$n]}" = ok ] || continue
    w=$(med "${WALLS[$n]}") c=$(med "${PCPUS[$n]}")
    awk -v n="$n" "BEGIN{printf \"%s %.0f%%\n\", n, 100 * $c / $w}"
done | sort -k2 -n -t' ' | tail -1)
REQS_J1='' REQS_DEF=''
if [ "${STATE[create_j1]:-}" = ok ]; then REQS_J1=$(med "${PREQS[create_j1]}" | sed 's/\.00$//'); fi
if [ "${STATE[create_default]}" = ok ]; then REQS_DEF=$(med "${PREQS[create_default]}" | sed 's/\.00$//'); fi

profile_line=$(profile_summary "$PROFILE_DIR/profile.json")
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
    echo "# bundle throttled-link benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Command: \`$CMDLINE\`"
    echo
    echo "## Machine"
    echo
    echo "- nproc: $(nproc); CPU: ${cpu_model:-unknown}; memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr); load average before the stages: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $(skopeo --version); $(/usr/bin/docker-registry --version 2>&1 | head -1); curl $(curl -V | head -1 | cut -d' ' -f2); $(python3 --version)"
    echo "- bundle: $("$BUNDLE" --version 2>/dev/null || echo "$BUNDLE") ($BUNDLE, $SRC_STATE)$( [ "$HAS_JOBS" = 1 ] || echo "; **no \`create --jobs\` in this binary**")"
    echo
    echo "## Setup"
    echo
    echo "- data: profile v$PROFILE_VERSION at scale $SCALE: $profile_line"
    echo "- registry content: $CONTENT_BLOBS blobs (layers, configs, manifests), $CONTENT_MB MB ($CONTENT_BYTES bytes), $TAGS tags; $SEED_NOTE"
    echo "- link: bench/throttle_proxy.py on $PROXY in front of the registry on $HOST: each TCP connection capped at $RATE_MB MB/s server to client (token bucket, 5 ms steps), $LATENCY ms added to each new connection and to each request; client to server not capped"
    echo "- every client talks to the proxy: \`bundle create --from $PROXY --tls-verify=false\`, \`skopeo copy docker://$PROXY/…\`, \`curl http://$PROXY/…\`"
    echo
    echo "## Results"
    echo
    cat "$WORK/table.md"
    echo
    echo "MB = 10^6 bytes. \"× one connection's rate\" = MB/s of content / $RATE_MB MB/s. Speed-up = the --jobs 1 wall time / the row's. Stages run $REPEAT time(s): medians of wall and CPU times, largest RSS, largest peak of concurrent connections."
    echo
    echo "How the stages used the link, from the proxy: a request is *open* from when it reaches the proxy until the last byte of its answer leaves it; a response is *in flight* while the server has sent bytes that the proxy has not yet passed on (paced by the cap, or waiting for the client to read). Means are time-weighted over the stage (seconds summed over connections / wall time), so a stage that keeps N connections busy all along shows N:"
    echo
    cat "$WORK/link.md"
    echo
    [ -n "$REQS_J1" ] && echo "Requests through the proxy: $REQS_J1 for \`--jobs 1\`, each paying $LATENCY ms (plus $LATENCY ms per new connection): $(awk "BEGIN{printf \"%.1f\", $REQS_J1 * $LATENCY / 1000}") s if they were strictly one after the other."
    [ -n "$REQS_DEF" ] && echo "Requests through the proxy for the default create: $REQS_DEF."
    echo
    echo "The proxy's busiest stage (its CPU / the stage's wall time): ${PROXY_NOTE:-n/a}."
    echo
    printf '%s' "$PER_RUN"
    echo
    echo "Whole run (build, checks, stages): $(( $(date +%s) - RUN_START )) s."
    echo
    echo "Wall, max RSS and CPU from \`/usr/bin/time -v\` (for the skopeo loop, the largest single process); registry and proxy CPU from /proc; connections, bytes and requests from the proxy's counters (SIGUSR1 before and after each stage). Page cache warm for the registry's blobs; \`sync -f\` of the work filesystem before each stage; each create's output is checked with \`bundle verify\` after the stage (not timed) and removed."
} > "$RESULTS"

echo
cat "$RESULTS"
echo
log "written to bench/results/throttle.md"
