//! The release archive (`make dist`, scripts/dist.sh), as a user meets it: unpacked into a place
//! of its own, away from the build tree, a C program builds against it with pkg-config and with
//! CMake, and a Go program with the binding and pkg-config alone; each runs from `/` with no
//! LD_LIBRARY_PATH and generates text, resolving minerva's libraries inside the unpacked folder.

mod common;

use common::{lib_dir, model_path, root, run, scratch, sh};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `exe MODEL` from `/` with nothing in its environment pointing at minerva; checks that
/// it printed text and that its libraries resolve inside `dir`.
fn runs_from(exe: &Path, dir: &Path) {
    let out = run(Command::new(exe)
        .arg(model_path())
        .current_dir("/")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("MINERVA_BACKEND_DIR"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = stdout.lines().find_map(|l| l.strip_prefix("text: "));
    assert!(
        text.is_some_and(|t| !t.trim().is_empty()),
        "{exe:?} printed no text:\n{stdout}"
    );
    let ldd = run(Command::new("ldd").arg(exe).env_remove("LD_LIBRARY_PATH"));
    let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let d = dir.display().to_string();
    for line in ldd
        .lines()
        .filter(|l| l.contains("minerva") || l.contains("llama"))
    {
        assert!(
            line.contains(&d),
            "{exe:?} resolves outside the archive: {line}"
        );
    }
}

#[test]
fn release_archive_builds_and_runs_anywhere() {
    let _one = common::one_at_a_time();
    let lib = lib_dir();
    let work = scratch("dist");
    let out = run(Command::new(root().join("scripts/dist.sh"))
        .arg(work.join("out"))
        .env("MINERVA_BUILD_DIR", &lib));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let tarball = PathBuf::from(printed.lines().next().unwrap().trim());
    let name = tarball.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("minerva-") && name.ends_with("-linux-x86_64.tar.gz"),
        "{name}"
    );
    // The sha256 it printed is the file's.
    let sum = printed
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let check = sh(&format!("sha256sum {}", tarball.display()));
    assert!(String::from_utf8_lossy(&check.stdout).starts_with(&sum));

    let place = work.join("somewhere-else");
    std::fs::create_dir_all(&place).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&place));
    let dir = place.join(name.trim_end_matches(".tar.gz"));
    let info = std::fs::read_to_string(dir.join("share/minerva/BUILD-INFO")).unwrap();
    assert!(
        info.contains("llama-cpp-sys-2") && info.contains("build: "),
        "{info}"
    );
    for f in [
        "include/minerva.h",
        "include/minerva.hpp",
        "lib/libminerva.a",
        "lib/pkgconfig/minerva.pc",
        "lib/cmake/minerva/minervaConfig.cmake",
        "bin/minerva-rpc-server",
    ] {
        assert!(dir.join(f).exists(), "{f} is missing from the archive");
    }

    // pkg-config alone: the .pc file finds its prefix from its own place and gives the rpath.
    let src = root().join("tests/install/hello.c");
    let exe = work.join("hello_pc");
    sh(&format!(
        "cc -std=c11 -Wall -Werror '{}' -o '{}' $(PKG_CONFIG_PATH='{}/lib/pkgconfig' pkg-config \
         --cflags --libs minerva)",
        src.display(),
        exe.display(),
        dir.display()
    ));
    runs_from(&exe, &dir);

    // CMake: CMAKE_PREFIX_PATH at the unpacked folder.
    let build = work.join("cmake-build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(root().join("tests/install"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", dir.display()))
        .arg("-DCMAKE_BUILD_TYPE=Release"));
    run(Command::new("cmake").arg("--build").arg(&build));
    runs_from(&build.join("hello_shared"), &dir);
}

/// Go: `go get` of the binding (here: a replace to its folder, as a module proxy would serve it)
/// and the unpacked archive through pkg-config; nothing else.
#[test]
fn go_program_builds_against_the_archive_alone() {
    let _one = common::one_at_a_time();
    let go = ["go", "/usr/local/go/bin/go"].into_iter().find(|g| {
        Command::new(g)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(go) = go else {
        println!("skipped: no Go toolchain");
        return;
    };
    let lib = lib_dir();
    let work = scratch("dist-go");
    let out = run(Command::new(root().join("scripts/dist.sh"))
        .arg(work.join("out"))
        .env("MINERVA_BUILD_DIR", &lib));
    let tarball = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let place = work.join("unpacked");
    std::fs::create_dir_all(&place).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&place));
    let dir = std::fs::read_dir(&place)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("go.mod"),
        format!(
            "module distcheck\n\ngo 1.23\n\nrequire github.com/minerva-ai/minerva/bindings/go \
             v0.0.0\n\nreplace github.com/minerva-ai/minerva/bindings/go => {}\n",
            root().join("bindings/go").display()
        ),
    )
    .unwrap();
    std::fs::write(
        app.join("main.go"),
        r#"package main

import (
	"context"
	"fmt"
	"os"

	minerva "github.com/minerva-ai/minerva/bindings/go"
)

func main() {
	p := minerva.DefaultEngineParams()
	p.MaxStreams = 1
	p.ContextTokens = 256
	e, err := minerva.Open(os.Args[1], p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer e.Close()
	g := minerva.DefaultGenerateParams()
	g.MaxTokens = 8
	g.Temperature = 0
	text, err := e.Generate(context.Background(), "The capital of France is", g)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("text: %s\n", text)
}
"#,
    )
    .unwrap();
    let pc = format!("PKG_CONFIG_PATH='{}/lib/pkgconfig'", dir.display());
    let exe = work.join("distcheck");
    sh(&format!(
        "cd '{}' && GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1 \
         CGO_CFLAGS=\"$({pc} pkg-config --cflags minerva)\" \
         CGO_LDFLAGS=\"$({pc} pkg-config --libs minerva)\" {go} build -o '{}' .",
        app.display(),
        exe.display()
    ));
    runs_from(&exe, &dir);
}

