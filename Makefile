# The two commands: `make run` starts the embedded NOC, `make test` runs the whole suite.
# Both install what a fresh Debian machine lacks before building.

SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build and the tests use, and nothing else (cmake: libopus;
# ffmpeg + python3: interop tests and the tone_check.py cross-check; chromium +
# chromium-driver: the dashboard's and the web client's real-browser tests; firefox-esr:
# the web client in Firefox (driven over WebDriver BiDi, no geckodriver); coturn: a real
# TURN server for the web client's relay test; redis-server: the several-dispatchers
# tests start a real one on a free port; nasm: openh264's assembly; pkg-config, libclang-dev
# and the libav*-dev/libswscale-dev headers: ffmpeg-next's bindings to Debian's FFmpeg, for
# VP8 and scaling in codecs/; podman, runc, uidmap and mmdebstrap: the docker/ test runs
# the compose file in real containers, on a base image made from Debian's packages;
# GStreamer's webrtcbin with libnice and its Python bindings: the WHIP/WHEP interop test;
# nftables: the ICE-over-TCP test blocks the browser's UDP in its namespace).
# Benches install what they need themselves.
DEB_PACKAGES := build-essential cmake ffmpeg python3 \
	chromium chromium-driver firefox-esr coturn redis-server \
	nasm pkg-config libclang-dev libavcodec-dev libavformat-dev libavutil-dev \
	libswscale-dev podman runc uidmap mmdebstrap \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-nice python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 nftables
NOC_ARGS ?= --listen 127.0.0.1:3450 --http 127.0.0.1:8080

.PHONY: run test deps build lint fmt fuzz clean

run: deps
	$(CARGO) build --release --bins
	./target/release/noc $(NOC_ARGS)

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) build --workspace --bins
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace
	cd fuzz && CARGO_TARGET_DIR=../target $(CARGO) check --bins

# Installs only the packages that are missing, so a ready machine pays nothing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first"; exit 1; }

build: deps
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Every fuzz target under libFuzzer on this machine's stable toolchain (RUSTC_BOOTSTRAP=1;
# fuzz/README.md): FUZZ_RUNS executions each (10 million by default), several at once.
FUZZ_RUNS ?= 10000000
fuzz: deps
	RUNS=$(FUZZ_RUNS) fuzz/run.sh $(FUZZ_TARGETS)

clean:
	$(CARGO) clean
