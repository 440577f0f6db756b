# svcops — run `make help` for the targets.
CARGO ?= cargo

.PHONY: help run test lint fmt bench bench-projections bench-sqlite bench-e2e bench-kafka bench-intake proto-lint deploy-check

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: ## Run svcops embedded on 127.0.0.1:7400 (data in ./svcops-data)
	$(CARGO) run --release -p svcops -- up

test: ## Build the service binaries, then run every test (needs PostgreSQL and a Kafka broker; see .ci/run)
	$(CARGO) build --bins
	$(CARGO) test --workspace

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Event store append benchmark against raw INSERT and cqrs-es/postgres-es (PostgreSQL)
	$(CARGO) run --release --manifest-path crates/svcops-bench/Cargo.toml --bin append

bench-projections: ## Projection rebuild and start-up over 1,000,000 events, read-your-writes latency across replicas
	$(CARGO) run --release -p front-office --example projection_bench

bench-intake: ## Intake over gRPC (OpenCase + a five-utterance contact) against the raw event-store append (PostgreSQL)
	$(CARGO) run --release -p front-office --example intake_bench -- $(INTAKE_ARGS)

bench-sqlite: ## SQLite appends: the store's group commit against one commit per append
	$(CARGO) run --release -p svcops-eventstore --example sqlite_append

bench-e2e: ## End to end, embedded then as a cluster (PostgreSQL, broker): open-loop OpenCase steps, WatchCase latency, front-door saturation
	$(CARGO) build --release -p svcops -p front-office -p middle-office -p back-office -p listen-in
	$(CARGO) run --release -p svcops --example e2e -- $(E2E_ARGS)
	$(CARGO) run --release -p svcops --example e2e -- --cluster $(E2E_ARGS)

bench-kafka: ## Kafka publish rate with librdkafka batching against one message per batch (broker at SVCOPS_TEST_KAFKA)
	$(CARGO) run --release -p svcops-bus --example publish_rate

# Pinned so a new buf release cannot add STANDARD rules behind our back; --prefer-offline makes
# npx use its cache instead of asking the registry first (offline, that query retries for minutes).
BUF := npx --yes --prefer-offline @bufbuild/buf@1.75.0

proto-lint: ## buf lint on proto/ (buf from npm, runs offline)
	cd proto && $(BUF) lint

deploy-check: ## Render both Kubernetes overlays; fails when they are missing or do not render
	@test -d deploy/k8s || { echo "deploy/k8s: not written yet (the deploy issue)" >&2; exit 1; }
	kubectl kustomize deploy/k8s/overlays/dev >/dev/null
	kubectl kustomize deploy/k8s/overlays/prod >/dev/null
