# minerva: the commands a user needs.
#   make run [PROMPT="..."]   set up, build, and stream a completion from the C example
#   make test                 the whole test suite
#   make install [PREFIX=/usr/local]   install the library, headers (C and C++) and pkg-config file
PREFIX ?= /usr/local
PROMPT ?= The best thing about running a language model inside your own program is
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

build:
	scripts/setup.sh
	cargo build --release
	$(MAKE) -C examples-c -s

run: build
	MINERVA_MODEL="$${MINERVA_MODEL:-$$(scripts/fetch-model.sh)}" examples-c/build/stream "$(PROMPT)"

test:
	scripts/test.sh

install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/minerva.h include/minerva.hpp $(DESTDIR)$(PREFIX)/include/
	install -m 755 target/release/libminerva.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 target/release/libminerva.a $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' minerva.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/minerva.pc

clean:
	cargo clean
	$(MAKE) -C examples-c clean

.PHONY: build run test install clean
