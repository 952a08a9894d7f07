#!/usr/bin/env bash
# Packages `kubectl lifeboat` for krew into OUT_DIR: kubectl-lifeboat_<tag>_linux_amd64.tar.gz (the binary
# as kubectl-lifeboat, and LICENSE) and lifeboat.yaml, the manifest rendered from .krew.yaml for that
# archive the way krew-release-bot renders it (the tag, the release URL, the archive's sha256).
#   hack/krew-package.sh OUT_DIR [BINARY]     BINARY defaults to a release build of lifeboat
# Then, without a download: krew install --manifest OUT_DIR/lifeboat.yaml --archive OUT_DIR/*.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: hack/krew-package.sh OUT_DIR [BINARY]}
binary=${2:-}
if [ -z "$binary" ]; then
  cargo build --release --quiet --bin lifeboat
  binary="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/lifeboat"
fi
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  *) echo "krew-package: only linux/amd64 is released (this machine is $(uname -m))" >&2; exit 1 ;;
esac
tag="v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
archive="kubectl-lifeboat_${tag}_linux_${arch}.tar.gz"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/kubectl-lifeboat"
cp LICENSE "$stage/LICENSE"
# Reproducible: same inputs, same bytes, same sha256.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - kubectl-lifeboat LICENSE |
  gzip -n -9 >"$out/$archive"
sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
sed -e "s/{{ \.TagName }}/$tag/g" .krew.yaml |
  sed -E "s|^( *)\{\{addURIAndSha \"([^\"]*)\" \.TagName \}\}|\1uri: \2\n\1sha256: $sha|" |
  grep -v '^#' >"$out/lifeboat.yaml"
echo "$out/$archive $sha"
