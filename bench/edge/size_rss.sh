#!/usr/bin/env bash
# size_rss.sh measures the lean edge binary against the issue-15 targets (docs/benchmarks.md,
# "Edge binary: size and idle RSS"): the size of `make exporter`'s binary, and the resident memory
# of an idle exporter serving the reference Fashion-MNIST model through model sync.
#
#   bench/edge/size_rss.sh
#
# Every variant below runs at once, REPLICAS times (default 3), each on its own ports, from binaries copied into a fresh
# directory whose page cache is dropped first (a cold start, as after a reboot); after SETTLE
# seconds of idling each one's VmRSS (anonymous + file-backed), Go heap and Go runtime memory are
# read. The anonymous and file-backed parts are shown apart because the second depends on the
# kernel: how much of the binary a fault maps is set by the device's readahead and by large
# folios, which this script prints. A variant's row is its median replica by RSS.
#
# Environment:
#   SETTLE    seconds to idle before measuring (default 150: past the Go runtime's forced GC,
#             which runs every two minutes, and one model sync poll)
#   REF_DIR   where the reference model is trained once and reused (default
#             ~/.cache/edgeloop/bench-edge-ref; delete it to retrain, about a minute)
#   VARIANTS  extra variants, one per line: "name binary ENV=value ...", binary being lean or full
#   EDGELOOP_FULL  a full edgeloop binary to compare with, instead of building one (its stripped
#             size is then strip(1)'s)
#   REPLICAS  exporters per variant (default 3)
#   OUT       the table is also written here (default bench/out/edge-size-rss-<time>.txt)
set -euo pipefail
cd "$(dirname "$0")/../.."
settle=${SETTLE:-150}
ref=${REF_DIR:-$HOME/.cache/edgeloop/bench-edge-ref}
mkdir -p bench/out
out=${OUT:-bench/out/edge-size-rss-$(date -u +%Y%m%dT%H%M%SZ).txt}
work=$(mktemp -d /tmp/edgeloop-size-rss.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "size_rss: building (make exporter, and the full edgeloop for comparison)" >&2
make --no-print-directory exporter >&2
# The full binary is built as `make build` builds it, and stripped as `make exporter` strips.
full=yes
if [[ -n ${EDGELOOP_FULL:-} ]]; then
  cp "$EDGELOOP_FULL" "$work/edgeloop" && strip -o "$work/edgeloop-stripped" "$work/edgeloop"
elif ! go build -o "$work/edgeloop" ./cmd/edgeloop >&2 ||
  ! go build -trimpath -ldflags '-s -w' -o "$work/edgeloop-stripped" ./cmd/edgeloop >&2; then
  echo "size_rss: the full edgeloop does not build: measuring the lean binary alone" >&2
  full=no
fi

if [[ ! -s $ref/repo/models/fashion/1/edgeloop.json ]]; then
  [[ $full == yes ]] || { echo "size_rss: no reference model in $ref and no edgeloop to train one" >&2; exit 1; }
  echo "size_rss: training the reference model into $ref (edgeloop train's defaults, about a minute)" >&2
  rm -rf "$ref" && mkdir -p "$ref"
  "$work/edgeloop" model keygen --out "$ref/keys" >&2
  "$work/edgeloop" train --out "$ref/trained" --data "${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}" >&2
  "$work/edgeloop" model publish --repo "file://$ref/repo" --key "$ref/keys/edgeloop.key" "$ref/trained" >&2
fi

cp bin/edgeloop-exporter "$work/lean"
if [[ $full == yes ]]; then mv "$work/edgeloop" "$work/full"; fi
for b in "$work"/lean "$work"/full; do
  if [[ -e $b ]]; then dd if="$b" iflag=nocache count=0 status=none; fi # drop its cached pages: a cold start
done

variants="lean-default lean
lean-go-defaults lean GOGC=100
full-edgeloop full
${VARIANTS:-}"

# Each variant runs REPLICAS times; replica i of all listens on ports 19850+2i (metrics) and
# 19851+2i (inference).
replicas=${REPLICAS:-3}
i=0
names=()
while read -r variant bin envs; do
  [[ -z $variant ]] && continue
  [[ -e $work/$bin ]] || continue
  for r in $(seq "$replicas"); do
    name=$variant.$r
    metrics=$((19850 + 2 * i)) front=$((19851 + 2 * i))
    mkdir -p "$work/$name"
    cat >"$work/$name/exporter.yaml" <<EOF
metrics:
  listen: 127.0.0.1:$metrics
inference:
  listen: 127.0.0.1:$front
models:
  - name: fashion
model_sync:
  repository: file://$ref/repo
  trusted_keys: [$ref/keys/edgeloop.pub]
  cache_dir: $work/$name/cache
EOF
    # shellcheck disable=SC2086 # envs is a list of NAME=value words
    env $envs "$work/$bin" exporter --config "$work/$name/exporter.yaml" 2>"$work/$name/log" &
    pids+=($!)
    names+=("$name:$metrics:$!")
    i=$((i + 1))
  done
done <<<"$variants"

for n in "${names[@]}"; do
  IFS=: read -r name metrics pid <<<"$n"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$metrics/readyz" >/dev/null && continue 2
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "size_rss: $name never became ready:" >&2
  cat "$work/$name/log" >&2
  exit 1
done
echo "size_rss: all ready, idling ${settle}s" >&2
sleep "$settle"

kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {printf "%.1f", $2 / 1048576}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
dev=$(df --output=source "$work" | tail -1)
{
  echo "# $(date -u +%FT%TZ) $(uname -r) $(go version | cut -d' ' -f3) settle=${settle}s, binaries on $dev (read_ahead_kb=$(cat /sys/block/"$(basename "$dev")"/queue/read_ahead_kb 2>/dev/null || echo '?'))"
  printf "%-24s %10s\n" "binary" "MB"
  for f in bin/edgeloop-exporter "$work/full" "$work/edgeloop-stripped"; do
    [[ -e $f ]] || continue
    printf "%-24s %10.1f\n" "$(basename "$f" | sed 's/^full$/edgeloop (make build)/')" "$(stat -c %s "$f" | awk '{print $1 / 1e6}')"
  done
  echo
  printf "%-20s %9s %11s %9s %9s %9s %9s %9s\n" variant "RSS MiB" "(range)" "anon" "file" "heap use" "go sys" "released"
  for n in "${names[@]}"; do
    IFS=: read -r name metrics pid <<<"$n"
    rss=$(kb VmRSS "$pid") anon=$(kb RssAnon "$pid") file=$(($(kb RssFile "$pid") + $(kb RssShmem "$pid")))
    echo "${name%.*} $rss $(mib "$anon") $(mib "$file") $(metric "$metrics" go_memstats_heap_inuse_bytes)" \
      "$(metric "$metrics" go_memstats_sys_bytes) $(metric "$metrics" go_memstats_heap_released_bytes)"
  done >"$work/samples"
  # One row per variant: its median replica by RSS, and the range of all replicas' RSS.
  while read -r variant _; do
    [[ -z $variant ]] && continue
    awk -v v="$variant" '$1 == v' "$work/samples" | sort -k2,2n | awk '
      {row[NR] = $0; rss[NR] = $2}
      END {
        if (NR == 0) exit
        split(row[int((NR + 1) / 2)], m, " ")
        printf "%-20s %9.1f %11s %9s %9s %9s %9s %9s\n", m[1], m[2] / 1024,
          sprintf("%.1f-%.1f", rss[1] / 1024, rss[NR] / 1024), m[3], m[4], m[5], m[6], m[7]
      }'
  done <<<"$variants"
} | tee "$out"
echo "size_rss: wrote $out" >&2
