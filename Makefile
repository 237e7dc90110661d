# The two commands a user needs: `make run` and `make test`. Both build .venv if it is missing.
VENV := .venv
BIN := $(VENV)/bin
MACHINE ?= default

.PHONY: run test clean

ENGINE := imacpro/cpu/_lib/libunicorn.so.2

$(BIN)/imacpro: pyproject.toml tools/bootstrap-venv
	tools/bootstrap-venv
	@touch $@

# Unicorn with imacpro's patch (exceptions through the IDT, SYSCALL, interrupt pins).
$(ENGINE): third_party/unicorn/imacpro.patch tools/build-unicorn | $(BIN)/imacpro
	tools/build-unicorn

# Until the boot path exists: create the default machine if needed and show it.
run: $(BIN)/imacpro $(ENGINE)
	@$(BIN)/imacpro info $(MACHINE) >/dev/null 2>&1 || $(BIN)/imacpro create $(MACHINE) >/dev/null
	@$(BIN)/imacpro info $(MACHINE)

test: $(BIN)/imacpro $(ENGINE)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache imacpro/cpu/_lib
