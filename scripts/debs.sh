#!/usr/bin/env bash
# debs.sh installs the Debian packages the tests need, only those missing, so a machine that has
# them pays nothing. Needs root (or sudo) the first time.
set -euo pipefail
packages=(
  dataset-fashion-mnist # the real data set: trainer, runtime accuracy tests, benchmarks
  libonnx-testdata      # ONNX's backend node tests: the built-in runtime's conformance suite
  python3-torch         # the PyTorch training job, and reference outputs for exported CNNs
  python3-onnx          # torch.onnx.export needs it
  python3-numpy         # the PyTorch job reads .npy inputs
  python3-boto3         # the PyTorch job reads and writes s3:// URLs
  libopenblas-dev       # the built-in runtime's optional OpenBLAS products (go build -tags openblas)
  gcc-aarch64-linux-gnu # make arm64 and make images: the edge binary cross-compiled with cgo (docs/deploy.md)
  qemu-user-static      # the arm64 edge binary's smoke test runs it under qemu-aarch64-static
  systemd               # systemd-analyze verify of the packages' units (deploy/packages)
  rpm                   # the package test reads the .rpm packages back with rpm -qp
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "debs.sh: installing ${missing[*]}" >&2
sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
