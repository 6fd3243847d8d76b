#!/usr/bin/env bash
# tools.sh installs the pinned tools the tests and linters need into a cache outside the clone,
# keyed by version, so a second run (or a fresh CI clone on the same machine) is instant.
#
#   scripts/tools.sh path NAME     print the binary's path (installing it first if missing)
#   scripts/tools.sh install [NAME...]   install the named tools (default: all)
#
# EDGELOOP_TOOLS overrides the cache directory (default: $HOME/.cache/edgeloop/tools).
set -euo pipefail

cache=${EDGELOOP_TOOLS:-${HOME:-/root}/.cache/edgeloop/tools}

# name -> go install package@version. Versions are pinned; bump them here and nowhere else.
declare -A pkg=(
  [promtool]=github.com/prometheus/prometheus/cmd/promtool@v0.316.0
  [staticcheck]=honnef.co/go/tools/cmd/staticcheck@v0.8.2
  [benchstat]=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
  [minio]=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
  [prometheus]=github.com/prometheus/prometheus/cmd/prometheus@v0.316.0
  # v0.35.0 does not build from the module (its UI assets are missing); 0.28.1 does.
  [alertmanager]=github.com/prometheus/alertmanager/cmd/alertmanager@v0.28.1
  [amtool]=github.com/prometheus/alertmanager/cmd/amtool@v0.28.1
  # make packages and its test: the .deb and .rpm packages (docs/deploy.md). About 45 s cold.
  [nfpm]=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
  # make chart and deploy/helm's test: lint, template and package the chart. About 7 min cold.
  [helm]=helm.sh/helm/v4/cmd/helm@v4.3.2
)
all=(promtool staticcheck benchstat minio prometheus alertmanager amtool nfpm helm)

bin_dir() { # one directory per name and version, so a bumped pin installs beside the old one
  local name=$1 version=${pkg[$1]##*@}
  echo "$cache/$name-$version"
}

install_one() {
  local name=$1
  [[ -n ${pkg[$name]:-} ]] || { echo "tools.sh: unknown tool $name (known: ${all[*]})" >&2; exit 2; }
  local dir; dir=$(bin_dir "$name")
  [[ -x $dir/$name ]] && return 0
  echo "tools.sh: installing ${pkg[$name]} into $dir (first time only; promtool takes about 9 minutes)" >&2
  mkdir -p "$dir.tmp"
  # GOFLAGS cleared: the pinned module builds with its own go.mod, not ours.
  GOFLAGS= GOBIN="$dir.tmp" go install "${pkg[$name]}"
  rm -rf "$dir" && mv "$dir.tmp" "$dir" # rename last: a half-built tool is never taken for a good one
}

case ${1:-install} in
  path) install_one "$2"; echo "$(bin_dir "$2")/$2" ;;
  install) shift || true; for t in "${@:-${all[@]}}"; do install_one "$t"; done ;;
  *) echo "usage: tools.sh path NAME | install [NAME...]" >&2; exit 2 ;;
esac
