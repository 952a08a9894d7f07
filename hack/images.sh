#!/usr/bin/env bash
# Builds Lifeboat's OCI image archives without Docker and without a registry:
#
#   hack/images.sh [--update-lock] [--force] [--check-reproducible] [NAME...]
#
# NAME is a directory under images/ (default: all of them). Each images/NAME/image.conf names the image
# reference, the Debian release and packages, and the image's config; images/NAME/packages.lock lists the
# exact Debian packages (name, version, sha256) that go in. Root filesystems are unpacked from .deb files
# (apt-get download + dpkg-deb on the host: no package manager, maintainer script or compiler runs or
# lands in an image), then packed by hack/oci-pack.sh into $LIFEBOAT_CACHE/images/NAME.oci.tar.
#
#   --update-lock          re-resolve the packages against the archive's current versions (a lock is also
#                          made when missing, or when image.conf's package list changed)
#   --force                rebuild even when the inputs did not change
#   --check-reproducible   build each image twice from scratch and fail unless the manifest digests agree
#
# Apt runs with its own state, cache and sources under $LIFEBOAT_CACHE/images/apt/DIST, signed by the host's
# Debian archive keyring: the host's apt configuration and package lists are not touched. With a lock and
# the .deb files cached, a build needs no network at all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"
export LC_ALL=C

IMAGES_DIR="$REPO_ROOT/images"
OUT_DIR="$LIFEBOAT_CACHE/images"
WORK_DIR="$OUT_DIR/work"
DEB_DIR="$OUT_DIR/debs"
# A fixed time for every mtime and the config's `created`: the same inputs give the same digest.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1735689600}" # 2025-01-01T00:00:00Z

# Never in an image: package managers, their scripting and compilers.
COMMON_EXCLUDE=(
  'perl' 'perl-base' 'perl-modules-.*' 'libperl.*' 'lib.*-perl' 'dpkg' 'dpkg-dev' 'debconf' 'debconf-2.0'
  'cdebconf' 'debconf-i18n' 'apt' 'libapt-pkg.*' 'gcc.*' 'cpp.*' 'g[+][+].*' 'binutils.*' 'make'
  'postgresql-client-common' 'postgresql-common' 'sensible-utils' 'ucf' 'adduser' 'passwd' 'login'
  'init-system-helpers' 'lsb-base' 'sysvinit-utils' 'systemd' 'systemd-sysv' 'usrmerge' 'usr-is-merged'
  'gawk' 'mawk' 'original-awk' 'awk' 'base-passwd' 'openssl' 'locales' 'locales-all' 'ssl-cert'
  'debianutils' 'libc-bin' 'logrotate' 'cron' 'python3.*' 'libpython3.*'
)

update_lock=false force=false check_repro=false names=()
for arg in "$@"; do
  case $arg in
    --update-lock) update_lock=true ;;
    --force) force=true ;;
    --check-reproducible) check_repro=true ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) log "unknown flag $arg"; exit 2 ;;
    *) names+=("$arg") ;;
  esac
