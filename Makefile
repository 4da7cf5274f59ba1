# Basalt — build the appliance image, run it, test it.
#
#   make run     build build/basalt.img and boot it in QEMU, serial console on this terminal
#   make test    every test: host unit tests, then the emulator tests on the real image
#   make image   build/basalt.img only (with the demo guest, and the Linux guest when
#                its Debian packages can be fetched)
#   make guests  the no_std test guests, build/guests/<name>.elf
#   make guest-linux  the Linux guest: Debian's cloud kernel and a busybox initramfs
#   make test-image  build/basalt-test.img: the image plus every test guest and config
#   make bench   image/binary sizes, boot-to-prompt times, guest and Linux boot figures,
#                disk throughput (dom0, a Linux domU, Linux without Basalt)
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

# The Linux guest (see "the Linux guest" below): Debian's kernel, its busybox-static,
# the initramfs built around it, and the kernel's vmlinux for the QEMU-direct baseline.
GUEST_KERNEL := $(BUILD)/guests/vmlinuz
GUEST_KERNEL_PACKAGE := linux-image-cloud-amd64
GUEST_BUSYBOX := $(BUILD)/guests/busybox
GUEST_BUSYBOX_PACKAGE := busybox-static
GUEST_INITRAMFS := $(BUILD)/guests/initramfs.cpio.gz
GUEST_PAYLOAD_FILES := guest-payload/mkinitramfs.sh $(shell find guest-payload/rootfs -type f)
# Kernel modules the initramfs carries, from the same package as the kernel (with their
# dependencies; the ones built in are skipped): xen-blkfront for Xen virtual disks, ext4
# for their file systems (built into Debian's cloud kernel, as are jbd2, mbcache, crc16,
# crc32c). extract-modules.sh writes them and their load order into GUEST_MODULES.
GUEST_MODULE_NAMES := xen-blkfront ext4
GUEST_MODULES := $(BUILD)/guests/modules
GUEST_MODULES_ORDER := $(GUEST_MODULES)/load-order
GUEST_VMLINUX := $(BUILD)/guests/vmlinux

# Debian packages: building the image, and emulating machines to test it.
IMAGE_PACKAGES := grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools binutils
# e2fsprogs: tests/disks.rs checks the file systems its Linux guests wrote (e2fsck, debugfs).
EMULATOR_PACKAGES := qemu-system-x86 ovmf bochs bochsbios seabios e2fsprogs
# `make bench` unpacks the guest kernel's LZ4 payload to boot it under QEMU directly,
# and builds the disk benchmark's guest program statically (gcc, glibc's libc.a).
BENCH_PACKAGES := lz4 gcc libc6-dev

# QEMU for `make run`: AMD SVM + nested paging under TCG (no KVM here), two CPUs.
# 2 GiB: room for two 256 MiB Linux domUs beside the hypervisor's heap (1/16 of RAM),
# which also holds a kernel while `create` unpacks it (Debian's: 53 MB).
QEMU_RUN_FLAGS ?= -accel tcg -cpu qemu64,+svm,+npt -smp 2 -m 2048 -machine pc \
	-drive file=$(IMG),format=raw,if=ide,snapshot=on \
	-serial mon:stdio -display none -device isa-debug-exit,iobase=0xf4,iosize=0x04

.PHONY: fuzz-ci all image hypervisor hypervisor-elf guests test-image run test unit-test qemu-test bench bench-image fuzz clean deps image-deps emulator-deps bench-deps rust-target fmt-check guest-kernel guest-linux

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

bench-deps:
	$(call install_missing,$(BENCH_PACKAGES))

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

# The shipped image carries the demo guest and the Linux guest (kernel `vmlinuz`,
# ramdisk `initramfs`, config `linux.cfg`), so `create demo` and `create linux` work out
# of the box. Extra modules are FILE:MODULE_NAME; the toolstack finds kernels, ramdisks
# and configs by name. Without the Linux payload (its Debian packages could not be
# fetched: offline) the image is built without it, and one line says so.
image: image-deps hypervisor-elf guests $(GUEST_KERNEL) $(GUEST_INITRAMFS)
	@linux="$(GUEST_KERNEL):vmlinuz $(GUEST_INITRAMFS):initramfs image/configs/linux.cfg:linux.cfg"; \
	if [ ! -f $(GUEST_KERNEL) ] || [ ! -f $(GUEST_INITRAMFS) ]; then linux=""; \
	  echo "image: no Linux guest in $(IMG): Debian's kernel or busybox could not be fetched (offline?); \`make guest-linux\` says why"; \
	fi; \
	set -x; image/mkimage.sh $(ELF) $(IMG) $(BUILD)/guests/demo.elf:demo.elf image/configs/demo.cfg:demo.cfg $$linux

