# Targets a Vault operator expects from a plugin repo. `make dev` and
# `make test` are the two that matter; everything else feeds them.

PLUGIN_NAME   := vault-plugin-secrets-piwik
MODULE        := github.com/piwik-vault/vault-plugin-secrets-piwik
# The version stamped into the binary: CHANGELOG.md's top entry, its one
# source (a unit test checks that this reads it).
VERSION       ?= $(shell sed -n 's/^\#\# \(v[0-9][0-9.]*[^ ]*\).*/\1/p' CHANGELOG.md | head -n 1)
GO            ?= go
BIN           := $(CURDIR)/bin
LDFLAGS       := -s -w -X $(MODULE).Version=$(VERSION)
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The Vault release the plugin is tested in; see tools/vault/go.mod.
VAULT_BIN     := $(BIN)/vault
# Other Vault releases `make compat` tests, one module each in
# tools/compat/vault-<version>/ (only releases that build; see README).
COMPAT_BINS   := $(addprefix $(BIN)/,$(sort $(notdir $(wildcard tools/compat/vault-v*))))

.PHONY: all version build standin vault dev dev-stop test unit e2e soak resilience acc acc-standin compat bench fuzz release fmt lint clean

all: fmt lint build test

version:
	@echo $(VERSION)

# Static binaries: Vault may run the plugin on hosts without a libc match.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$(PLUGIN_NAME) ./cmd/$(PLUGIN_NAME)

# Without cgo, like the plugin: the two then share the compiled standard
# library, and after the plugin only the stand-in's own packages compile.
standin:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/piwik-standin ./cmd/piwik-standin

# Building Vault from source is slow the first time (see README); the binary
# is rebuilt only when its pinned module changes.
vault: $(VAULT_BIN)

$(VAULT_BIN): tools/vault/go.mod tools/vault/go.sum tools/vault/main.go
	cd tools/vault && $(GO) build -trimpath -ldflags "-s -w" -o $(VAULT_BIN) .

$(BIN)/vault-v%: tools/compat/vault-v%/go.mod tools/compat/vault-v%/go.sum tools/compat/vault-v%/main.go
	cd tools/compat/vault-v$* && $(GO) build -trimpath -ldflags "-s -w" -o $@ .

# scripts/dev.sh runs an installed Vault when it finds a supported one
# (VAULT_BINARY, else vault on PATH) and builds the pinned one (make vault)
# only otherwise.
dev: build standin
	VERSION=$(VERSION) MAKE="$(MAKE)" GO="$(GO)" scripts/dev.sh

dev-stop:
	scripts/dev-stop.sh

test: unit e2e

# Everything but e2e/, which needs the binaries and runs in `make e2e`.
unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

# What the e2e suite needs to find the binaries under test.
E2E_ENV := VAULT_BINARY=$(VAULT_BIN) PLUGIN_BINARY=$(BIN)/$(PLUGIN_NAME) STANDIN_BINARY=$(BIN)/piwik-standin \
	PLUGIN_VERSION=$(VERSION)

# The real-Vault suite; it includes the release check (make release with a
# throwaway GPG key) and the acceptance checks against the stand-in.
e2e: build standin vault
	$(E2E_ENV) $(GO) test -count=1 -timeout 60m -v ./e2e/...

# Readers of leased, unleased, minting and token_reuse roles against the
# real Vault dev server for SOAK_DURATION while the stand-in cycles through
# rate limits, 5xx, hangs, slow replies and a deleted credential, and the
# plugin is reloaded once; the report goes to bench/results/soak.md. `make
# test` runs the same test for 60 seconds.
SOAK_DURATION ?= 10m
soak: build standin vault
	$(E2E_ENV) SOAK_DURATION=$(SOAK_DURATION) SOAK_REPORT=$(CURDIR)/bench/results/soak.md \
		$(GO) test -count=1 -timeout 3h -v -run '^TestSoak$$' ./e2e/

# A token_reuse role serves its cached token through a stand-in outage of
# OUTAGE (5xx, dropped connections, hangs); `make test` runs a 24-second
# outage, CI this one too.
OUTAGE ?= 2m
resilience: build standin vault
	$(E2E_ENV) E2E_OUTAGE=$(OUTAGE) $(GO) test -count=1 -timeout 30m -v -run '^TestReuseRoleServesThroughOutage$$' ./e2e/

# Acceptance test against a real Piwik PRO account: set PIWIK_URL,
# PIWIK_CLIENT_ID and PIWIK_CLIENT_SECRET (it skips when they are unset).
acc: build standin vault
	VAULT_BINARY=$(VAULT_BIN) PLUGIN_BINARY=$(BIN)/$(PLUGIN_NAME) STANDIN_BINARY=$(BIN)/piwik-standin \
		PLUGIN_VERSION=$(VERSION) $(GO) test -count=1 -timeout 10m -v -run '^TestAcceptance$$' ./e2e/

# make acc pointed at a local stand-in, for trying it without an account.
acc-standin: build standin vault
	STANDIN_BINARY=$(BIN)/piwik-standin scripts/acc-standin.sh

# The core of the e2e suite against the pinned Vault and every release in
# tools/compat/, one result line per version. Not part of `make test`.
compat: build standin vault $(COMPAT_BINS)
	PLUGIN_BINARY=$(BIN)/$(PLUGIN_NAME) STANDIN_BINARY=$(BIN)/piwik-standin PLUGIN_VERSION=$(VERSION) \
		scripts/compat.sh $(VAULT_BIN) $(COMPAT_BINS)

# Load benchmark against real Vault servers (dev, raft, a raft cluster);
# see BENCHMARKS.md. BENCH_MODE=quick runs it in a few minutes.
bench: build standin vault
	VAULT_BINARY=$(VAULT_BIN) PLUGIN_BINARY=$(BIN)/$(PLUGIN_NAME) STANDIN_BINARY=$(BIN)/piwik-standin \
		PLUGIN_VERSION=$(VERSION) scripts/bench.sh

# Explore each fuzz target beyond its seed corpus (make test runs the seeds).
FUZZTIME ?= 30s
fuzz:
	@for target in FuzzParseTokenReply FuzzReadClaims FuzzConfigUpdate FuzzRoleUpdate; do \
		echo "==> $$target ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) . || exit 1; \
	done

# Per-platform zips, SHA256SUMS (signed when GPG_FINGERPRINT is set) and
# SBOMs in dist/, built by goreleaser; see .goreleaser.yaml.
release:
	VERSION=$(VERSION) GO=$(GO) scripts/release.sh

fmt:
	gofmt -l -w .

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN) dist
