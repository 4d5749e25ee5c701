# Slipway. `make dev` runs everything in one process; `make test` runs the tests.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/slipway
# Test timeout for the whole suite; the suite itself takes a few minutes on a warm cache.
TEST_TIMEOUT ?= 20m
# Static, pure-Go builds everywhere (the SQLite driver is pure Go), all with -trimpath (no
# local paths in a binary): one build cache serves go vet, the tests, the binaries the tests
# build, `make build` and the FROM-scratch image, so a cold machine compiles Temporal once.
# (The image had been built with -trimpath and the tests without: CI compiled the whole
# server twice.) GOFLAGS applies a flag only to the go commands that know it.
export CGO_ENABLED ?= 0
export GOFLAGS := $(strip $(filter-out -trimpath,$(GOFLAGS)) -trimpath)

.PHONY: build dev dev-clean images test test-unit test-race bench chaos lint clean compose-up compose-down

## build: bin/slipway and, beside it, bin/slipway-probe: the small prober the worker loads into
## each engine to probe replicas next to them (found beside the slipway binary).
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/slipway
	$(GO) build -trimpath -ldflags '-s -w' -o bin/slipway-probe ./cmd/slipway-probe

## dev: embedded Temporal + Web UI + worker + API in one process, on the local Docker engine.
dev: build images
	./$(BIN) dev $(ARGS)

## dev-clean: remove every container and network Slipway made for the local environment,
## probe containers and the probe image cache (keeps .slipway/: Temporal's data, the dev token).
dev-clean:
	-docker ps -aq --filter label=io.slipway.environment=local | xargs -r docker rm -f
	-docker network ls -q --filter label=io.slipway.environment=local | xargs -r docker network rm
	-docker ps -aq --filter label=io.slipway.role=probe | xargs -r docker rm -f
	-docker images -q --filter label=io.slipway.role=probe | sort -u | xargs -r docker rmi -f

## images: the demo service at several versions, built offline (FROM scratch).
images:
	examples/demo-service/build-images.sh

## test: every test, against the real Docker engine and an embedded Temporal server. The
## results go through internal/tools/testreport (go test -json): a line per package, the
## output of what failed, then every skipped test and why. NO_SKIPS=1 (CI: .ci/run) makes a
## skipped test a failure unless .ci/allowed-skips lists it with the reason. RACED=1 (CI,
## after `make test-race`) leaves out the packages whose every test test-race has just run
## under the race detector (RACE_INTEGRATION_PKGS): the same tests twice cost CI minutes.
TESTREPORT = $(GO) run ./internal/tools/testreport -allow .ci/allowed-skips $(if $(NO_SKIPS),-no-skips)
## The longest packages are started first (go test runs them in the order given, -p at a
## time): a long one started last ran alone at the end of the run.
SLOW_PKGS := ./e2e/ ./cmd/slipway/ ./starter/ ./prod/ ./chaos/
TEST_PKGS = $$($(GO) list $(SLOW_PKGS) ./... $(if $(RACED),| grep -vxF "$$($(GO) list $(RACE_INTEGRATION_PKGS))"))
test:
	scripts/ensure-docker.sh
	scripts/ensure-test-tools.sh
	$(GO) vet ./...
	$(GO) test -json -count=1 -timeout $(TEST_TIMEOUT) $(TEST_PKGS) | $(TESTREPORT)

## test-unit: the tests that need neither Docker nor Temporal, in seconds (no root, no
## daemon). The convention is Go's short mode: every test that needs a Docker engine or an
## embedded Temporal server goes through internal/testenv (RequireDocker, DemoImages,
## UniqueEnv, SecondDaemon…, RequireTemporal), which skips it under -short. Results are
## cached per package as usual; TESTFLAGS=-count=1 runs everything again.
test-unit:
	$(GO) test -short $(TESTFLAGS) ./...

## test-race: the race detector (cgo: CGO_ENABLED=1 here only; scripts/ensure-race-tools.sh
## installs gcc where there is none) on every package whose test binary does not embed the
## Temporal server (race-building the server would cost more than the whole suite; starter,
## cmd/slipway, schedules, devserver, e2e, chaos): their unit tests, and the integration tests
## of activities and internal/dockerengine (probe streams, event watches, load generation: the
## most goroutines of our own) against the real engine, through testreport like `make test`
## (NO_SKIPS applies). 2-3 min on an otherwise idle 2-core machine, up to 7 min beside other
## load (7.5 min per integration package when the machine also compiles), plus the race build of
## the dependencies on a cold cache; `make test RACED=1` then leaves those two packages out.
RACE_UNIT_PKGS := ./apiclient/ ./engine/ ./examples/demo-service/ ./internal/testenv/ ./metrics/ \
	./internal/tools/... ./judgment/ ./probe/ ./spec/ ./workflows/
