#!/usr/bin/env bash
# Packs a root filesystem directory into a one-layer OCI image archive, reproducibly, without Docker or a
# registry:
#
#   hack/oci-pack.sh ROOTFS_DIR IMAGE_REF OUT_TAR [--entrypoint ARG]... [--cmd ARG]... [--user UID[:GID]]
#                    [--env K=V]... [--workdir DIR]
#
# OUT_TAR is a tar of an OCI image layout (oci-layout, index.json, blobs/sha256/…) whose one manifest
# carries the annotations io.containerd.image.name=IMAGE_REF (what `ctr images import` names the image)
# and org.opencontainers.image.ref.name=TAG (what `skopeo copy oci-archive:` and `kind load
# image-archive` read). The same ROOTFS_DIR contents (names, modes, numeric owners, file contents, link
# targets; mtimes are ignored) and arguments give the same manifest digest: the layer is a name-sorted tar
# with numeric owners and every mtime set to SOURCE_DATE_EPOCH (default 0), the config's `created` is that
# time too, and there is no history. The layer tar keeps ROOTFS_DIR's owners and modes: build the
# rootfs as root when files must belong to someone else.
#
# Prints the manifest digest (sha256:…) on stdout. Needs umoci (Debian's 0.4.7), GNU tar and jq.
set -euo pipefail

usage() {
  sed -n '4,6p' "$0" | sed 's/^# \{0,3\}//' >&2
  exit 2
}

[ $# -ge 3 ] || usage
rootfs=$1 ref=$2 out=$3
shift 3
[ -d "$rootfs" ] || { echo "oci-pack: $rootfs is not a directory" >&2; exit 2; }

entrypoint=() cmd=() env=() user="" workdir=""
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case $1 in
    --entrypoint) entrypoint+=("$2") ;;
    --cmd) cmd+=("$2") ;;
    --env) env+=("$2") ;;
    --user) user=$2 ;;
    --workdir) workdir=$2 ;;
    *) usage ;;
  esac
  shift 2
done

# The tag is what follows the last ':' after the last '/' (a registry port is not a tag); "latest" if none.
name_part=${ref##*/}
case $name_part in
  *@*) echo "oci-pack: $ref: digests are not supported, give a tag" >&2; exit 2 ;;
  *:*) tag=${name_part##*:} ;;
  *) tag=latest; ref="$ref:latest" ;;
esac

epoch=${SOURCE_DATE_EPOCH:-0}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

for tool in umoci jq tar; do
  command -v "$tool" >/dev/null || { echo "oci-pack: $tool is needed (hack/install-tools.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/oci-pack.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The layer: name-sorted, numeric owners only (a host's user names must not leak into the digest), fixed
# mtimes, no atime/ctime, PAX headers with fixed names.
tar_flags=(--sort=name --numeric-owner --mtime="@$epoch" --clamp-mtime --format=posix
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime --no-acls --no-xattrs --no-selinux)
# --clamp-mtime only lowers newer mtimes: set every mtime first so older ones are equal too.
find "$rootfs" -depth -exec touch -h -d "@$epoch" {} + 2>/dev/null || true
tar "${tar_flags[@]}" -C "$rootfs" -cf "$work/layer.tar" .

layout="$work/oci"
umoci --log=error init --layout "$layout"
umoci --log=error new --image "$layout:$tag"
umoci --log=error raw add-layer --no-history --image "$layout:$tag" "$work/layer.tar"

config_args=(--no-history --created "$created" --os linux --architecture amd64
  --clear config.env --clear config.entrypoint --clear config.cmd)
for arg in "${entrypoint[@]}"; do config_args+=(--config.entrypoint "$arg"); done
for arg in "${cmd[@]}"; do config_args+=(--config.cmd "$arg"); done
for arg in "${env[@]}"; do config_args+=(--config.env "$arg"); done
[ -n "$user" ] && config_args+=(--config.user "$user")
[ -n "$workdir" ] && config_args+=(--config.workingdir "$workdir")
umoci --log=error config "${config_args[@]}" --image "$layout:$tag"
umoci --log=error gc --layout "$layout"

# umoci names the manifest by its tag only; containerd's import wants the full reference as well.
jq -c --arg ref "$ref" --arg tag "$tag" \
  '.manifests |= map(select(.annotations["org.opencontainers.image.ref.name"] == $tag)
     | .annotations = {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $tag})' \
  "$layout/index.json" > "$work/index.json"
mv "$work/index.json" "$layout/index.json"
digest=$(jq -r '.manifests[0].digest' "$layout/index.json")

# The archive itself is deterministic too, so a file hash comparison works as well as the digest's.
find "$layout" -depth -exec touch -h -d "@$epoch" {} +
chmod -R u=rwX,go=rX "$layout"
mkdir -p "$(dirname "$out")"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$epoch" --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$layout" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
echo "$digest"
