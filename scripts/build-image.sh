#!/usr/bin/env bash
# Builds the overlay container image from local files only (no registry is needed):
#   scripts/build-image.sh [TAG]      TAG defaults to overlay:latest
#
# 1. cargo build --release --workspace --bins (with the agent's `k8s` feature when it has one),
#    into the usual target directory ($CARGO_TARGET_DIR when set, else target/);
# 2. assembles a root file system in <target>/image/rootfs: overlay-agent and overlay-cni in
#    /usr/local/bin (debug info stripped), nft in /usr/sbin, a static busybox in /bin with its
#    applet links, every shared library these need (found with ldd, copied to the same paths,
#    the dynamic loader included), and /etc basics;
# 3. docker build with deploy/image/Dockerfile (FROM scratch) and prints the image size.
# Installs busybox-static and nftables with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-overlay:latest}"

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
missing=()
have_pkg busybox-static || missing+=(busybox-static)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v docker >/dev/null 2>&1 || { echo "build-image: docker is missing" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || { echo "build-image: cargo is missing: install Rust (https://rustup.rs) first" >&2; exit 1; }

# The agent's `k8s` feature (Kubernetes discovery), when its Cargo.toml declares one.
features=()
if awk '/^\[/ { f = ($0 == "[features]") } f && /^[[:space:]]*k8s[[:space:]]*=/ { found = 1 }
        END { exit !found }' overlay-agent/Cargo.toml; then
  features=(--features overlay-agent/k8s)
fi
echo "==> cargo build --release --workspace --bins ${features[*]:-}"
cargo build --release --quiet --workspace --bins ${features[@]+"${features[@]}"}

target="${CARGO_TARGET_DIR:-target}"
context="$target/image"
rootfs="$context/rootfs"
rm -rf "$context"
mkdir -p "$rootfs"/{bin,usr/local/bin,usr/sbin,etc,tmp,root,run,var/lib/overlay}
chmod 1777 "$rootfs/tmp"
ln -s ../run "$rootfs/var/run"

# copy_libs BINARY: every shared library ldd resolves for BINARY, at the same path in rootfs.
copy_libs() {
  local out line lib
  out="$(ldd "$1" 2>&1)" || {
    case "$out" in *"not a dynamic executable"*) return 0 ;; esac
    echo "build-image: ldd $1 failed: $out" >&2
    exit 1
  }
  while IFS= read -r line; do
    case "$line" in
      *"not found"*) echo "build-image: $1 needs a library that is missing: $line" >&2; exit 1 ;;
      *"=> /"*) lib="${line#*=> }"; lib="${lib%% (*}" ;;
      [[:space:]]/*) lib="${line#"${line%%[![:space:]]*}"}"; lib="${lib%% (*}" ;;
      *) continue ;;  # linux-vdso, statically linked
    esac
    if [ ! -e "$rootfs$lib" ]; then
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    fi
  done <<<"$out"
}

for bin in overlay-agent overlay-cni; do
  cp "$target/release/$bin" "$rootfs/usr/local/bin/$bin"
  if command -v strip >/dev/null 2>&1; then strip --strip-debug "$rootfs/usr/local/bin/$bin"; fi
  copy_libs "$rootfs/usr/local/bin/$bin"
done

nft="$(command -v nft || echo /usr/sbin/nft)"
cp -L "$nft" "$rootfs/usr/sbin/nft"
copy_libs "$nft"

busybox="$(dpkg -L busybox-static | grep -m1 '/busybox$')"
cp -L "$busybox" "$rootfs/bin/busybox"
# A shell, the usual file and text tools, and network tools.
applets="sh ash cat cp mv rm ln ls mkdir rmdir chmod chown touch find stat readlink realpath
  echo printf test [ true false env sleep date hostname id uname which xargs kill ps pidof
  top free df du mount umount
  sed grep egrep awk cut tr head tail wc sort uniq tee less vi diff od hexdump xxd base64
  md5sum sha256sum seq expr timeout watch tar gzip gunzip zcat
  ip ping ping6 wget nc httpd nslookup ifconfig route netstat traceroute arping telnet
  ipcalc brctl tunctl nsenter sysctl"
available=" $("$rootfs/bin/busybox" --list | tr '\n' ' ') "
for applet in $applets; do
  if [[ "$available" == *" $applet "* ]]; then
    ln -s busybox "$rootfs/bin/$applet"
  fi
done

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"

cp deploy/image/Dockerfile "$context/Dockerfile"
echo "==> docker build -t $tag $context"
# The classic builder: it needs nothing but the engine (no buildx plugin, no BuildKit).
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$context" 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
size="$(docker image inspect -f '{{.Size}}' "$tag")"
echo "==> built $tag: $((size / 1024 / 1024)) MiB ($size bytes)"