RACE_INTEGRATION_PKGS := ./activities/ ./internal/dockerengine/
test-race:
	scripts/ensure-race-tools.sh
	scripts/ensure-docker.sh
	CGO_ENABLED=1 $(GO) test -race -short -count=1 -timeout $(TEST_TIMEOUT) $(RACE_UNIT_PKGS)
	CGO_ENABLED=1 $(GO) test -json -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_INTEGRATION_PKGS) | $(TESTREPORT)

## bench: speed and memory figures, each as a ratio against a baseline measured in the same run.
bench: build images
	scripts/bench.sh

## chaos: the chaos test (issue 12) at full size: 100 releases of good and bad versions of two
## services on two clusters, through the API, on split processes (Temporal, two workers, two
## API replicas) SIGKILLed at random, some releases terminated by hand; every outcome checked
## against the engine. Prints the figures of BENCHMARKS.md. `make test` runs it with 10.
## CHAOS_RELEASES=n for another size; SLIPWAY_CHAOS_SEED=<seed printed by a run> replays one.
CHAOS_RELEASES ?= 100
chaos:
	scripts/ensure-docker.sh
	SLIPWAY_CHAOS_RELEASES=$(CHAOS_RELEASES) $(GO) test -count=1 -timeout 3h -v -run '^TestChaos$$' ./chaos/

## lint: gofmt, go vet, golangci-lint (.golangci.yml: depguard, forbidigo, errcheck, revive,
## staticcheck…) and Temporal's workflowcheck over the workflows (workflowcheck.config.yaml).
## The linters are pinned and built into .bin/ by scripts/ensure-lint-tools.sh (first run: a
## few minutes). docs/contributing.md says how to settle a finding.
GO_FILES = $$(git ls-files --cached --others --exclude-standard '*.go')
lint:
	@scripts/ensure-lint-tools.sh
	@test -z "$$(gofmt -l $(GO_FILES))" || { echo "gofmt: run gofmt -w on:"; gofmt -l $(GO_FILES); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags record ./workflows/
	.bin/golangci-lint run ./...
	.bin/workflowcheck -config workflowcheck.config.yaml ./workflows/...

clean:
	rm -rf bin

## compose-up: Slipway as containers (docs/compose.md): builds the slipway and demo images
## offline, generates an API token, starts temporal, worker and api, waits until they are
## healthy and the demo release (deployments/local.yaml) succeeded.
compose-up:
	build/compose.sh up

## compose-down: removes the stack and every container, network and volume Slipway created
## for the local environment; keeps the images and the API token (.slipway/compose/).
compose-down:
	build/compose.sh down

## compose-e2e: the compose end-to-end test (CI): up, good release, bad release rolled back, down.
.PHONY: compose-e2e
compose-e2e:
	scripts/compose-e2e.sh

## prod-up: the production topology on one machine, no registry (docs/production.md):
## PostgreSQL (Debian's, installed if missing), two Temporal server processes built from
## go.temporal.io/server forming one cluster, two workers, two API replicas, each a
## background process with its log in .prod/ ($$SLIPWAY_PROD_DIR). Prints the addresses and
## where the API token is. `scripts/prod.sh status|kill NAME|start NAME` for the rest.
.PHONY: prod-up prod-down prod-clean
prod-up: build .bin/temporal-server .bin/temporal-sql-tool
	scripts/ensure-postgres.sh
	scripts/prod.sh up

## prod-down: stops every process of prod-up; keeps the data (PostgreSQL, token): prod-up
## carries on where it stopped, unfinished releases included.
prod-down:
	scripts/prod.sh down

## prod-clean: prod-down, then deletes the state directory (.prod/).
prod-clean:
	scripts/prod.sh clean

# The official Temporal server and its SQL schema tool, from the version go.mod pins (its
# `tool` lines); plain go build, so they share the build cache of the tests.
.bin/temporal-server: go.mod go.sum
	$(GO) build -o $@ go.temporal.io/server/cmd/server
.bin/temporal-sql-tool: go.mod go.sum
	$(GO) build -o $@ go.temporal.io/server/cmd/tools/sql
