# Every workflow a person needs. `make help` lists them.
GO       ?= go
TOOLS    := scripts/tools.sh
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/edgeloop/edgeloop/internal/version.version=$(VERSION)
# GOTAGS=openblas builds the built-in runtime's matrix products on Debian's OpenBLAS (cgo,
# libopenblas-dev): 4-5x the batch-32 throughput of the pure-Go default (docs/inference.md).
GOTAGS   ?=
# go-nvml's header marks NVML 13 deprecations; they are not ours to fix and drown real warnings.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# Test packages in parallel, but gently: the reference machine has two cores.
TESTFLAGS ?= -race -count=1 -timeout 30m -tags integration

# Decoders of untrusted input, fuzzed briefly by `make test` (seeds in each testdata/fuzz).
FUZZ_TARGETS := ./internal/spool:FuzzRecordDecode ./internal/sample:FuzzUnmarshalRecord \
	./internal/sample:FuzzReadTar ./exporter/runtime/oip:FuzzParseRequest ./internal/onnx:FuzzDecode ./collector/ingest:FuzzIngestDecode \
	./internal/dataset:FuzzReadShard ./internal/evalset:FuzzParseManifest ./internal/sample:FuzzUnmarshalRecordKeyed ./internal/sample:FuzzReadTarKeyed ./collector/ingest:FuzzIngestDecodeKeyed ./internal/modelrepo:FuzzVerifyManifest ./internal/modelrepo:FuzzVerifyPointer ./retrain:FuzzDecodeWebhook ./collector/labels:FuzzPostLabels ./collector/labels:FuzzImportLabelStudio ./internal/npy:FuzzRead ./internal/sample:FuzzParseMeta
FUZZTIME ?= 10s

.PHONY: help build exporter arm64 images test test-unit fuzz tools lint bench demo clean dashboards

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/edgeloop
	$(GO) build -tags '$(GOTAGS)' -ldflags '$(LDFLAGS)' -o bin/edgeloop ./cmd/edgeloop

exporter: ## build the lean edge binary bin/edgeloop-exporter: stripped, no client-go, trainer or collector (docs/deploy.md)
	$(GO) build -trimpath -tags '$(GOTAGS)' -ldflags '-s -w $(LDFLAGS)' -o bin/edgeloop-exporter ./cmd/edgeloop-exporter

# The arm64 cross compiler (Debian's gcc-aarch64-linux-gnu, installed by scripts/debs.sh).
CC_ARM64 ?= aarch64-linux-gnu-gcc

arm64: ## cross-compile the edge binary for linux/arm64, static (Jetson's glibc 2.31 and newer): bin/linux-arm64/edgeloop-exporter
	scripts/debs.sh
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=$(CC_ARM64) $(GO) build -trimpath -tags 'netgo osusergo $(GOTAGS)' \
		-ldflags '-s -w $(LDFLAGS) -linkmode external -extldflags -static' -o bin/linux-arm64/edgeloop-exporter ./cmd/edgeloop-exporter

# The images' binaries link glibc dynamically: the image carries Debian's, which go-nvml's dlopen
# of the driver's libnvidia-ml.so.1 needs. Layers are dated by the last commit (reproducible).
images: ## build the OCI images (linux/amd64, linux/arm64) into the layouts dist/images/edgeloop-exporter (edge) and dist/images/edgeloop (data center) (docs/deploy.md)
	scripts/debs.sh
	set -e; for b in edgeloop-exporter:cmd/edgeloop-exporter edgeloop:cmd/edgeloop; do \
		name=$${b%%:*} pkg=./$${b#*:}; \
		CGO_ENABLED=1 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -tags '$(GOTAGS)' -ldflags '-s -w $(LDFLAGS)' \
			-o dist/stage/$$name-amd64 $$pkg; \
		CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=$(CC_ARM64) $(GO) build -trimpath -tags '$(GOTAGS)' -ldflags '-s -w $(LDFLAGS)' \
			-o dist/stage/$$name-arm64 $$pkg; \
		deploy/image/stage.sh amd64 dist/stage/$$name-amd64 dist/stage/$$name/amd64 $$name; \
		deploy/image/stage.sh arm64 dist/stage/$$name-arm64 dist/stage/$$name/arm64 $$name; \
		SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) $(GO) run ./deploy/image --binary $$name --out dist/images/$$name \
			--version $(VERSION) --revision $$(git rev-parse HEAD) \
			--platform linux/amd64=dist/stage/$$name/amd64 --platform linux/arm64=dist/stage/$$name/arm64; \
	done

