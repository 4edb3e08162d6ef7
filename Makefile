# Herald: the two commands the README starts with, and a few helpers.

.PHONY: run test bootstrap lint bench

run:  ## the gateway with the demo app (memory engine, SQLite, no Redis needed)
	./scripts/run-demo

test:  ## every test: lint, types, unit, gateway, SDK, Django, Celery and browser tests
	./scripts/test

bootstrap:
	./scripts/bootstrap

lint:
	./scripts/bootstrap && .venv/bin/ruff check src tests bench examples && .venv/bin/mypy
