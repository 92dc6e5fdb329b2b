#!/usr/bin/env bash
# Quick start: build bundle, then create and verify a bundle of the sample OCI
# layout shipped in sample/layout, signed with the DEMO key (never trust it
# for real work: its secret key is in this repository).
#
# Usage: scripts/demo.sh [OUT_DIR]     (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${1:-$(mktemp -d /tmp/bundle-demo.XXXXXX)/bundle}

echo "==> cargo build --release"
cargo build --release --locked

# git does not keep file modes beyond +x; bundle refuses a readable secret key.
chmod 600 keys/demo.key

echo "==> bundle create --from oci:sample/layout --out $out --key keys/demo.key --volume-size 64K"
./target/release/bundle create --from oci:sample/layout --out "$out" --key keys/demo.key --volume-size 64K

echo "==> bundle verify $out --pubkey keys/demo.pub"
./target/release/bundle verify "$out" --pubkey keys/demo.pub

echo "==> bundle list $out --pubkey keys/demo.pub"
./target/release/bundle list "$out" --pubkey keys/demo.pub
echo
echo "The bundle is in $out. Try breaking it: flip a byte in a volume and verify again."