# Debian and RPM packages for single-node sites (docs/deploy.md): edgeloop-exporter (the lean
# edge binary) and edgeloop (the full binary, collector and retrain units), for amd64 (the
# binaries of `make exporter` and `make build`, glibc 2.34 or newer) and arm64 (static, as
# `make arm64`). Files are dated by the last commit.
.PHONY: packages
packages: exporter build arm64 ## build the .deb and .rpm packages (edgeloop-exporter, edgeloop) for amd64 and arm64 into dist/packages (docs/deploy.md)
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=$(CC_ARM64) $(GO) build -tags 'netgo osusergo $(GOTAGS)' \
		-ldflags '$(LDFLAGS) -linkmode external -extldflags -static' -o bin/linux-arm64/edgeloop ./cmd/edgeloop
	rm -rf dist/packages
	export NFPM=$$($(TOOLS) path nfpm) SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) && \
	deploy/packages/build.sh dist/packages '$(VERSION)' amd64 bin/edgeloop-exporter bin/edgeloop && \
	deploy/packages/build.sh dist/packages '$(VERSION)' arm64 bin/linux-arm64/edgeloop-exporter bin/linux-arm64/edgeloop
	cd dist/packages && sha256sum *.deb *.rpm > SHA256SUMS

tools: ## install the pinned tools and missing Debian packages the tests need (instant once there)
	scripts/debs.sh
	$(TOOLS) install

test: tools ## install what the tests need, then run every unit and integration test, and fuzz briefly
	PROMTOOL=$$($(TOOLS) path promtool) MINIO=$$($(TOOLS) path minio) AMTOOL=$$($(TOOLS) path amtool) \
	PROMETHEUS=$$($(TOOLS) path prometheus) ALERTMANAGER=$$($(TOOLS) path alertmanager) \
	$(GO) test $(TESTFLAGS) ./...
	$(GO) test -count=1 -tags openblas ./internal/runtime/builtin/ # the OpenBLAS build of the runtime
	$(MAKE) --no-print-directory plugin-test # the Grafana data source's frontend: tsc, eslint, jest (npm ci when needed)
	$(MAKE) --no-print-directory fuzz

fuzz: ## fuzz each decoder of untrusted input for FUZZTIME (default 10s)
	@GO=$(GO) scripts/fuzz.sh $(FUZZTIME) $(FUZZ_TARGETS)

test-unit: ## unit tests only (no external programs), quick
	$(GO) test -short -count=1 ./...

lint: ## gofmt, go vet and staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags integration ./...
	$$($(TOOLS) path staticcheck) -tags integration ./...

bench: ## run the benchmarks behind docs/benchmarks.md and compare them with benchstat
	bench/run.sh

# The Helm chart (docs/deploy.md): lint it, then package it into dist/ with the build's version
# as appVersion (the images' default tag). The chart's own version is Chart.yaml's.
.PHONY: chart
chart: ## lint the Helm chart deploy/helm/edgeloop and package it into dist/ (docs/deploy.md)
	helm=$$($(TOOLS) path helm) && \
	$$helm lint --strict deploy/helm/edgeloop && \
	$$helm package deploy/helm/edgeloop --app-version '$(VERSION)' --destination dist

.PHONY: chaos
chaos: tools ## the chaos soak for CHAOS_DURATION (10m): SIGKILLs and network faults under traffic, then conservation (docs/benchmarks.md)
	mkdir -p bench/out
	MINIO=$$($(TOOLS) path minio) CHAOS_DURATION=$${CHAOS_DURATION:-10m} CHAOS_SUMMARY=$${CHAOS_SUMMARY:-$(CURDIR)/bench/out/chaos-summary.json} \
	$(GO) test -count=1 -timeout 40m -tags integration -run '^TestChaosSoak$$' -v ./bench/chaos/

dashboards: ## regenerate the Grafana dashboards in dashboards/json from their Go code
	$(GO) run ./dashboards/gen

demo: build ## the whole loop in one process: drift, capture, retrain, recovery (docs/demo.md)
	scripts/debs.sh
	bin/edgeloop demo $(DEMOFLAGS)

clean: ## remove build outputs
	rm -rf bin dist

# The Grafana app with its nested data source (docs/grafana-plugin.md): the data source's Go
# backend for the platforms Grafana runs on, and the frontends (TypeScript and React, built with
# npm and webpack into dist/module.js, the app, and dist/datasource/module.js, the data source).
# Grafana loads dist/ as one plugin folder; the data source's plugin.json and executables are in
# dist/datasource/, Grafana's nested-plugin layout.
PLUGIN_DIR     := grafana/plugin
PLUGIN_VERSION ?= 0.1.0
NPM            ?= npm
# npm ci writes node_modules from package-lock.json; the stamp is newer than both package files
# when it is current, so npm runs again only when node_modules is missing or stale.
PLUGIN_NODE    := $(PLUGIN_DIR)/node_modules/.edgeloop-installed

