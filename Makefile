# minerva: the commands a user needs.
#   make run [PROMPT="..."]   set up, build, and stream a completion from the C example
#   make test                 the whole test suite
#   make install [PREFIX=/usr/local] [DESTDIR=]   install the libraries, headers (C and C++),
#                             pkg-config files and CMake package (see docs/INSTALL.md)
#   make dist                 the release archive dist/minerva-<version>-linux-<arch>.tar.gz
#                             (the installed layout, relocatable; prints its sha256)
#   make wheel                a Python wheel with the library inside, into dist/
#   make nuget                a NuGet package and a Unity package folder, into dist/
PREFIX ?= /usr/local
PROMPT ?= The best thing about running a language model inside your own program is

build:
	scripts/setup.sh
	cargo build --release
	$(MAKE) -C examples-c -s

run: build
	MINERVA_MODEL="$${MINERVA_MODEL:-$$(scripts/fetch-model.sh)}" examples-c/build/stream "$(PROMPT)"

test:
	scripts/test.sh

install: build
	DESTDIR="$(DESTDIR)" scripts/install.sh "$(PREFIX)"

dist: build
	scripts/dist.sh

wheel: build
	scripts/wheel.sh

nuget: build
	scripts/nuget.sh

clean:
	cargo clean
	$(MAKE) -C examples-c clean

.PHONY: build run test install dist wheel nuget clean
