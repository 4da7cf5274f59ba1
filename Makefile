# Basalt — build the appliance image, run it, test it.
#
#   make run     build build/basalt.img and boot it in QEMU, serial console on this terminal
#   make test    every test: host unit tests, then the emulator tests on the real image
#   make image   build/basalt.img only (with the demo guest)
#   make guests  the no_std test guests, build/guests/<name>.elf
#   make test-image  build/basalt-test.img: the image plus every test guest and config
#   make bench   image/binary sizes and boot-to-prompt times (BIOS and UEFI)
#
# Both `run` and `test` install what they need (Debian packages, the Rust target).

SHELL        := /bin/bash
TARGET       := x86_64-unknown-none
HYPERVISOR   := target/$(TARGET)/release/basalt
BUILD        := build
ELF          := $(BUILD)/basalt.elf
IMG          := $(BUILD)/basalt.img
TEST_IMG     := $(BUILD)/basalt-test.img
CARGO        ?= cargo

# Debian packages: building the image, and emulating machines to test it.
IMAGE_PACKAGES := grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools binutils
EMULATOR_PACKAGES := qemu-system-x86 ovmf bochs bochsbios seabios

# QEMU for `make run`: AMD SVM + nested paging under TCG (no KVM here), two CPUs.
QEMU_RUN_FLAGS ?= -accel tcg -cpu qemu64,+svm,+npt -smp 2 -m 1024 -machine pc \
	-drive file=$(IMG),format=raw,if=ide,snapshot=on \
	-serial mon:stdio -display none -device isa-debug-exit,iobase=0xf4,iosize=0x04

.PHONY: all image hypervisor hypervisor-elf guests test-image run test unit-test qemu-test bench fuzz clean deps image-deps emulator-deps rust-target fmt-check guest-kernel

all: image

# --- set-up -----------------------------------------------------------------------

define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

image-deps:
	$(call install_missing,$(IMAGE_PACKAGES))

emulator-deps:
	$(call install_missing,$(EMULATOR_PACKAGES))

rust-target:
	@rustup target list --installed 2>/dev/null | grep -qx $(TARGET) || rustup target add $(TARGET)

deps: image-deps emulator-deps rust-target

# --- build ------------------------------------------------------------------------

hypervisor: rust-target
	$(CARGO) build --release -p basalt-image --target $(TARGET)

# The ELF goes into the image twice: as the multiboot2 kernel and as the
# `basalt-symbols` module that exception backtraces read. Debug info is stripped
# (the symbol table stays). One rule for both images, so `make -j` never writes it twice.
hypervisor-elf: hypervisor
	@mkdir -p $(BUILD)
	objcopy --strip-debug $(HYPERVISOR) $(ELF)

# The shipped image carries the demo guest, so `create demo.cfg` works out of the box.
# Extra modules are FILE:MODULE_NAME; the toolstack finds kernels and configs by name.
image: image-deps hypervisor-elf guests
	image/mkimage.sh $(ELF) $(IMG) $(BUILD)/guests/demo.elf:demo.elf image/configs/demo.cfg:demo.cfg

run: emulator-deps image
	@echo "Booting $(IMG) in QEMU. Serial console here; Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor."
	qemu-system-x86_64 $(QEMU_RUN_FLAGS)

# --- guest payloads ---------------------------------------------------------------

