# hotline — two set-up commands: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml
STAMP := $(VENV)/.installed

.PHONY: run test venv deps sysdeps lint typecheck loadtest bench-sip-cps bench-dtmf bench-ivr-load bench-booking bench-media-tick bench-media-io bench-jitter bench-bridge-load clean

# Debian's python3 lacks ensurepip until python3-venv is installed: add it when root.
$(BIN)/python:
	@$(PY) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian package python3-venv"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	    $(PY) -m venv $(VENV); \
	  else \
	    echo "python3 cannot create a venv: run sudo apt-get install python3-venv" >&2; exit 1; \
	  fi; }
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the engine and its tests use: SIPp (sip-tester) as a real peer,
# espeak-ng for prompts without a recording. Installed only when missing, as root.
# $(call apt_install,CHECKS): CHECKS is shell that appends missing Debian packages to
# $$missing; they are installed when root, else named with the command to run.
define apt_install
	@missing=""; \
	$(1) \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing — run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi
endef

sysdeps:
	$(call apt_install,command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	command -v baresip >/dev/null 2>&1 || missing="$$missing baresip-core"; \
	command -v tshark >/dev/null 2>&1 || missing="$$missing tshark"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql";)

run: $(STAMP)
	$(BIN)/hotline serve --config $(CONFIG)

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Load test the engine `make run` started (run it in another terminal): SIPp callers walk
# the vaccine flow's journeys on the 10k-per-day profile 60 times faster, cut to its
# busiest 2 minutes; tshark records the engine's RTP. As root (SIPp's raw socket, the
# capture). Reports in var/. ARGS=--pace ahead, --cps 5 --duration 60, --compare F, …
loadtest: $(STAMP)
	$(call apt_install,command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v tshark >/dev/null 2>&1 || missing="$$missing tshark";)
	$(BIN)/hotline loadtest --profile 10k-per-day --speedup 60 --duration 120 \
	  --report-json var/loadtest.json --report-html var/loadtest.html $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hotline tests bench
	$(BIN)/mypy hotline

bench-sip-cps: $(STAMP) sysdeps
	$(BIN)/python bench/sip_cps.py

# In-band DTMF: hotline's detector against spandsp's dtmf_rx (Debian libspandsp2), with
# espeak-ng speech for talk-off. Installed only when missing, as root. ARGS=--quick etc.
bench-dtmf: $(STAMP)
	$(call apt_install,/sbin/ldconfig -p 2>/dev/null | grep -q 'libspandsp\.so\.2 ' || missing="$$missing libspandsp2"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng";)
	$(BIN)/python bench/dtmf.py $(ARGS)

# IVR load: SIPp callers (RFC 4733; with caller audio) vs hotline serve at rising concurrency,
# tshark on lo; one then two engines. Root (SIPp raw socket, capture). ARGS=--json F --profile 10
bench-ivr-load: $(STAMP) sysdeps
	$(call apt_install,command -v tshark >/dev/null 2>&1 || missing="$$missing tshark";)
	$(BIN)/python bench/ivr_load.py --processes 1,2 --gc-trace $(ARGS)

# Booking throughput: hotline's SQLite and PostgreSQL stores against a naive store in the
# same run; PostgreSQL is Debian postgresql (sysdeps). ARGS=--quick, --json PATH, --callers …
bench-booking: $(STAMP) sysdeps
	$(BIN)/python bench/booking.py $(ARGS)

# One media tick for 100/500/1000 legs beside per-leg audioop and per-sample baselines.
bench-media-tick: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/media_tick.py $(ARGS)

# The media plane with its sockets: N bridged legs fed by a peer process, the tick's
# SocketReader against an asyncio protocol per socket. ARGS=--bridges 100,200 --seconds 10
bench-media-io: $(STAMP)
	$(BIN)/python bench/media_io.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Jitter buffer + PLC vs aiortc, libspeexdsp, fixed buffers, spandsp PLC; PESQ on espeak-ng
# speech through seeded network profiles. ARGS=--quick, --json PATH, --seed N
bench-jitter: $(STAMP)
	$(call apt_install,/sbin/ldconfig -p 2>/dev/null | grep -q 'libspeexdsp\.so\.1 ' || missing="$$missing libspeexdsp1"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q 'libspandsp\.so\.2 ' || missing="$$missing libspandsp2"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng";)
	$(BIN)/python bench/jitter.py $(ARGS)

# SIPp callers bridged to SIPp agents at rising concurrency, against an IVR-only baseline.
# ARGS=--quick (20/50), --levels 100,200,400, --json PATH
bench-bridge-load: $(STAMP) sysdeps
	$(BIN)/python bench/bridge_load.py $(ARGS)
