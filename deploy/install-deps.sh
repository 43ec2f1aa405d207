#!/usr/bin/env bash
# Installs every Debian package that Flotilla's build, tests and runtime need.
# Idempotent: when everything is present it only runs dpkg-query and exits in about a second.
set -euo pipefail

packages=(
  # toolchain and build
  build-essential cmake ninja-build ccache pkg-config clang clang-format clang-tidy libclang-rt-14-dev
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  # block backends: io_uring for raw files, the userspace iSCSI initiator
  liburing-dev libiscsi-dev
  # migration stream compression
  libzstd-dev liblz4-dev
  # iSCSI target and Open vSwitch (userspace datapath) for integration tests and the cluster;
  # drbd-utils: DRBD resource files checked with drbdadm (the kernel module is not needed)
  tgt openvswitch-switch drbd-utils
  # etcd: the server for integration tests and the local cluster, etcdctl, and the .proto
  # files from which proto/ derives the etcd client stubs at build time
  etcd-server etcd-client golang-etcd-server-dev
  # the reference VMM for the test guest's cross-checks and the benchmarks (block-extra: its
  # iSCSI driver, for the iSCSI rows of vmm_bench); Linux fixtures
  qemu-system-x86 qemu-utils qemu-block-extra
  # test tooling
  iproute2 procps ethtool tcpdump iputils-ping util-linux openssl
  # the cluster demo reads clusterctl -o json
  jq
  # flotilla-console (Qt 6 Widgets and Charts; its tests run on the offscreen platform).
  # Qt6Charts' CMake package needs Qt6OpenGL's, which qt6-charts-dev does not pull in.
  qt6-base-dev qt6-charts-dev libqt6opengl6-dev
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this script as root (or install them with apt-get) and retry" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