done
if [ ${#names[@]} -eq 0 ]; then
  # Dependencies first is not needed (images are independent); cheapest first gives early feedback.
  names=(webapp lifeboat postgres mariadb)
fi

for tool in umoci jq dpkg-deb apt-get tar; do
  command -v "$tool" >/dev/null || { log "$tool is needed: run hack/install-tools.sh"; exit 1; }
done

# ---- apt with private state ------------------------------------------------------------------------

apt_dir() { echo "$OUT_DIR/apt/$1"; }

# apt_setup DIST: writes the private apt configuration for a Debian release.
apt_setup() {
  local dist=$1 d
  d=$(apt_dir "$dist")
  mkdir -p "$d/state/lists/partial" "$d/cache/archives/partial" "$d/etc/sources.list.d" \
    "$d/etc/preferences.d" "$d/etc/apt.conf.d"
  [ -f "$d/state/status" ] || : >"$d/state/status"
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$d/etc/sources.list" <<EOF
deb [signed-by=$key] http://deb.debian.org/debian $dist main
deb [signed-by=$key] http://deb.debian.org/debian $dist-updates main
deb [signed-by=$key] http://deb.debian.org/debian-security $dist-security main
EOF
  cat >"$d/apt.conf" <<EOF
Dir::State "$d/state";
Dir::State::status "$d/state/status";
Dir::Cache "$d/cache";
Dir::Etc::SourceList "$d/etc/sources.list";
Dir::Etc::SourceParts "$d/etc/sources.list.d";
Dir::Etc::Preferences "$d/etc/preferences";
Dir::Etc::PreferencesParts "$d/etc/preferences.d";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Install-Recommends "false";
APT::Sandbox::User "root";
EOF
}

apt_env() { APT_CONFIG="$(apt_dir "$1")/apt.conf" "${@:2}"; }

# apt_update DIST: refreshes the private package lists when missing or older than a day.
apt_update() {
  local dist=$1 lists
  apt_setup "$dist"
  exec {aptfd}>"$(apt_dir "$dist")/lock"
  flock "$aptfd"
  lists="$(apt_dir "$dist")/state/lists"
  if [ -z "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    log "apt-get update ($dist, private state)"
    apt_env "$dist" apt-get update -qq >/dev/null
  fi
  exec {aptfd}>&-
}

# resolve DIST EXCLUDE_REGEX PACKAGE...: the dependency closure (Depends and Pre-Depends, no Recommends),
# first satisfiable alternative of each, skipping excluded packages and what only they need.
resolve() {
  local dist=$1 exclude=$2
  shift 2
  local -A seen=()
  local queue=("$@") next p
  for p in "$@"; do seen[$p]=1; done
  while [ ${#queue[@]} -gt 0 ]; do
    next=()
    while read -r p; do
      [ -n "$p" ] || continue
      [ -n "${seen[$p]:-}" ] && continue
      seen[$p]=1
      next+=("$p")
    done < <(apt_env "$dist" apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "${queue[@]}" | awk -v ex="^($exclude)\$" '
        function pick(   i) {
          for (i = 1; i <= n; i++) if (alt[i] !~ ex) { print alt[i]; break }
          n = 0
        }
        /^[^ ]/ { if (n) pick(); open = 0; next }
        /^ [ |](Pre)?Depends: / {
          if (n && !open) pick()
          open = ($0 ~ /^ \|/)
          line = $0; sub(/^ [ |](Pre)?Depends: /, "", line); sub(/:any$/, "", line)
          if (line !~ /^</) alt[++n] = line
          next
        }
        /^    [^ ]/ { name = $1; sub(/:any$/, "", name); alt[++n] = name; next }
        END { if (n) pick() }
      ' | sort -u)
    queue=("${next[@]}")
  done
  printf '%s\n' "${!seen[@]}" | grep -Ev "^($exclude)\$" | sort
}

# ---- per-image build --------------------------------------------------------------------------------

sha() { sha256sum "$1" | cut -d' ' -f1; }

# make_lock NAME: resolves image.conf's packages into images/NAME/packages.lock.
make_lock() {
  local name=$1 lock="$IMAGES_DIR/$1/packages.lock" exclude pkgs
  exclude=$(printf '%s|' "${COMMON_EXCLUDE[@]}" "${EXCLUDE[@]}")
  exclude=${exclude%|}
  apt_update "$DIST"
  mapfile -t pkgs < <(resolve "$DIST" "$exclude" "${PACKAGES[@]}")
  {
    echo "# The exact Debian packages in $REF: generated by hack/images.sh from image.conf; do not edit."
    echo "# hack/images.sh --update-lock $name re-resolves against the archive's current versions."
    echo "# dist: $DIST"
    echo "# request: $(request_hash)"
    apt_env "$DIST" apt-cache show --no-all-versions "${pkgs[@]}" |
      awk '/^Package: /{p=$2} /^Version: /{v=$2} /^SHA256: /{s=$2} /^$/{if (p) print p, v, s; p=""} END{if (p) print p, v, s}' |
      sort -u
  } >"$lock.tmp"
  mv "$lock.tmp" "$lock"
  log "$name: locked $(grep -vc '^#' "$lock") packages from $DIST"
}

request_hash() { printf '%s\n' "$DIST" "${PACKAGES[@]}" -- "${EXCLUDE[@]}" -- "${COMMON_EXCLUDE[@]}" | sha256sum | cut -c1-16; }

# fetch_debs NAME: makes sure every locked .deb is in $DEB_DIR (named by its sha256), downloading the
# missing ones at their exact locked versions.
fetch_debs() {
  local lock="$IMAGES_DIR/$1/packages.lock" want=() p v s f tmp
  mkdir -p "$DEB_DIR"
  while read -r p v s; do
    [ -f "$DEB_DIR/$s.deb" ] || want+=("$p=$v")
  done < <(grep -v '^#' "$lock")
  [ ${#want[@]} -eq 0 ] && return
  apt_update "$DIST"
  log "$1: downloading ${#want[@]} packages from $DIST"
  tmp=$(mktemp -d "$OUT_DIR/download.XXXXXX")
  if ! (cd "$tmp" && apt_env "$DIST" apt-get download -qq "${want[@]}" >/dev/null); then
    rm -rf "$tmp"
    log "$1: a locked version is no longer in the archive (Debian replaces versions in point releases):"
    log "run hack/images.sh --update-lock $1 and commit the new images/$1/packages.lock"
    return 1
  fi
  for f in "$tmp"/*.deb; do mv "$f" "$DEB_DIR/$(sha "$f").deb"; done
  rm -rf "$tmp"
  while read -r p v s; do
    [ -f "$DEB_DIR/$s.deb" ] || { log "$1: $p $v: downloaded file does not match the lock's sha256"; return 1; }
  done < <(grep -v '^#' "$lock")
}

# unpack NAME ROOTFS: the locked packages' files (no maintainer scripts) into a merged-/usr rootfs, with
# dpkg's status.d records (text only) so image scanners can see the package versions.
unpack() {
  local lock="$IMAGES_DIR/$1/packages.lock" rootfs=$2 p v s
  mkdir -p "$rootfs"/usr/{bin,sbin,lib,lib64,local/bin} "$rootfs/var/lib/dpkg/status.d"
  ln -s usr/bin "$rootfs/bin"; ln -s usr/sbin "$rootfs/sbin"
  ln -s usr/lib "$rootfs/lib"; ln -s usr/lib64 "$rootfs/lib64"
  while read -r p v s; do
    dpkg-deb --fsys-tarfile "$DEB_DIR/$s.deb" |
      tar -x --keep-directory-symlink --no-same-permissions -p -C "$rootfs" \
        --exclude='./usr/share/man' --exclude='./usr/share/info' --exclude='./usr/share/lintian' \
        --exclude='./usr/share/locale' --exclude='./usr/share/doc-base' --exclude='./usr/share/bug' \
        --exclude='./usr/share/doc/*/[!c]*' --exclude='./usr/share/doc/*/c[!o]*'
    {
      dpkg-deb -f "$DEB_DIR/$s.deb" Package
      echo "Status: install ok installed"
      dpkg-deb -f "$DEB_DIR/$s.deb" | grep -v '^Package:'
    } >"$rootfs/var/lib/dpkg/status.d/$p"
  done < <(grep -v '^#' "$lock")
}

# base_files ROOTFS USER UID GID HOME: users, groups, /tmp, nsswitch, CA bundle.
base_files() {
  local rootfs=$1 user=$2 uid=$3 gid=$4 home=$5
  mkdir -p "$rootfs/etc" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  {
    echo "root:x:0:0:root:/root:/usr/sbin/nologin"
    [ "$uid" != 0 ] && echo "$user:x:$uid:$gid:$user:$home:/usr/sbin/nologin"
    echo "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"
  } >"$rootfs/etc/passwd"
  {
    echo "root:x:0:"
    [ "$gid" != 0 ] && echo "$user:x:$gid:"
    echo "nogroup:x:65534:"
  } >"$rootfs/etc/group"
  if [ "$home" != /nonexistent ]; then
    mkdir -p "$rootfs$home"
    chown "$uid:$gid" "$rootfs$home"
    chmod 0755 "$rootfs$home"
  fi
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' \
    >"$rootfs/etc/nsswitch.conf"
  if [ -d "$rootfs/usr/share/ca-certificates/mozilla" ]; then
    # What update-ca-certificates (a maintainer script's job) would write: the bundle, sorted by name.
    mkdir -p "$rootfs/etc/ssl/certs"
    find "$rootfs/usr/share/ca-certificates/mozilla" -name '*.crt' | sort | xargs cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
}

# check_rootfs ROOTFS: no package manager or compiler; every program's shared libraries resolve inside.
check_rootfs() {
  local rootfs=$1 f bad=0 loader out
  for f in usr/bin/dpkg usr/bin/apt usr/bin/apt-get usr/bin/perl usr/bin/gcc usr/bin/cc usr/bin/cpp; do
    if [ -e "$rootfs/$f" ] || [ -L "$rootfs/$f" ]; then log "forbidden in an image: /$f"; bad=1; fi
  done
  loader=/usr/lib64/ld-linux-x86-64.so.2
  [ -e "$rootfs$loader" ] || loader=""
  if [ -n "$loader" ]; then
    while read -r f; do
      head -c4 "$f" 2>/dev/null | grep -q 'ELF' || continue
      out=$(chroot "$rootfs" "$loader" --list "${f#"$rootfs"}" 2>&1) || true
      if grep -q 'not found' <<<"$out"; then
        log "unresolved libraries in ${f#"$rootfs"}:"; grep 'not found' <<<"$out" >&2; bad=1
      fi
    done < <(find "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/usr/local/bin" "$rootfs/usr/lib/postgresql" \
      -type f -perm -u+x 2>/dev/null | sort)
  fi
  return $bad
}

# in_rootfs ROOTFS UID:GID CMD...: runs CMD inside ROOTFS as that user with the image's ENV only, in its own
# mount and PID namespaces (with /proc and /dev for programs that need them). The network is the host's:
# what runs there listens on and dials loopback only.
in_rootfs() { (in_rootfs_exec "$@"); }

# in_rootfs_exec: the same in place of the calling (sub)shell, so `in_rootfs_exec … &` gives the PID that
# stop_rootfs stops.
in_rootfs_exec() {
  local rootfs=$1 userspec=$2
  shift 2
  exec unshare --mount --pid --fork --kill-child=TERM --mount-proc="$rootfs/proc" bash -c '
    r=$1 u=$2 n=$3; shift 3
    envs=("${@:1:n}"); shift "$n"
    mount --rbind /dev "$r/dev" && exec env -i "${envs[@]}" "$(command -v chroot)" --userspec="$u" "$r" "$@"
  ' _ "$rootfs" "$userspec" "${#ENV[@]}" "${ENV[@]}" "$@"
}

# stop_rootfs PID: SIGTERM to what in_rootfs_exec started as PID (unshare ignores SIGTERM while it waits,
# and the changed user ID clears --kill-child's parent-death signal), then waits for it.
stop_rootfs() {
  local child
  for child in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
  wait "$1" 2>/dev/null || true
}

image_inputs() {
  # Everything that decides the archive: the image's definition and lock, this script, the packer, the
  # extra files the image copies in, the time stamp used.
  {
    find "$IMAGES_DIR/$1" -type f ! -name README.md ! -name "supported-*.txt*" | sort | xargs sha256sum | sed "s|$IMAGES_DIR/||"
    sha256sum "$REPO_ROOT/hack/images.sh" "$REPO_ROOT/hack/oci-pack.sh" | sed "s|$REPO_ROOT/||"
    for f in "${INPUT_FILES[@]}"; do echo "$(sha "$f") $(basename "$f")"; done
    echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
  } | sha256sum | cut -d' ' -f1
}

cargo_target_dir() {
  if [ -n "${CARGO_TARGET_DIR:-}" ]; then echo "$CARGO_TARGET_DIR"; return; fi
  (cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
}

# build NAME [FORCE]: prints the manifest digest.
build() {
  local name=$1 force_this=${2:-false} conf="$IMAGES_DIR/$1/image.conf"
  [ -f "$conf" ] || { log "no image $name (images/$name/image.conf)"; return 1; }
  # Each image.conf sets these and may define prepare (build what it copies in, set INPUT_FILES) and
  # customize ROOTFS (copy files, links) and verify ROOTFS (run its programs).
  local REF DIST PACKAGES=() EXCLUDE=() USER_SPEC ENTRYPOINT=() CMD=() ENV=() WORKDIR="" INPUT_FILES=()
  local USER_NAME USER_HOME
  unset -f prepare customize verify
  prepare() { :; }
  customize() { :; }
  verify() { :; }
  # shellcheck disable=SC1090
  source "$conf"
  local lock="$IMAGES_DIR/$name/packages.lock" out="$OUT_DIR/$name.oci.tar"
  if [ ${#PACKAGES[@]} -gt 0 ]; then
    if $update_lock || [ ! -f "$lock" ] || ! grep -q "^# request: $(request_hash)\$" "$lock"; then
      make_lock "$name"
    fi
  else
    printf '# %s has no Debian packages.\n' "$REF" >"$lock"
  fi
  prepare
  local inputs
  inputs=$(image_inputs "$name")
  if ! $force_this && [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then
    log "$name: up to date ($out)"
    cat "$out.digest"
    return
  fi
  local start=$SECONDS
  fetch_debs "$name"
  local rootfs="$WORK_DIR/$name/rootfs"
  rm -rf "$WORK_DIR/$name"
  mkdir -p "$rootfs"
  unpack "$name" "$rootfs"
  base_files "$rootfs" "$USER_NAME" "${USER_SPEC%%:*}" "${USER_SPEC##*:}" "$USER_HOME"
  customize "$rootfs"
  check_rootfs "$rootfs" || { log "$name: rootfs check failed"; return 1; }
  mkdir -p "$rootfs/proc" "$rootfs/dev"
  # In a background subshell: errexit holds inside it (it would not on the left of ||), and what verify
  # starts or traps stays there.
  (set -e; verify "$rootfs") >&2 &
  wait $! || { log "$name: verification failed"; return 1; }
  # Nothing a verification wrote stays in the image.
  find "$rootfs/tmp" "$rootfs/proc" "$rootfs/dev" -mindepth 1 -delete
  local args=() a
  for a in "${ENTRYPOINT[@]}"; do args+=(--entrypoint "$a"); done
  for a in "${CMD[@]}"; do args+=(--cmd "$a"); done
  for a in "${ENV[@]}"; do args+=(--env "$a"); done
  args+=(--user "$USER_SPEC")
  [ -n "$WORKDIR" ] && args+=(--workdir "$WORKDIR")
  local digest
  digest=$("$REPO_ROOT/hack/oci-pack.sh" "$rootfs" "$REF" "$out" "${args[@]}")
  echo "$digest" >"$out.digest"
  echo "$inputs" >"$out.inputs"
  rm -rf "$WORK_DIR/$name"
  log "$name: $REF $digest $(du -h "$out" | cut -f1) compressed, $((SECONDS - start))s"
  echo "$digest"
}

mkdir -p "$OUT_DIR"
if [ -n "${LIFEBOAT_IMAGES_ONE:-}" ]; then
  # A child run for one image (below): errexit holds in build here, as it could not on the left of ||.
  build "$LIFEBOAT_IMAGES_ONE" "$force"
  exit 0
fi
one() { LIFEBOAT_IMAGES_ONE=$1 "$0" "${@:2}"; }
status=0
for name in "${names[@]}"; do
  # One build of an image at a time (different images may build in parallel; apt has its own lock).
  exec {lockfd}>"$OUT_DIR/$name.lock"
  flock "$lockfd"
  if $check_repro; then
    if first=$(one "$name" --force) && second=$(one "$name" --force); then
      if [ "$first" = "$second" ]; then
        log "$name: reproducible, two builds from scratch gave $first"
      else
        log "$name: NOT reproducible: $first then $second"
        status=1
      fi
    else
      status=1
    fi
  else
    args=()
    $force && args+=(--force)
    $update_lock && args+=(--update-lock)
    one "$name" "${args[@]}" >/dev/null || status=1
  fi
  exec {lockfd}>&-
done
exit $status