.PHONY: plugin plugin-frontend plugin-test
plugin: ## build the Grafana app and its nested data source (backend for linux/amd64 and arm64, frontends) into grafana/plugin/dist, with the plugin.json files
	rm -rf $(PLUGIN_DIR)/dist
	mkdir -p $(PLUGIN_DIR)/dist/img $(PLUGIN_DIR)/dist/datasource/img
	for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w' -o $(PLUGIN_DIR)/dist/datasource/gpx_edgeloop_linux_$$arch ./$(PLUGIN_DIR)/pkg || exit 1; \
	done
	for p in . datasource; do \
		sed -e 's/%VERSION%/$(PLUGIN_VERSION)/' -e "s/%TODAY%/$$(date -u +%F)/" $(PLUGIN_DIR)/src/$$p/plugin.json > $(PLUGIN_DIR)/dist/$$p/plugin.json || exit 1; \
		cp $(PLUGIN_DIR)/src/img/* $(PLUGIN_DIR)/dist/$$p/img/ || exit 1; \
	done
	$(MAKE) --no-print-directory plugin-frontend

# Everything a release ships, in dist/, with one checksums file (docs/deploy.md, "Release"):
# both binaries for amd64 and arm64, both images' OCI layouts as tars, the packages, the chart
# and the Grafana plugin. The version is VERSION (git describe).
.PHONY: release
release: exporter build arm64 images packages chart plugin ## build every artefact of a release into dist/, with dist/SHA256SUMS (docs/deploy.md)
	rm -rf dist/bin && mkdir -p dist/bin
	cp bin/edgeloop-exporter dist/bin/edgeloop-exporter-$(VERSION)-linux-amd64
	cp bin/edgeloop dist/bin/edgeloop-$(VERSION)-linux-amd64
	cp bin/linux-arm64/edgeloop-exporter dist/bin/edgeloop-exporter-$(VERSION)-linux-arm64
	cp bin/linux-arm64/edgeloop dist/bin/edgeloop-$(VERSION)-linux-arm64
	for name in edgeloop-exporter edgeloop; do \
		tar -C dist/images --sort=name --mtime=@$$(git log -1 --format=%ct) --owner=0 --group=0 --numeric-owner \
			-cf dist/$$name-image-$(VERSION).oci.tar $$name || exit 1; \
	done
	tar -C $(PLUGIN_DIR) --sort=name --mtime=@$$(git log -1 --format=%ct) --owner=0 --group=0 --numeric-owner \
		--transform 's,^dist,edgeloop-edgeloop-app,' -czf dist/edgeloop-grafana-plugin-$(PLUGIN_VERSION).tar.gz dist
	cd dist && sha256sum bin/* packages/*.deb packages/*.rpm edgeloop-*.tgz edgeloop-*.tar edgeloop-*.tar.gz > SHA256SUMS
	@echo "release $(VERSION): $$(wc -l < dist/SHA256SUMS) artefacts in dist/, checksums in dist/SHA256SUMS"

# The pinned tools (eslint-plugin-jsdoc, webpack-cli) need Node.js 20.11 or newer: Debian 12's
# nodejs is 18 and comes without npm, so the check names what to install instead of failing later.
PLUGIN_NODE_CHECK = node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 11) ? 0 : 1)' 2>/dev/null \
	&& command -v $(NPM) >/dev/null || { echo "the Grafana plugin's frontend needs Node.js 20.11 or newer and npm, found node $$(node --version 2>/dev/null || echo none): NodeSource's nodejs 20+, or Debian 13's nodejs and npm (docs/grafana-plugin.md)" >&2; exit 1; }

$(PLUGIN_NODE): $(PLUGIN_DIR)/package.json $(PLUGIN_DIR)/package-lock.json
	@$(PLUGIN_NODE_CHECK)
	cd $(PLUGIN_DIR) && $(NPM) ci --prefer-offline --no-audit --no-fund
	touch $@

plugin-frontend: $(PLUGIN_NODE) ## build the Grafana app's and data source's frontends into grafana/plugin/dist/module.js and dist/datasource/module.js (npm ci first when node_modules is missing or stale)
	@$(PLUGIN_NODE_CHECK)
	cd $(PLUGIN_DIR) && $(NPM) run --silent build

plugin-test: $(PLUGIN_NODE) ## the Grafana plugin's frontend checks: type check, lint, Jest
	@$(PLUGIN_NODE_CHECK)
	cd $(PLUGIN_DIR) && $(NPM) run --silent typecheck && $(NPM) run --silent lint && $(NPM) run --silent test:ci
