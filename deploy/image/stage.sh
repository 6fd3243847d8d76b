#!/usr/bin/env bash
# stage.sh lays out the two layers of the edge image for one architecture (docs/deploy.md,
# "OCI images"), from Debian's packages and a built binary:
#
#   deploy/image/stage.sh ARCH BINARY OUTDIR [NAME]   ARCH: amd64 or arm64
#
# OUTDIR/base holds what every version shares: the glibc that the binary and go-nvml's dlopen of
# libnvidia-ml.so.1 need (libc6, or libc6-arm64-cross for arm64: the same files repacked), the CA
# bundle built from ca-certificates' Mozilla certificates, tzdata's zone files, and the passwd and
# group entries of the non-root user 65532. OUTDIR/app holds the binary, as /usr/bin/NAME (default
# edgeloop-exporter; edgeloop for the full image). The .deb files are
# fetched with `apt-get download` into DEB_CACHE (default ~/.cache/edgeloop/debs) once.
set -euo pipefail
arch=$1 binary=$2 out=$3 name=${4:-edgeloop-exporter}
cache=${DEB_CACHE:-$HOME/.cache/edgeloop/debs}
case $arch in
amd64) libc=libc6 triplet=x86_64-linux-gnu ldso=ld-linux-x86-64.so.2 ;;
arm64) libc=libc6-arm64-cross triplet=aarch64-linux-gnu ldso=ld-linux-aarch64.so.1 ;;
*) echo "stage.sh: unknown architecture $arch (amd64 or arm64)" >&2 && exit 2 ;;
esac

mkdir -p "$cache"
deb() { # deb PACKAGE: the cached .deb of PACKAGE's candidate version, downloaded once
  local v f
  v=$(apt-cache policy "$1" | awk '/Candidate:/ {print $2}')
  [[ -n $v && $v != "(none)" ]] || { echo "stage.sh: apt knows no $1 (apt-get update?)" >&2 && exit 1; }
  f=$(find "$cache" -maxdepth 1 -name "${1}_${v//:/%3a}_*.deb" | head -1)
  if [[ -z $f ]]; then
    # A stale package list names a version the mirror no longer has: refresh it once and retry.
    if ! (cd "$cache" && apt-get download -q "$1=$v" >&2); then
      apt-get update -qq >&2
      v=$(apt-cache policy "$1" | awk '/Candidate:/ {print $2}')
      (cd "$cache" && apt-get download -q "$1=$v" >&2)
    fi
    f=$(find "$cache" -maxdepth 1 -name "${1}_${v//:/%3a}_*.deb" | head -1)
  fi
  echo "$f"
}

rm -rf "$out" && mkdir -p "$out/base" "$out/app/usr/bin"
x=$(mktemp -d) && trap 'rm -rf "$x"' EXIT
for p in "$libc" tzdata ca-certificates; do
  dpkg-deb -x "$(deb "$p")" "$x/$p"
done
base=$out/base

# glibc: the loader at the path the binary asks for, and the libraries the binary and NVML link
# (libpthread, libdl, librt and libm are stubs or small since glibc 2.34, but NVML still names them).
src=$x/$libc/lib/$triplet
[[ $arch == arm64 ]] && src=$x/$libc/usr/aarch64-linux-gnu/lib
mkdir -p "$base/lib/$triplet"
for f in "$ldso" libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1; do
  cp -L "$src/$f" "$base/lib/$triplet/$f"
done
if [[ $arch == amd64 ]]; then
  mkdir -p "$base/lib64" && ln -s "/lib/$triplet/$ldso" "$base/lib64/$ldso"
else
  ln -s "$triplet/$ldso" "$base/lib/$ldso"
fi

# CA certificates: the bundle update-ca-certificates would build from the package's Mozilla set.
mkdir -p "$base/etc/ssl/certs"
find "$x/ca-certificates/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort |
  xargs cat >"$base/etc/ssl/certs/ca-certificates.crt"

# Zone files, for time zones in logs and schedules.
mkdir -p "$base/usr/share"
cp -a "$x/tzdata/usr/share/zoneinfo" "$base/usr/share/zoneinfo"

# The user: uid and gid 65532 (nonroot), with the state directory it owns (mkimage sets owners).
cat >"$base/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:edgeloop:/var/lib/edgeloop:/sbin/nologin
EOF
cat >"$base/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
echo "hosts: files dns" >"$base/etc/nsswitch.conf"
mkdir -p "$base/var/lib/edgeloop" "$base/tmp"

cp "$binary" "$out/app/usr/bin/$name"
chmod 0755 "$out/app/usr/bin/$name"
