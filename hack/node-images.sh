#!/usr/bin/env bash
# Builds the real node's images as OCI archives in ~/.cache/lifeboat/node-images (rebuilt only when their
# contents change): the sandbox image (our pause program), CoreDNS, and busybox from Debian's busybox-static
# for tests (a shell, wget, nslookup, httpd). Prints nothing; node-up.sh imports every archive there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/node-lib.sh"
source "$REPO_ROOT/hack/versions.env"
mkdir -p "$NODE_IMAGES_DIR"

# pack NAME REF ROOTFS ARGS...: packs unless the archive exists for the same inputs (a digest of them).
pack() {
  local name=$1 ref=$2 rootfs=$3; shift 3
  local key; key=$( (cd "$rootfs" && find . -print0 | sort -z | xargs -0 -r sha256sum 2>/dev/null; echo "$ref $*") | sha256sum | cut -c1-16)
  local out="$NODE_IMAGES_DIR/$name.tar"
  [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ] && return
  "$REPO_ROOT/hack/oci-pack.sh" "$rootfs" "$ref" "$out" "$@"
  echo "$key" >"$out.key"
}

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
passwd() { # passwd ROOTFS: root and the unprivileged user 65532 the images run as
  mkdir -p "$1/etc" "$1/tmp"; chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$1/etc/group"
}

mkdir -p "$work/pause"; cp "$LIFEBOAT_BIN/pause" "$work/pause/pause"
pack pause "$PAUSE_IMAGE" "$work/pause" --entrypoint /pause --user 65532

mkdir -p "$work/coredns"; cp "$LIFEBOAT_BIN/coredns" "$work/coredns/coredns"; passwd "$work/coredns"
pack coredns "lifeboat.local/coredns:$COREDNS_VERSION" "$work/coredns" --entrypoint /coredns --user 65532

# busybox: the applets as symlinks; tagged with Debian's upstream version (1:1.35.0-4+deb12u1 -> 1.35.0).
bb_version=$(dpkg-query -W -f '${Version}' busybox-static); bb_version=${bb_version#*:}; bb_version=${bb_version%%-*}
mkdir -p "$work/busybox/bin"; cp /bin/busybox "$work/busybox/bin/busybox"; passwd "$work/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$work/busybox/bin/$applet"; done
pack busybox "lifeboat.local/busybox:$bb_version" "$work/busybox" --entrypoint /bin/sh --user 65532 \
  --env PATH=/bin
echo "$bb_version" >"$NODE_IMAGES_DIR/busybox.version"