# The test guests (qemu-tests/guests/, a cargo workspace of its own): one package per
# guest directory with a src/main.rs. They are linked at 1 MiB and entered in 32-bit
# mode, so they need a static, non-PIE build without the root .cargo/config.toml's
# code-model=kernel: RUSTFLAGS replaces that config's flags for this one build. Their
# own target directory keeps the two flag sets from invalidating each other's cache.
GUEST_NAMES := $(patsubst qemu-tests/guests/%/src/main.rs,%,$(wildcard qemu-tests/guests/*/src/main.rs))
GUEST_RUSTFLAGS := -C relocation-model=static
GUEST_TARGET_DIR := target/guests
GUEST_CONFIGS := $(wildcard qemu-tests/guests/configs/*.cfg)

guests: rust-target
	RUSTFLAGS="$(GUEST_RUSTFLAGS)" $(CARGO) build --release --manifest-path qemu-tests/guests/Cargo.toml \
		--target $(TARGET) --target-dir $(GUEST_TARGET_DIR)
	@mkdir -p $(BUILD)/guests
	@for guest in $(GUEST_NAMES); do \
	  cp $(GUEST_TARGET_DIR)/$(TARGET)/release/$$guest $(BUILD)/guests/$$guest.elf || exit 1; \
	done; echo "guests: $(GUEST_NAMES:%=$(BUILD)/guests/%.elf)"

# The emulator tests' image: everything in basalt.img plus every test guest and its
# config (modules `<guest>.elf`, `<guest>.cfg`).
test-image: image-deps hypervisor-elf guests guest-kernel
	image/mkimage.sh $(ELF) $(TEST_IMG) \
		$(GUEST_KERNEL):vmlinuz \
		$(foreach guest,$(GUEST_NAMES),$(BUILD)/guests/$(guest).elf:$(guest).elf) \
		$(foreach config,$(GUEST_CONFIGS),$(config):$(notdir $(config))) \
		image/configs/demo.cfg:demo.cfg

# Debian 12's cloud kernel exactly as shipped (whatever linux-image-cloud-amd64 depends
# on today), fetched with `apt-get download` and unpacked into build/guests/ (never
# committed).
GUEST_KERNEL := $(BUILD)/guests/vmlinuz
GUEST_KERNEL_PACKAGE := linux-image-cloud-amd64

guest-kernel: $(GUEST_KERNEL)

$(GUEST_KERNEL):
	@mkdir -p $(BUILD)/guests
	@sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	versioned() { apt-cache depends $(GUEST_KERNEL_PACKAGE) 2>/dev/null | awk '/Depends: linux-image-/{print $$2; exit}'; }; \
	package=$$(versioned); \
	if [ -z "$$package" ]; then $$sudo apt-get update -qq; package=$$(versioned); fi; \
	[ -n "$$package" ] || { echo "cannot find $(GUEST_KERNEL_PACKAGE) in the apt lists"; exit 1; }; \
	cd $(BUILD)/guests && rm -rf unpacked && apt-get download -q "$$package" 2>&1 | grep -v '^W: Download is performed unsandboxed' ; \
	dpkg-deb -x "$$package"_*.deb unpacked && cp unpacked/boot/vmlinuz-* vmlinuz && rm -rf unpacked && \
	echo "guest kernel: $$package -> $(GUEST_KERNEL)"

# --- tests ------------------------------------------------------------------------

# Host unit tests of every portable crate (the kernel loader's also reads the Debian
# guest kernel), plus the test rig's own unit tests.
unit-test: guest-kernel
	$(CARGO) test --workspace --exclude basalt-image --exclude qemu-tests
	$(CARGO) test -p qemu-tests --lib --bins

# Emulator tests: boot build/basalt.img (and build/basalt-test.img, for the guest
# tests) and drive the serial shell — QEMU TCG for AMD SVM, Bochs for Intel VMX.
qemu-test: emulator-deps image test-image
	$(CARGO) test -p qemu-tests --release --test boot --test guests --test bochs

test: deps unit-test qemu-test

bench: emulator-deps image test-image
	$(CARGO) run -p qemu-tests --release --bin boot-bench
	$(CARGO) run -p qemu-tests --release --bin guest-bench

# Coverage-guided fuzzing of every parser of outside input (not part of `test`: it needs
# a nightly toolchain and cargo-fuzz, and runs for FUZZ_SECONDS per target).
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd shell && for t in shell_input tokenize; do $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
	cd kernel && for t in cmdline acpi_tables elf_symbols hypercall_dispatch guest_paging exit_decode event_channel_ops grant_table_ops; do $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
	cd builtin-dom0 && for t in pvh_elf bzimage; do $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

fmt-check:
	$(CARGO) fmt --all -- --check

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