run: emulator-deps image
	@echo "Booting $(IMG) in QEMU. Serial console here; Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor."
	qemu-system-x86_64 $(QEMU_RUN_FLAGS)

# --- guest payloads ---------------------------------------------------------------

# The test guests (qemu-tests/guests/, a cargo workspace of its own): one package per
# guest directory with a src/main.rs. They are linked at 1 MiB and entered in 32-bit
# mode, so they need a static, non-PIE build without the root .cargo/config.toml's
# code-model=kernel: RUSTFLAGS replaces that config's flags for this one build. Their
# own target directory keeps the two flag sets from invalidating each other's cache.
# Frame pointers: the debugger's tests walk a guest's stack by %rbp (callchain guest).
GUEST_NAMES := $(patsubst qemu-tests/guests/%/src/main.rs,%,$(wildcard qemu-tests/guests/*/src/main.rs))
GUEST_RUSTFLAGS := -C relocation-model=static -C force-frame-pointers=yes
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
# config (modules `<guest>.elf`, `<guest>.cfg`; the Linux configs linux.cfg and
# linux1.cfg are among them). The Linux guest is required here.
test-image: image-deps hypervisor-elf guests guest-linux
	image/mkimage.sh $(ELF) $(TEST_IMG) \
		$(GUEST_KERNEL):vmlinuz $(GUEST_INITRAMFS):initramfs \
		$(foreach guest,$(GUEST_NAMES),$(BUILD)/guests/$(guest).elf:$(guest).elf) \
		$(foreach config,$(GUEST_CONFIGS),$(config):$(notdir $(config))) \
		image/configs/demo.cfg:demo.cfg

# --- the Linux guest ---------------------------------------------------------------

# Debian 12's cloud kernel exactly as shipped (whatever linux-image-cloud-amd64 depends
# on today) and an initramfs around Debian's static busybox (guest-payload/: /init,
# inittab, rcS loads the kernel modules and prints BASALT-LINUX-READY, a `linux# `
# shell on the console). Both packages are fetched with `apt-get download` into
# build/guests/ (never committed). The kernel and its modules come out of one unpacked
# package in one recipe (a grouped target), so their versions always match: a build
# directory with a kernel but no modules fetches the package again.
#
# The file rules never fail: offline they leave no file behind (fetch.log says why), so
# `make image` goes on without Linux and the next make tries again. `guest-kernel` and
# `guest-linux` are the strict targets: they fail when the files are missing.
guest-kernel: $(GUEST_KERNEL)
	@[ -f $(GUEST_KERNEL) ] || { echo "guest-kernel: cannot fetch $(GUEST_KERNEL_PACKAGE) with apt-get; see $(BUILD)/guests/linux-image/fetch.log"; exit 1; }

guest-linux: $(GUEST_KERNEL) $(GUEST_INITRAMFS)
	@[ -f $(GUEST_KERNEL) ] && [ -f $(GUEST_MODULES_ORDER) ] || { echo "guest-linux: cannot fetch $(GUEST_KERNEL_PACKAGE) with apt-get (or take its modules out of it); see $(BUILD)/guests/linux-image/fetch.log"; exit 1; }
	@[ -f $(GUEST_INITRAMFS) ] || { echo "guest-linux: cannot fetch $(GUEST_BUSYBOX_PACKAGE) with apt-get; see $(BUILD)/guests/busybox-static/fetch.log"; exit 1; }

$(GUEST_KERNEL) $(GUEST_MODULES_ORDER) &: guest-payload/extract-modules.sh
	@if package=$$(guest-payload/fetch-deb.sh --depends linux-image- $(GUEST_KERNEL_PACKAGE) $(BUILD)/guests/linux-image 2>/dev/null); then \
	  unpacked=$(BUILD)/guests/linux-image/unpacked; \
	  guest-payload/extract-modules.sh $$unpacked $(GUEST_MODULES) $(GUEST_MODULE_NAMES) && \
	  cp $$unpacked/boot/vmlinuz-* $(GUEST_KERNEL) && rm -rf $$unpacked && \
	  echo "guest kernel: $$package -> $(GUEST_KERNEL), modules: $$(tr '\n' ' ' <$(GUEST_MODULES_ORDER))"; \
	fi

$(GUEST_BUSYBOX):
	@if package=$$(guest-payload/fetch-deb.sh $(GUEST_BUSYBOX_PACKAGE) $(BUILD)/guests/busybox-static 2>/dev/null); then \
	  cp $(BUILD)/guests/busybox-static/unpacked/bin/busybox $@ && rm -rf $(BUILD)/guests/busybox-static/unpacked && \
	  echo "guest busybox: $$package -> $@"; \
	fi

$(GUEST_INITRAMFS): $(GUEST_BUSYBOX) $(GUEST_MODULES_ORDER) $(GUEST_PAYLOAD_FILES)
	@if [ -f $(GUEST_BUSYBOX) ] && [ -f $(GUEST_MODULES_ORDER) ]; then \
	  guest-payload/mkinitramfs.sh $(GUEST_BUSYBOX) guest-payload/rootfs $@ $(GUEST_MODULES); \
	fi

$(GUEST_VMLINUX): $(GUEST_KERNEL) guest-payload/extract-vmlinux.sh
	guest-payload/extract-vmlinux.sh $(GUEST_KERNEL) $@

# --- tests ------------------------------------------------------------------------

# Host unit tests of every portable crate (the kernel loader's also reads the Debian
# guest kernel), plus the test rig's own unit tests.
unit-test: guest-kernel
	$(CARGO) test --workspace --exclude basalt-image --exclude qemu-tests
	$(CARGO) test -p qemu-tests --lib --bins
	cd qemu-tests/guests && $(CARGO) test -p basalt-guest-blkhostile-protocol

# Emulator tests: boot build/basalt.img (and build/basalt-test.img, for the guest
# tests) and drive the serial shell — QEMU TCG for AMD SVM, Bochs for Intel VMX.
# tests/debugger.rs runs the host's basalt-mdb on the core a domain's dump-core wrote.
qemu-test: emulator-deps image test-image
	$(CARGO) build -p basalt-debugger --release --bin basalt-mdb
	$(CARGO) test -p qemu-tests --release --test boot --test guests --test bochs --test linux --test disks --test debugger

test: deps unit-test fuzz-ci qemu-test

bench: emulator-deps bench-deps image test-image bench-image $(GUEST_VMLINUX)
	$(CARGO) run -p qemu-tests --release --bin boot-bench
	$(CARGO) run -p qemu-tests --release --bin guest-bench
	$(CARGO) run -p qemu-tests --release --bin linux-bench
	$(CARGO) run -p qemu-tests --release --bin disk-bench
	$(CARGO) build -p basalt-debugger --release --bin basalt-mdb && $(CARGO) run -p qemu-tests --release --bin debugger-bench

# --- the disk benchmark's guest payload (bench only; the tests never use it) ---------

# qemu-tests/src/bin/disk-bench.rs runs guest-payload/blkbench.c (the workload of dom0's
# `disk-bench`, O_DIRECT) inside Linux, on Basalt and directly under QEMU. Its image,
# build/basalt-bench.img, is the hypervisor with the same kernel, an initramfs that is
# the payload's plus /usr/bin/blkbench and virtio-blk's modules (for the QEMU-direct
# run; under Basalt virtio_pci finds no device and stays idle), named `initramfs` like
# the payload's, and configs/linuxdisk.cfg. rcS, init and the tests' initramfs are
# unchanged. Without a static C toolchain blkbench is left out and disk-bench falls
# back to busybox dd (it says so).
BENCH_DIR := $(BUILD)/bench
BENCH_IMG := $(BUILD)/basalt-bench.img
BENCH_HELPER := $(BENCH_DIR)/blkbench
BENCH_MODULES := $(BENCH_DIR)/modules
BENCH_MODULES_ORDER := $(BENCH_MODULES)/load-order
BENCH_INITRAMFS := $(BENCH_DIR)/initramfs-bench.cpio.gz

bench-image: image-deps hypervisor-elf guest-linux $(BENCH_INITRAMFS)
	image/mkimage.sh $(ELF) $(BENCH_IMG) $(GUEST_KERNEL):vmlinuz $(BENCH_INITRAMFS):initramfs \
		qemu-tests/guests/configs/linuxdisk.cfg:linuxdisk.cfg

$(BENCH_HELPER): guest-payload/blkbench.c
	@mkdir -p $(@D)
	@if gcc -O2 -static -s -Wall -Wextra -o $@.tmp $< 2>$(BENCH_DIR)/blkbench.log; then mv $@.tmp $@; \
	else rm -f $@ $@.tmp; echo "bench: no static build of blkbench (gcc -static, see $(BENCH_DIR)/blkbench.log): disk-bench's guests fall back to busybox dd"; fi

# The payload's modules plus virtio-blk's, from the same package as the kernel (the
# newest one fetched: the one $(GUEST_KERNEL) was copied from).
$(BENCH_MODULES_ORDER): $(GUEST_MODULES_ORDER) guest-payload/extract-modules.sh
	@mkdir -p $(BENCH_DIR)
	@deb=$$(ls -t $(BUILD)/guests/linux-image/linux-image-*.deb | head -n 1) && \
	rm -rf $(BENCH_DIR)/unpacked && dpkg-deb -x $$deb $(BENCH_DIR)/unpacked && \
	guest-payload/extract-modules.sh $(BENCH_DIR)/unpacked $(BENCH_MODULES) $(GUEST_MODULE_NAMES) virtio_blk virtio_pci; \
	status=$$?; rm -rf $(BENCH_DIR)/unpacked; exit $$status

$(BENCH_INITRAMFS): $(GUEST_BUSYBOX) $(BENCH_MODULES_ORDER) $(BENCH_HELPER) $(GUEST_PAYLOAD_FILES)
	rm -rf $(BENCH_DIR)/rootfs && cp -r guest-payload/rootfs $(BENCH_DIR)/rootfs
	if [ -f $(BENCH_HELPER) ]; then mkdir -p $(BENCH_DIR)/rootfs/usr/bin && cp $(BENCH_HELPER) $(BENCH_DIR)/rootfs/usr/bin/blkbench; fi
	guest-payload/mkinitramfs.sh $(GUEST_BUSYBOX) $(BENCH_DIR)/rootfs $@ $(BENCH_MODULES)

# Coverage-guided fuzzing of every parser of outside input (not part of `test`: it needs
# a nightly toolchain and cargo-fuzz, and runs for FUZZ_SECONDS per target).
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd shell && for t in shell_input tokenize; do $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
	cd kernel && for t in cmdline acpi_tables elf_symbols hypercall_dispatch guest_paging exit_decode mmio_decode event_channel_ops grant_table_ops; do $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
	cd builtin-dom0 && for t in pvh_elf bzimage xl_config xenstore_wire pci_enumerate partition_table blkif_ring blkif_handshake; do $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
	cd debugger && for t in $(DEBUGGER_FUZZ_TARGETS); do $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# The debugger's parsers of user and file input (an mdb command line, a core file) are
# fuzzed in every `make test` for a bounded time (FUZZ_CI_SECONDS per target) when the
# machine has a nightly toolchain with cargo-fuzz; a crash fails the run. Without one,
# one line says so, and the same fuzz bodies still run in unit-test over fixed
# pseudo-random inputs (lang::tests, core_file::tests).
DEBUGGER_FUZZ_TARGETS := mdb_line core_file
FUZZ_CI_SECONDS ?= 30
fuzz-ci:
	@if $(CARGO) +nightly fuzz --version >/dev/null 2>&1; then \
	  cd debugger && for t in $(DEBUGGER_FUZZ_TARGETS); do \
	    echo "fuzz-ci: $$t for $(FUZZ_CI_SECONDS) s"; \
	    $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_CI_SECONDS) -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|==|SUMMARY|Test unit written)|panicked" ; \
	    test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	  done; \
	else echo "fuzz-ci: no nightly toolchain with cargo-fuzz on this machine; the fuzz bodies ran in unit-test only"; fi

fmt-check:
	$(CARGO) fmt --all -- --check

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
