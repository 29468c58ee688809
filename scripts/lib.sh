# Shared by scripts/demo.sh and scripts/test.sh: root check and missing system packages.

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$1 creates network namespaces and TUN devices: run it as root (e.g. sudo $0)" >&2
    exit 1
  fi
}

# ensure_packages CMD:PACKAGE... installs PACKAGE with apt-get when CMD is missing (CMD may be
# an absolute path, e.g. /usr/lib/cni/portmap for a file outside $PATH).
ensure_packages() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -e /dev/net/tun ]; then
    mkdir -p /dev/net
    mknod /dev/net/tun c 10 200
  fi
  command -v cargo >/dev/null 2>&1 || {
    echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
    exit 1
  }
}
