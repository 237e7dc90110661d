# The two commands a user needs: `make run` and `make test`. Both build .venv if it is missing.
VENV := .venv
BIN := $(VENV)/bin
MACHINE ?= default

.PHONY: run test clean

$(BIN)/imacpro: pyproject.toml tools/bootstrap-venv
	tools/bootstrap-venv
	@touch $@

# Until the boot path exists: create the default machine if needed and show it.
run: $(BIN)/imacpro
	@$(BIN)/imacpro info $(MACHINE) >/dev/null 2>&1 || $(BIN)/imacpro create $(MACHINE) >/dev/null
	@$(BIN)/imacpro info $(MACHINE)

test: $(BIN)/imacpro
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
