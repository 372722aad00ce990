#!/usr/bin/env bash
# Makes sure what the build needs is installed: a Rust toolchain, a C++ compiler and libclang
# (RocksDB's bindings are generated with bindgen). Installs the Debian/Ubuntu packages when run
# as root (or with passwordless sudo); otherwise stops with the one command to run.
set -euo pipefail

need_pkgs=()
command -v cargo >/dev/null 2>&1 || { echo "raftcron: Rust is missing: install it from https://rustup.rs, then run this again" >&2; exit 1; }
command -v c++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
has_libclang=no
# libclang itself (libclang.so.1, libclang-14.so.1), not its neighbour libclang-cpp, which
# other packages install and bindgen cannot use.
for pattern in '/usr/lib/llvm-*/lib/libclang.so*' '/usr/lib/*-linux-gnu/libclang.so*' \
  '/usr/lib/*-linux-gnu/libclang-[0-9]*.so*' '/usr/lib64/libclang.so*' '/usr/lib64/libclang-[0-9]*.so*'; do
  compgen -G "$pattern" >/dev/null && has_libclang=yes
done
if [ -n "${LIBCLANG_PATH:-}" ]; then has_libclang=yes; fi
[ "$has_libclang" = yes ] || need_pkgs+=(libclang-dev clang)
[ ${#need_pkgs[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "raftcron: install ${need_pkgs[*]} (libclang and a C++ compiler) with your package manager, then run this again" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "raftcron: run: sudo apt-get install -y ${need_pkgs[*]}" >&2
  exit 1
fi
echo "raftcron: installing ${need_pkgs[*]} (needed to build RocksDB)..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
