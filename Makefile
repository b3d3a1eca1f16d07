# The two commands of the README:
#   make demo   set everything up, then run the agent with a virtual Belgian card and the
#               reference portal (open the URL it prints)
#   make test   set everything up, then run every test
.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/eid-emulator demo

test: setup
	bash scripts/run-tests.sh

lint: setup
	.venv/bin/ruff check agent tray tests bench examples emulator validator
	.venv/bin/mypy

bench: setup
	.venv/bin/python bench/run.py
