# The two commands a user needs: `make run` and `make test`. Both build .venv if it is missing.
VENV := .venv
BIN := $(VENV)/bin
MACHINE ?= default

.PHONY: run test clean

ENGINE := imacpro/cpu/_lib/libunicorn.so.2
SSD := imacpro/t2/_lib/libssd.so
APIC := imacpro/devices/_lib/libapic.so
READER := imacpro/net/_lib/libstreamreader.so
WEB := imacpro/viewer/page/vendor/novnc/core/rfb.js
BROWSER := /usr/bin/chromedriver

$(BIN)/imacpro: pyproject.toml tools/bootstrap-venv
	tools/bootstrap-venv
	@touch $@

# Unicorn with imacpro's patch (exceptions through the IDT, SYSCALL, interrupt pins) and
# its vector unit (AVX, AVX2, FMA, F16C, AVX-512).
$(ENGINE): third_party/unicorn/imacpro.patch $(wildcard third_party/unicorn/vector/*) \
           tools/build-unicorn | $(BIN)/imacpro
	tools/build-unicorn

# The SSD store's data path: AES-XTS over runs of sectors through libgcrypt, read into and
# written from a device's DMA pages (imacpro/t2/xts.py and storage.py say why).
$(SSD): native/xts_sectors.c native/ssd_dma.c native/ssd_pool.c native/nvme_io.c \
        native/nvme_doorbell.c native/ssd_dma.h native/ssd_pool.h native/nvme_io.h native/clock.h
	@mkdir -p $(dir $@)
	cc -O2 -Wall -shared -fPIC -pthread -o $@ $(filter %.c,$^) -l:libgcrypt.so.20

# The local APIC's interrupt core: what every interrupt a CPU takes passes through
# (imacpro/devices/apic_core.py says why it is C).
$(APIC): native/apic_core.c native/run_loop.c native/freq_counters.c native/tsc_deadline.c \
		native/host_load.c native/apic_core.h native/host_load.h native/clock.h
	@mkdir -p $(dir $@)
	cc -O2 -Wall -shared -fPIC -pthread -o $@ $(filter %.c,$^)

# The thread that drains the network backend's socket (imacpro/net/stream_reader.py says why).
$(READER): native/stream_reader.c
	@mkdir -p $(dir $@)
	cc -O2 -Wall -shared -fPIC -pthread -o $@ $<

# The page's vendor files: noVNC and xterm.js from the npm registry, as web/package-lock.json
# pins them (tools/build-web).
$(WEB): web/package.json web/package-lock.json tools/build-web
	tools/build-web
	@touch $@

# Debian's chromium and its driver, for the page's tests (tests/integration/test_page.py).
$(BROWSER):
	tools/install-debian-packages chromium chromium-driver

# The default guest (Debian's kernel and busybox, signed for this installation), the default
# machine with the guest installed on its SSD, and a boot to its shell on this terminal (Ctrl-A X powers off).
run: $(BIN)/imacpro $(ENGINE) $(SSD) $(APIC) $(READER) $(WEB)
	@$(BIN)/imacpro guest fetch
	@$(BIN)/imacpro info $(MACHINE) >/dev/null 2>&1 || { $(BIN)/imacpro create $(MACHINE) \
	    >/dev/null && $(BIN)/imacpro install $(MACHINE) --yes; }
	@$(BIN)/imacpro boot $(MACHINE)

# The bare-metal programs run on the single-threaded loop (the deterministic reference), then
# again on `imacpro boot`'s default, one host thread per host core (tests/cpu/baremetal.py).
test: $(BIN)/imacpro $(ENGINE) $(SSD) $(APIC) $(READER) $(WEB) $(BROWSER)
	$(BIN)/python -m pytest
	IMACPRO_HOST_THREADS=auto $(BIN)/python -m pytest tests/cpu

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache imacpro/cpu/_lib imacpro/t2/_lib imacpro/net/_lib \
	    imacpro/devices/_lib \
	    imacpro/viewer/page/vendor web/node_modules
