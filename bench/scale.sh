#!/usr/bin/env bash
# bench/scale.sh — cost of verify, extract and list as bundle.json grows (see BENCHMARKS.md).
#
# For each scale S, examples/synthetic_bundle.rs writes a signed bundle whose
# bundle.json is about 8 MB × S (4,000×S tiny layers, 1,000×S manifests
# sharing them, 100×S four-platform indexes, 3,000×S tags; 94 volumes at S=4).
# Each binary (this tree's, and optionally an older one) then runs, under
# /usr/bin/time (wall s, peak RSS): verify; extract into a fresh layout; list
# --json; verify with one volume moved away (every image it holds a blob of
# is named in the findings); and verify of the hostile variant (every tag
# names one index over the manifests and lists nothing else, plus 4×S
# unneeded manifests of ~4 MiB). Results go to bench/results/scale.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/scale.sh [options]

  --scales "S..."   scales to run (default "1 4 16"); bundle.json is ~8 MB × S,
                    the 256 MiB cap is reached just above S = 32
  --stages "X..."   what to run (default "verify extract list verify-damaged verify-hostile")
  --out FILE        the results file (default bench/results/scale.md)
  --old PATH        also run this bundle binary (an older build) side by side
  --timeout N       seconds each command may take (default 600); a command
                    cut off is reported as ">N"
  --work DIR        scratch space (default /var/tmp/bundle-bench/scale-work), removed after
  --no-build        do not run `cargo build --release` first
  -h, --help        this text
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMDLINE="bench/scale.sh"
for arg in "$@"; do CMDLINE+=" $(printf '%q' "$arg")"; done
BENCH_LOG_TAG=scale
BENCH_NAME=scale.sh
# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"

SCALES="1 4 16"
STAGES="verify extract list verify-damaged verify-hostile"
OUT="$REPO_ROOT/bench/results/scale.md"
OLD=
TIMEOUT=600
WORK=/var/tmp/bundle-bench/scale-work
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --scales) SCALES=$2; shift 2 ;;
        --stages) STAGES=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --old) OLD=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
positive --timeout "$TIMEOUT"
for s in $SCALES; do positive --scales "$s"; done
need /usr/bin/time time
need timeout coreutils
check_needs
[ -z "$OLD" ] || [ -x "$OLD" ] || die "--old $OLD is not an executable"

if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release --quiet --bin bundle --example synthetic_bundle)
fi
NEW="$REPO_ROOT/target/release/bundle"
GEN="$REPO_ROOT/target/release/examples/synthetic_bundle"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

# measure BINARY ARGS...: prints "WALL RSS_MIB" (">TIMEOUT -" if cut off);
# exit codes 0 and 1 (a bad bundle, expected for the damaged one) are results.
measure() {
    local tf="$WORK/time" rc=0
    /usr/bin/time -f '%e %M' -o "$tf" timeout "$TIMEOUT" "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
    if [ "$rc" = 124 ]; then echo ">$TIMEOUT -"; return; fi
    if [ "$rc" -gt 1 ]; then tail -3 "$WORK/err" >&2; die "$* exited $rc"; fi
    tail -1 "$tf" | awk '{ printf "%.2f %.0f\n", $1, $2 / 1024 }'
}

ROWS=() SUMMARIES=()
for s in $SCALES; do
    rm -rf "$WORK/b" "$WORK/h"
    log "scale $s: generating"
    summary=$("$GEN" "$WORK/b" "$s")
    json_mib=$(awk '{ printf "%.1f", $1 / 1048576 }' <<<"$(stat -c %s "$WORK/b/bundle/bundle.json")")
    bundle=$WORK/b/bundle key=$WORK/b/key.pub
    for stage in $STAGES; do
        if [ "$stage" = verify-hostile ]; then
            summary+="; hostile: $("$GEN" "$WORK/h" "$s" hostile)"
            json_mib=$(awk '{ printf "%.1f", $1 / 1048576 }' <<<"$(stat -c %s "$WORK/h/bundle/bundle.json")")
        fi
        cells=()
        for bin in "$NEW" ${OLD:+"$OLD"}; do
            log "scale $s: $stage with $bin"
            rm -rf "$WORK/layout"
            case $stage in
                verify) r=$(measure "$bin" verify "$bundle" --pubkey "$key") ;;
                extract) r=$(measure "$bin" extract "$bundle" --to "$WORK/layout" --pubkey "$key") ;;
                list) r=$(measure "$bin" list "$bundle" --pubkey "$key" --json) ;;
                verify-damaged)
                    # The middle volume moved away: a finding naming every image it holds a blob of.
                    middle=$(find "$bundle" -name 'images.tar.zst.*' | sort | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }')
                    mv "$middle" "$WORK/away"
                    r=$(measure "$bin" verify "$bundle" --pubkey "$key")
                    mv "$WORK/away" "$middle" ;;
                verify-hostile) r=$(measure "$bin" verify "$WORK/h/bundle" --pubkey "$WORK/h/key.pub") ;;
                *) die "unknown stage $stage" ;;
            esac
            read -r wall rss <<<"$r"
            cells+=("$wall" "$rss")
        done
        ROWS+=("| $s | $json_mib | $stage | $(IFS='|'; echo "${cells[*]}" | sed 's/|/ | /g') |")
    done
    SUMMARIES+=("- scale $s: $summary")
done

{
    echo "# bench/scale.sh"
    echo
    echo "\`$CMDLINE\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    if [ -n "$OLD" ]; then
        echo "| scale | bundle.json MiB | command | s | peak MiB | old s | old peak MiB |"
        echo "|---|---|---|---|---|---|---|"
    else
        echo "| scale | bundle.json MiB | command | s | peak MiB |"
        echo "|---|---|---|---|---|"
    fi
    printf '%s\n' "${ROWS[@]}"
    echo
    printf '%s\n' "${SUMMARIES[@]}"
} | tee "$OUT"
