#!/usr/bin/env bash
# Installs the system tools the tests and the demo need, from Debian's packages, only when they
# are missing: ffmpeg/ffprobe, python3-venv for `make install`, and for the local cluster's real
# node containerd, runc, iptables, conntrack, the CNI plugins, and what builds its images offline
# (mmdebstrap, docker.io's dockerd on a private socket, gcc and static libc for the pause image);
# Chromium for the player's browser test (driven by the playwright package, no browser download);
# Prometheus 2.42 (`prometheus`, with promtool): `promtool test rules` in the unit tier and the
# in-cluster Prometheus of the monitoring stack;
# and checks for cargo. Extra package names may be passed as arguments (e.g. nginx wrk).
set -euo pipefail

# The data plane is Rust: `pip install` needs cargo (rustup, https://rustup.rs; Debian's cargo
# is too old for its crates) unless a prebuilt wheel is installed instead.
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "install-system-deps: cargo not found: install a Rust toolchain (rustup, Rust >= 1.85) to build the data plane" >&2
  exit 1
fi

want=(python3-venv ffmpeg containerd runc iptables conntrack containernetworking-plugins
      mmdebstrap docker.io gcc libc6-dev chromium prometheus "$@")
missing=()
for pkg in "${want[@]}"; do
  case "$pkg" in
    ffmpeg) command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg) ;;
    python3-venv) "${PYTHON_BOOTSTRAP:-python3}" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv) ;;
    nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx) ;;
    containernetworking-plugins) [ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || missing+=("$pkg") ;;
    chromium) [ -x /usr/lib/chromium/chromium ] || missing+=(chromium) ;;
    prometheus) command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus) ;;
    docker.io) command -v dockerd >/dev/null || missing+=(docker.io) ;;
    libc6-dev) [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -n "$(find /usr/lib -maxdepth 2 -name libc.a -print -quit 2>/dev/null)" ] || missing+=(libc6-dev) ;;
    *) command -v "$pkg" >/dev/null || missing+=("$pkg") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-system-deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Package lists are refreshed once when they are absent or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
  $sudo apt-get update -qq
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
