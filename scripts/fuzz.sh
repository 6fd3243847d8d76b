#!/usr/bin/env bash
# Fuzzes each target for a while: scripts/fuzz.sh FUZZTIME PKG:FuzzName...
#
# A run that fails with Go's bare "context deadline exceeded" and wrote no failing input is the
# fuzzing coordinator's race at the end of -fuzztime on a loaded machine (golang/go#75804), not
# a finding: it is run once more, and fails the whole only if it fails again. Any other failure
# (a failing input written, a panic, a test error) fails at once.
set -euo pipefail
go=${GO:-go}
fuzztime=$1
shift
for t in "$@"; do
	pkg=${t%%:*} name=${t#*:}
	for attempt in 1 2; do
		echo "fuzz $name ($pkg) for $fuzztime"
		log=$(mktemp)
		if "$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"; then
			rm -f "$log"
			break
		fi
		if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
			echo "fuzz $name: the coordinator's deadline race (no failing input written); running it again"
			rm -f "$log"
			continue
		fi
		rm -f "$log"
		exit 1
	done
done
