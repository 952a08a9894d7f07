#!/usr/bin/env bash
# Packs a root filesystem directory as a one-layer OCI image archive that `ctr images import` accepts, without
# a registry: hack/oci-pack.sh ROOTFS_DIR IMAGE_REF OUT_TAR [--entrypoint ARG...] [--user UID] [--env K=V]...
# (--entrypoint takes every following argument up to the next --user/--env.)
# Reproducible: file times, the image's created time and the archive's entries are normalized, so the same
# rootfs gives the same bytes. Uses Debian's umoci. The image's name is in index.json's
# io.containerd.image.name annotation (what containerd names the imported image).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ROOTFS_DIR IMAGE_REF OUT_TAR [--entrypoint ARG...] [--user UID] [--env K=V]..." >&2; exit 2; }
rootfs=$1 ref=$2 out=$3; shift 3
entrypoint=() user="" envs=()
while [ $# -gt 0 ]; do
  case $1 in
    --entrypoint) shift; while [ $# -gt 0 ] && [ "$1" != --user ] && [ "$1" != --env ]; do entrypoint+=("$1"); shift; done ;;
    --user) user=$2; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    *) echo "oci-pack: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v umoci >/dev/null || { echo "oci-pack: umoci missing (apt-get install umoci)" >&2; exit 1; }

epoch=@0 created=1970-01-01T00:00:00Z
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy with every time set to the epoch (umoci takes file times from the tree).
cp -a "$rootfs" "$work/rootfs"
find "$work/rootfs" -exec touch -h -d "$epoch" {} +
umoci init --layout "$work/layout"
umoci new --image "$work/layout:img"
# --no-history: the history entry would carry the current time. umoci warns about that on every run.
umoci insert --no-history --image "$work/layout:img" "$work/rootfs" / 2>"$work/insert.err" ||
  { cat "$work/insert.err" >&2; exit 1; }
cfg=(--no-history --created "$created" --author lifeboat --os linux --architecture amd64)
for arg in "${entrypoint[@]}"; do cfg+=(--config.entrypoint "$arg"); done
[ -n "$user" ] && cfg+=(--config.user "$user")
for kv in "${envs[@]}"; do cfg+=(--config.env "$kv"); done
umoci config --image "$work/layout:img" "${cfg[@]}"
umoci gc --layout "$work/layout"
python3 - "$work/layout/index.json" "$ref" <<'PY'
import json, sys
path, ref = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["io.containerd.image.name"] = ref
    m["annotations"]["org.opencontainers.image.ref.name"] = ref.rsplit(":", 1)[-1]
json.dump(index, open(path, "w"), sort_keys=True, separators=(",", ":"))
PY
find "$work/layout" -exec touch -h -d "$epoch" {} +
mkdir -p "$(dirname "$out")"
tar --sort=name --mtime="$epoch" --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out.tmp" .
mv "$out.tmp" "$out"
