#!/usr/bin/env bash
# Images without a registry, each rebuilt only when its inputs change:
#   tickrun.test/pause:<v>   the pod sandbox (our static pause binary), containerd's sandbox_image
#   tickrun.test/base:<hash> Debian (debootstrap minbase + python3, python3-venv)
#   tickrun/runner:dev       Dockerfile.runner FROM the base, built with buildah
#   tickrun/api:dev          Dockerfile.api FROM the base (api + controller)
# Built images go into containerd's k8s.io namespace (pods use imagePullPolicy
# IfNotPresent). Usage: images.sh pause|base|runner|api|app|all (app: runner and api;
# all: pause and app). Only the chart tests use the api image.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mkdir -p "$IMAGE_CACHE"
lock images
PAUSE_IMAGE=tickrun.test/pause:$PAUSE_VERSION
# The host's Debian release and the mirror its apt uses (debootstrap needs nothing else).
host_mirror() {
  local m
  m=$(sed -n 's#^URIs:[[:space:]]*\(\S*/debian\)/*$#\1#p' /etc/apt/sources.list.d/*.sources \
        2>/dev/null | head -1)
  [ -n "$m" ] || m=$(sed -n 's#^deb[[:space:]]\+\(\S*/debian\)/*[[:space:]].*#\1#p' \
        /etc/apt/sources.list 2>/dev/null | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}
DEBIAN_SUITE=${DEBIAN_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
BASE_PACKAGES=python3,python3-venv,ca-certificates
BUILDAH=(buildah --storage-driver overlay)

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# in_containerd NAME HASH: true when containerd holds NAME built from inputs HASH.
in_containerd() {
  [ -S "$CONTAINERD_SOCK" ] || die "containerd is not running: make cluster-up first"
  ctr_ images ls -q "name==$1" 2>/dev/null | grep -qx "$1" &&
    [ "$(cat "$IMAGE_CACHE/$(echo "$1" | tr '/:' '__').hash" 2>/dev/null)" = "$2" ]
}
# import_archive NAME HASH TAR
import_archive() {
  ctr_ images import --no-unpack=false "$3" >/dev/null
  echo "$2" > "$IMAGE_CACHE/$(echo "$1" | tr '/:' '__').hash"
  log "imported $1 into containerd"
}

pause_image() {
  local h tar
  h=$( (cat "$BIN_DIR/.build-id"; echo "$PAUSE_IMAGE") | sha256sum | cut -c1-16)
  in_containerd "$PAUSE_IMAGE" "$h" && return 0
  tar=$IMAGE_CACHE/pause-$h.tar
  if [ ! -f "$tar" ]; then
    local c
    c=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" copy "$c" "$BIN_DIR/pause" /pause >/dev/null
    "${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
    "${BUILDAH[@]}" commit -q "$c" "$PAUSE_IMAGE" >/dev/null
    "${BUILDAH[@]}" rm "$c" >/dev/null
    "${BUILDAH[@]}" push -q "$PAUSE_IMAGE" "docker-archive:$tar.tmp:$PAUSE_IMAGE"
    mv "$tar.tmp" "$tar"
  fi
  import_archive "$PAUSE_IMAGE" "$h" "$tar"
}

base_hash() {
  (echo "$DEBIAN_SUITE $BASE_PACKAGES"; sed -n '/^base_image()/,/^}/p' "$0") |
    sha256sum | cut -c1-16
}

# The base image lives in buildah's storage (for FROM) and as a tarball in the cache.
base_image() {
  local h name tar
  h=$(base_hash); name=tickrun.test/base:$h; tar=$IMAGE_CACHE/base-$h.tar
  if "${BUILDAH[@]}" inspect --type image "$name" >/dev/null 2>&1; then echo "$name"; return; fi
  if [ ! -f "$tar" ]; then
    local root c start
    start=$(date +%s)
    root=$(mktemp -d /var/tmp/tickrun-base.XXXXXX)
    log "debootstrap $DEBIAN_SUITE (minbase + $BASE_PACKAGES): a few minutes, once"
    mkdir -p "$IMAGE_CACHE/debs"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" \
      --cache-dir="$IMAGE_CACHE/debs" "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" \
      > "$IMAGE_CACHE/debootstrap.log" 2>&1 ||
      { tail -20 "$IMAGE_CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
    # debootstrap leaves its .debs (45 MB) in apt's cache; the images run with
    # LANG=C.UTF-8, so the translations (33 MB) are never read.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log \
      "$root"/var/cache/debconf/*-old "$root"/var/cache/apt/archives/*.deb
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
    tar --numeric-owner -C "$root" -cf "$tar.rootfs" .
    rm -rf "$root"
    c=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$c" "$tar.rootfs" / >/dev/null
    "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env LANG=C.UTF-8 --cmd /bin/bash "$c"
    "${BUILDAH[@]}" commit -q "$c" "$name" >/dev/null
    "${BUILDAH[@]}" rm "$c" >/dev/null
    rm -f "$tar.rootfs"
    "${BUILDAH[@]}" push -q "$name" "docker-archive:$tar.tmp:$name"
    mv "$tar.tmp" "$tar"
    log "base image $name built in $(( $(date +%s) - start ))s"
  else
    "${BUILDAH[@]}" pull -q "docker-archive:$tar" >/dev/null
    "${BUILDAH[@]}" tag "$("${BUILDAH[@]}" images -q --filter "reference=$name" | head -1)" \
      "$name" 2>/dev/null || true
  fi
  echo "$name"
}

# The build context: what .dockerignore lets in (its `!path` lines), so unrelated edits
# rebuild nothing and a plain `docker build` sees the same files.
stage_context() {
  local ctx=$1 entry paths=()
  mkdir -p "$ctx"
  while read -r entry; do
    entry=${entry#!}; entry=${entry%/}
    [ ! -e "$REPO_ROOT/$entry" ] || paths+=("$entry")
  done < <(grep '^![^*]' "$REPO_ROOT/.dockerignore")
  tar -C "$REPO_ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - "${paths[@]}" \
    Dockerfile.runner Dockerfile.api | tar -C "$ctx" -xf -
}

# app_images KIND...: the runner and/or api images.
app_images() {
  local base ctx h name df tar start
  base=$(base_image)
  ctx=$(mktemp -d)
  stage_context "$ctx"
  # pip in the build trusts what the host's pip trusts (a TLS-inspecting proxy's CA, a
  # pip.conf): mounted for the RUN steps only, never part of an image.
  local trust=()
  [ ! -f /etc/ssl/certs/ca-certificates.crt ] ||
    trust+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  [ ! -f /etc/pip.conf ] || trust+=(-v /etc/pip.conf:/etc/pip.conf:ro)
  for kind in "$@"; do
    name=tickrun/$kind:dev; df=Dockerfile.$kind
    h=$( (echo "$base"; cd "$ctx" && find . -type f ! -name 'Dockerfile.*' -print0 | sort -z |
          xargs -0 sha256sum; cat "$df") | sha256sum | cut -c1-16)
    in_containerd "docker.io/$name" "$h" && { log "$name is current"; continue; }
    start=$(date +%s)
    log "building $name (buildah, FROM $base)"
    "${BUILDAH[@]}" bud -q --layers --isolation chroot --network host --pull=never \
      "${trust[@]}" --build-arg "BASE_IMAGE=$base" -f "$ctx/$df" -t "$name" "$ctx" \
      > "$IMAGE_CACHE/build-$kind.log" 2>&1 ||
      { tail -30 "$IMAGE_CACHE/build-$kind.log" >&2; die "building $name failed"; }
    local built
    built=$(date +%s)
    tar=$IMAGE_CACHE/$kind.tar
    rm -f "$tar"
    "${BUILDAH[@]}" push -q "$name" "docker-archive:$tar:docker.io/$name"
    import_archive "docker.io/$name" "$h" "$tar"
    rm -f "$tar"
    log "$name built in $(( built - start ))s, imported in $(( $(date +%s) - built ))s"
  done
  rm -rf "$ctx"
}

case ${1:-all} in
  pause) pause_image ;;
  base) base_image >/dev/null ;;
  runner|api) app_images "$1" ;;
  app) app_images runner api ;;
  all) pause_image; app_images runner api ;;
  *) die "usage: $0 pause|base|runner|api|app|all" ;;
esac
