#!/usr/bin/env bash
# Installs the system tools the tests and the demo need (ffmpeg/ffprobe, and python3-venv for
# `make install`), from Debian's packages, and checks for cargo, only when they are missing. Extra package names may be passed as arguments (e.g. nginx wrk).
set -euo pipefail

# The data plane is Rust: `pip install` needs cargo (rustup, https://rustup.rs; Debian's cargo
# is too old for its crates) unless a prebuilt wheel is installed instead.
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "install-system-deps: cargo not found: install a Rust toolchain (rustup, Rust >= 1.85) to build the data plane" >&2
  exit 1
fi

want=(python3-venv ffmpeg "$@")
missing=()
for pkg in "${want[@]}"; do
  case "$pkg" in
    ffmpeg) command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg) ;;
    python3-venv) "${PYTHON_BOOTSTRAP:-python3}" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv) ;;
    nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx) ;;
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
