# shellcheck shell=bash
# bench/lib.sh — shell helpers shared by bench/run.sh, bench/enumerate.sh and
# bench/throttle.sh (sourced, not run).
#
# The sourcing script sets, before calling them:
#   BENCH_LOG_TAG  prefix of the log lines ("bench", "enum", "throttle")
#   BENCH_NAME     name in error messages ("run.sh", …)
#   REG_DIR        scratch directory for the registries' configs and logs
#   TIMES_DIR      where `timed` keeps each stage's /usr/bin/time output
#   WORK           the work directory, whose filesystem is synced before each stage
#   RUN, REPEAT    the current repetition and how many there are
# and may set STAGE_REG (the registry, by name, whose CPU a stage is charged:
# "source" unless set), TIMED_PTY (see `timed`), and define the hooks
# `on_stage_start NAME` and `on_stage_end NAME` (called around each stage).

log() { printf '[%s %s] %s\n' "$BENCH_LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }
positive() { # positive OPTION VALUE: dies unless VALUE is a whole number > 0
    case "$2" in ''|*[!0-9]*|0) die "$1 takes a positive whole number" ;; esac
}

# ------------------------------------------------------------------ tools

missing=()
need() { # need COMMAND DEBIAN_PACKAGE (COMMAND may be an absolute path)
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
check_needs() { # after the `need`s: stop, naming what to apt-get install
    if [ ${#missing[@]} -gt 0 ]; then
        die "missing tools; install them with: apt-get install -y $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------ registries

# Registries by name; REG_PID[NAME] and REG_HOST[NAME] are set while one runs.
declare -A REG_PID=() REG_HOST=()

start_registry() { # start_registry NAME STORAGE_DIR [PORT]: a free port unless given
    local name=$1 storage=$2 port=${3:-} host pid
    # (Ours are started one at a time and bound before the next asks for a
    # free port, so two never get the same one.)
    [ -n "$port" ] || port=$(free_port)
    host="127.0.0.1:$port"
    cat > "$REG_DIR/$name.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $storage}}
http: {addr: $host}
EOF
    env -i /usr/bin/docker-registry serve "$REG_DIR/$name.yml" > "$REG_DIR/$name.log" 2>&1 &
    pid=$!
    REG_PID[$name]=$pid
    # shellcheck disable=SC2034 # (read by the sourcing scripts)
    REG_HOST[$name]=$host
    for _ in $(seq 100); do
        if curl -sf "http://$host/v2/" >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$REG_DIR/$name.log" >&2
    die "the $name registry did not start on $host"
}

stop_registry() { # stop_registry NAME
    local pid=${REG_PID[$1]:-}
    unset "REG_PID[$1]" "REG_HOST[$1]"
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_registries() {
    local name
    for name in "${!REG_PID[@]}"; do stop_registry "$name"; done
}

# reg_ticks PID: CPU ticks that process has used so far (0 if it is gone).
reg_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------------ registry content

# Every manifest media type the benchmark's images use, for Accept headers.
# shellcheck disable=SC2034 # (read by the sourcing scripts)
ACCEPT='application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json'

# blob_url_config STORAGE HOST: a curl -K config GETting every blob and
# manifest of a registry's storage once, blobs through /v2/<repo>/blobs/,
# manifests through /v2/<repo>/manifests/ (a repository that links each, read
# from the storage).
blob_url_config() {
    python3 - "$1" "$2" <<'EOF'
import os, sys
storage, host = sys.argv[1], sys.argv[2]
repos_root = os.path.join(storage, "docker/registry/v2/repositories")
seen = {}
for root, dirs, files in os.walk(repos_root):
    rel = os.path.relpath(root, repos_root).split(os.sep)
    for kind, endpoint in (("_layers", "blobs"), ("_manifests", "manifests")):
        if kind in rel:
            i = rel.index(kind)
            want = ["sha256"] if kind == "_layers" else ["revisions", "sha256"]
            if rel[i + 1:-1] == want and "link" in files:
                repo = "/".join(rel[:i])
                digest = "sha256:" + rel[-1]
                seen.setdefault(digest, (repo, endpoint))
for digest, (repo, endpoint) in sorted(seen.items()):
    print(f'url = "http://{host}/v2/{repo}/{endpoint}/{digest}"')
    print('output = "/dev/null"')
EOF
}

# profile_summary PROFILE_JSON: one line on gen_profile.py's profile.
profile_summary() {
    python3 - "$1" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
m = p["push_modes"]
print(f"{p['repositories']} repositories, {p['tags']} tags, {p['platform_manifests']} platform manifests, "
      f"{p['layers']} layers ({p['layer_bytes'] / 2**20:.1f} MiB); pushed as "
      f"{m.get('oci', 0)} OCI manifests, {m.get('v2s2', 0)} Docker schema2, "
      f"{m.get('oci-all', 0)} OCI indexes, {m.get('v2s2-all', 0)} Docker manifest lists")
EOF
}

# ------------------------------------------------------------------ stages

# Per stage NAME, in the order first run (ORDER): STATE (ok, failed,
# pending), and one value per run, space-separated, in WALLS (wall s), CPUS
# (user+sys s), RCPUS (the registry's CPU s); RSS is the largest max RSS (MiB).
declare -A WALLS=() CPUS=() RCPUS=() RSS=() STATE=() SEEN=()
ORDER=()
STAGE_REG=source
STAGE_PID=

# timed NAME [--pty] COMMAND...: run under /usr/bin/time -v, stdout and stderr
# to TIMES_DIR/NAME.RUN.out and .err; records wall s, CPU s, max RSS and the
# registry's CPU. Returns non-zero if the command failed (STATE[NAME]=failed).
# --pty: run it through `python3 $TIMED_PTY TIMES_DIR/NAME.RUN.phases`
# (enumerate.sh's phase timer, which gives the command a pty for stderr).
timed() {
    local name=$1; shift
    local tf="$TIMES_DIR/$name.$RUN" wrap=() w c r rc
    if [ "$1" = --pty ]; then wrap=(python3 "$TIMED_PTY" "$tf.phases"); shift; fi
    if [ -z "${SEEN[$name]:-}" ]; then
        SEEN[$name]=1; ORDER+=("$name"); STATE[$name]=ok; WALLS[$name]=; CPUS[$name]=; RCPUS[$name]=; RSS[$name]=0
    fi
    log "stage $name (run $RUN/$REPEAT)"
    # Start with nothing dirty on the work filesystem, so that no stage pays
    # for the write-back of an earlier one's files.
    sync -f "$WORK"
    if declare -F on_stage_start >/dev/null; then on_stage_start "$name"; fi
    # In its own process group, waited for in the background so that a signal
    # reaches the caller's trap at once and its cleanup can end the whole stage.
    local t0 t1 reg_pid=${REG_PID[$STAGE_REG]:-0}
    t0=$(reg_ticks "$reg_pid")
    setsid "${wrap[@]}" /usr/bin/time -v -o "$tf" "$@" > "$tf.out" 2> "$tf.err" &
    STAGE_PID=$!
    rc=0; wait "$STAGE_PID" || rc=$?
    STAGE_PID=
    t1=$(reg_ticks "$reg_pid")
    if declare -F on_stage_end >/dev/null; then on_stage_end "$name"; fi
    if [ "$rc" != 0 ]; then
        STATE[$name]=failed
        log "stage $name FAILED (exit $rc); last lines of its stderr:"
        tail -5 "$tf.err" >&2 || true
    fi
    w=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$tf" 2>/dev/null)
    c=$(awk -F': ' '/(User|System) time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$tf" 2>/dev/null)
    r=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$tf" 2>/dev/null)
    w=${w:-0} c=${c:-0} r=${r:-0}
    WALLS[$name]+="$w "
    CPUS[$name]+="$c "
    RCPUS[$name]+="$(awk "BEGIN{printf \"%.2f\", ($t1 - $t0) / $CLK_TCK}") "
    RSS[$name]=$(awk "BEGIN{printf \"%.1f\", ($r > ${RSS[$name]}) ? $r : ${RSS[$name]}}")
    [ "${STATE[$name]}" = ok ]
}

pending() { # pending NAME: a stage that cannot run (yet); listed, not measured
    if [ -z "${SEEN[$1]:-}" ]; then SEEN[$1]=1; ORDER+=("$1"); fi
    STATE[$1]=pending; WALLS[$1]=; CPUS[$1]=; RCPUS[$1]=; RSS[$1]=
}

# stop_stage: end the stage running (its whole process group), for a cleanup trap.
stop_stage() {
    if [ -n "$STAGE_PID" ]; then
        kill -TERM -- "-$STAGE_PID" 2>/dev/null || true
        wait "$STAGE_PID" 2>/dev/null || true
        STAGE_PID=
    fi
}

median() { # median NUMBERS...
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit; if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