/// The Python wheel (`make wheel`): installed with pip into a fresh virtual environment, then
/// `import minerva` and a generation from `/` with an empty environment (no MINERVA_LIBRARY, no
/// LD_LIBRARY_PATH, no PYTHONPATH): the library and its private folder come from the wheel.
#[test]
fn python_wheel_installs_and_generates() {
    let _one = common::one_at_a_time();
    let lib = lib_dir();
    let work = scratch("wheel");
    let out = run(Command::new(root().join("scripts/wheel.sh"))
        .arg(work.join("out"))
        .env("MINERVA_BUILD_DIR", &lib));
    let wheel = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    assert!(wheel.ends_with(".whl"), "{wheel}");
    let venv = work.join("venv");
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--no-index"])
        .arg(&wheel));
    let out = run(Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(
            "import minerva, sys\n\
             e = minerva.Engine(sys.argv[1], context_tokens=256, max_streams=1)\n\
             print('text:', e.generate('The capital of France is', max_tokens=8, temperature=0))\n\
             print('library:', minerva.capi.lib()._name)\n",
        )
        .arg(model_path())
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &work));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = stdout
        .lines()
        .find_map(|l| l.strip_prefix("text: "))
        .unwrap_or("");
    assert!(!text.trim().is_empty(), "no text:\n{stdout}");
    let library = stdout
        .lines()
        .find_map(|l| l.strip_prefix("library: "))
        .unwrap_or("");
    assert!(
        library.starts_with(&*venv.display().to_string()),
        "the library came from outside the wheel: {library}"
    );
}

/// C#: the NuGet package of scripts/nuget.sh, unzipped as NuGet lays it out, runs the C#
/// binding's whole test suite (its lib/netstandard2.0/Minerva.dll, its
/// runtimes/linux-x64/native/libminerva.so and private folder); the Unity package folder holds
/// package.json, Runtime/ and Plugins/x86_64/.
#[test]
fn csharp_tests_run_against_the_nuget_package() {
    let _one = common::one_at_a_time();
    if Command::new("mcs").arg("--version").output().is_err() {
        println!("skipped: no mcs");
        return;
    }
    let lib = lib_dir();
    let work = scratch("nuget");
    let out = run(Command::new(root().join("scripts/nuget.sh"))
        .arg(work.join("out"))
        .env("MINERVA_BUILD_DIR", &lib));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = printed.lines();
    let nupkg = lines.next().unwrap().trim().to_owned();
    let unity = PathBuf::from(lines.next().unwrap().trim());
    for f in [
        "package.json",
        "Runtime/Engine.cs",
        "Runtime/Minerva.Runtime.asmdef",
        "Plugins/x86_64/libminerva.so",
    ] {
        assert!(
            unity.join(f).exists(),
            "{f} is missing from the Unity package"
        );
    }
    let pkg = work.join("unzipped");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&nupkg)
        .arg(&pkg));
    // zipfile does not keep the modes: the libraries are made loadable again as NuGet does.
    sh(&format!("chmod -R u+rwX,go+rX '{}'", pkg.display()));
    assert!(pkg.join("Minerva.nuspec").exists() && pkg.join("[Content_Types].xml").exists());
    let out = run(Command::new("bash")
        .arg(root().join("bindings/csharp/test.sh"))
        .env("MINERVA_CSHARP_PACKAGE", &pkg)
        .env("MINERVA_MODEL", model_path())
        .env("MINERVA_CHAT_MODEL", common::chat_model_path())
        .env("MINERVA_LIB_DIR", "/nonexistent")
        .env("MINERVA_INCLUDE_DIR", root().join("include"))
        .env("MINERVA_LORA_DIR", common::lora_dir())
        .env_remove("LD_LIBRARY_PATH"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    println!("{}", stdout.lines().last().unwrap_or(""));
}
