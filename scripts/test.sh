#!/usr/bin/env bash
# The one command that checks this repository on a fresh Debian machine:
# installs the real tools the tests run against (as root, or with sudo), then
# runs rustfmt, clippy and every test target (CLI tests against a real
# docker-registry, and the fuzz corpora replay, are part of `cargo test`).
#
# Usage: scripts/test.sh        (from any directory; CI runs it via .ci/run)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian package for each command the tests need.
declare -A PACKAGE_OF=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [podman]=podman
  [minisign]=minisign
  [zstd]=zstd
  [umoci]=umoci
  [htpasswd]=apache2-utils
  [openssl]=openssl
  [curl]=curl
  [jq]=jq
  [tar]=tar
  [sha256sum]=coreutils
  [python3]=python3
  [unshare]=util-linux
  [mount]=mount
  [/usr/bin/time]=time
)

stage "Checking the tools the tests need"
missing=()
for tool in "${!PACKAGE_OF[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$tool]}")
done
if ((${#missing[@]})); then
  mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
  stage "Installing ${packages[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    die "missing packages (${packages[*]}) and not root, without sudo: apt-get install ${packages[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
fi
for tool in "${!PACKAGE_OF[@]}"; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "\`$tool\` is still not on PATH after installing ${PACKAGE_OF[$tool]}"
done
[[ -x /usr/bin/docker-registry ]] || die "/usr/bin/docker-registry is missing (apt-get install docker-registry)"
for tool in cargo rustc; do
  command -v "$tool" >/dev/null 2>&1 || die "\`$tool\` is not on PATH: install a Rust toolchain (rustup)"
done
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing: rustup component add clippy"
echo "ok: ${!PACKAGE_OF[*]}, cargo $(cargo --version | cut -d' ' -f2)"

stage "cargo fmt --check"
cargo fmt --all --check

stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

stage "cargo doc --no-deps (warnings denied: every intra-doc link resolves)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps

stage "cargo test --all-targets"
cargo test --locked --all-targets

stage "All checks passed"
