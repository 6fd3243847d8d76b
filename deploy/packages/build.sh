#!/usr/bin/env bash
# build.sh writes the .deb and .rpm packages of one architecture with nfpm (docs/deploy.md,
# "Single-node site"): edgeloop-exporter (the lean edge binary) and edgeloop (the full binary),
# as `make packages` and the package test build them.
#
#   NFPM=path/to/nfpm build.sh OUT_DIR VERSION ARCH EXPORTER_BIN EDGELOOP_BIN
#
# VERSION is `git describe`'s (v1.2.3, v1.2.3-4-gabc1234-dirty, abc1234): it becomes a version
# dpkg and rpm both order by release (1.2.3, 1.2.3+4.gabc1234.dirty, 0.0.0~gitabc1234). ARCH is
# amd64 or arm64. An amd64 binary is linked against glibc 2.34 or newer (what `make exporter`
# and `make build` produce on Debian 12); an arm64 one is static (`make arm64`): no dependency.
# SOURCE_DATE_EPOCH, when set, dates every file in the packages. FORMATS (default "deb rpm")
# and PACKAGES (default "edgeloop-exporter edgeloop") narrow what is written.
set -euo pipefail
[[ $# -eq 5 ]] || { echo "usage: NFPM=nfpm build.sh OUT_DIR VERSION ARCH EXPORTER_BIN EDGELOOP_BIN" >&2; exit 2; }
out=$1 version=$2 arch=$3 exporter_bin=$4 edgeloop_bin=$5
nfpm=${NFPM:-nfpm}
cd "$(dirname "$0")/../.." # nfpm's paths are relative to the repository root

case $version in
  v[0-9]*) version=${version#v} ;;
  [0-9]*.[0-9]*) ;;                # a version without the v
  *) version=0.0.0~git$version ;; # no tag (an abbreviated commit, perhaps all digits): before every release
esac
# A dash is dpkg's revision separator and not allowed in an rpm version.
version=$(printf %s "$version" | sed -e 's/-/+/' -e 's/-/./g')

case $arch in
  amd64) deb_libc='libc6 (>= 2.34)' rpm_libc='glibc >= 2.34' ;;
  arm64) deb_libc='' rpm_libc='' ;;
  *) echo "build.sh: unknown architecture $arch (amd64, arm64)" >&2; exit 2 ;;
esac

mkdir -p "$out"
for format in ${FORMATS:-deb rpm}; do
  for pkg in ${PACKAGES:-edgeloop-exporter edgeloop}; do
    PKG_VERSION=$version PKG_ARCH=$arch EXPORTER_BIN=$exporter_bin EDGELOOP_BIN=$edgeloop_bin \
      DEB_LIBC=$deb_libc RPM_LIBC=$rpm_libc \
      "$nfpm" package --config "deploy/packages/$pkg.yaml" --packager "$format" --target "$out/"
  done
done
