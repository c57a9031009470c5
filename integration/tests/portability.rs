//! One kawrap and one libkawrap.so for every x86_64 Linux: what `make dist`
//! ships needs at most glibc 2.17, its shim loads into musl programs too,
//! and the .deb and the tarball work in real Debian 11 (glibc 2.31) and
//! Debian 13 (glibc 2.41) userlands, installed the way the README says —
//! the answer read from the kernel (`ss -o` on the host, getsockopt).
//!
//! The Debian roots are made with debootstrap on first use and cached
//! outside the source tree (see `kawrap_integration::debian`).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kawrap_integration::clients::{self, Held, hold};
use kawrap_integration::debian::{self, BULLSEYE, Chroot, Release, TRIXIE};
use kawrap_integration::dist::{
    self, VERSION, dynamic_symbols, glibc_version, needed_libraries, version_needs,
};
use kawrap_integration::{release_dir, shim_path, skip_unless, temp_dir};

/// The oldest glibc the release artifacts support.
const GLIBC_FLOOR: (u32, u32, u32) = (2, 17, 0);
/// The profile the clients run with, and the timer bound `ss` must show.
const PROFILE: &str = "300/30/5";
const IDLE: Duration = Duration::from_secs(300);

/// The dist artifacts unpacked into `dir`: (tarball root, .deb root), or
/// `None` after a SKIP (a failure under CI) when `make dist` did not run.
fn unpacked_dist(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let reason = dist::unavailable_reason();
    if skip_unless(reason.is_none(), reason.as_deref().unwrap_or_default()) {
        return None;
    }
    Some((dist::unpack_tarball(&dir.join("tar")), dist::unpack_deb(&dir.join("deb"))))
}

/// The ELF files a user gets, by where they are in each artifact.
fn dist_binaries(tar: &Path, deb: &Path) -> [(String, PathBuf); 4] {
    [
        ("tarball bin/kawrap".into(), tar.join("bin/kawrap")),
        ("tarball lib/kawrap/libkawrap.so".into(), tar.join("lib/kawrap/libkawrap.so")),
        (".deb /usr/bin/kawrap".into(), deb.join("usr/bin/kawrap")),
        (".deb /usr/lib/kawrap/libkawrap.so".into(), deb.join("usr/lib/kawrap/libkawrap.so")),
    ]
}

/// Fails unless every glibc symbol version `elf` asks the loader for is
/// at most 2.17 (an older glibc refuses the whole program or library:
/// "version `GLIBC_2.34' not found").
fn assert_glibc_floor(what: &str, elf: &Path) {
    for need in version_needs(elf) {
        if !need.version.starts_with("GLIBC_") {
            continue;
        }
        let version = glibc_version(&need.version).unwrap_or_else(|| {
            panic!("{what} needs {} from {}: not a public glibc version", need.version, need.library)
        });
        assert!(
            version <= GLIBC_FLOOR,
            "{what} needs {} from {}: glibc older than that refuses to load it",
            need.version,
            need.library
        );
    }
}

#[test]
fn every_dist_binary_needs_at_most_glibc_2_17() {
    let dir = temp_dir("dist-glibc");
    let Some((tar, deb)) = unpacked_dist(dir.path()) else { return };
    for (what, elf) in dist_binaries(&tar, &deb) {
        // Linked against glibc 2.17's own libraries, so the versions are
        // recorded (unversioned references would prove nothing).
        let needs = version_needs(&elf);
        assert!(needs.iter().any(|need| need.version == "GLIBC_2.17"), "{what}: {needs:?}");
        assert_glibc_floor(&what, &elf);
        // Only libraries every glibc system has.
        for library in needed_libraries(&elf) {
            assert!(
                ["libc.so.6", "libdl.so.2", "libpthread.so.0", "libm.so.6", "librt.so.1"]
                    .contains(&library.as_str()),
                "{what} needs {library}"
            );
        }
    }
}

/// musl's dynamic loader, which is also its libc.
const MUSL_LOADER: &str = "/lib/ld-musl-x86_64.so.1";

/// Fails unless the shim `lib` can load into a musl program: every library
/// it names is one musl's loader answers with itself, and every symbol it
/// needs (not weakly) is one musl defines.
fn assert_loads_into_musl(what: &str, lib: &Path) {
    for library in needed_libraries(lib) {
        // ldso/dynlink.c: libc, libdl, libpthread, librt, libm, libutil and
        // libxnet requests are satisfied by libc itself.
        let stem = library.strip_prefix("lib").and_then(|rest| rest.split('.').next()).unwrap_or_default();
        assert!(
            ["c", "dl", "pthread", "rt", "m", "util", "xnet"].contains(&stem),
            "{what} needs {library}, which musl does not have"
        );
    }
    let musl: BTreeSet<String> = dynamic_symbols(Path::new(MUSL_LOADER))
        .into_iter()
        .filter(|symbol| symbol.defined)
        .map(|symbol| symbol.name)
        .collect();
    let missing: Vec<String> = dynamic_symbols(lib)
        .into_iter()
        .filter(|symbol| !symbol.defined && !symbol.weak && !musl.contains(&symbol.name))
        .map(|symbol| symbol.name)
        .collect();
    assert!(missing.is_empty(), "{what} needs symbols musl does not define: {missing:?}");
}

#[test]
fn the_shims_import_nothing_musl_or_glibc_2_17_lacks() {
    if skip_unless(Path::new(MUSL_LOADER).exists(), "musl is not installed (Debian: musl-tools)") {
        return;
    }
    // What `make` builds: no libc is linked, so nothing binds to the build
    // machine's newest symbol versions (dlsym@GLIBC_2.34 on glibc ≥ 2.34),
    // and libdl.so.2 is named for glibc < 2.34, where dlsym lives there.
    let built = release_dir().join("libkawrap.so");
    assert_glibc_floor("the libkawrap.so `make` builds", &built);
    let needed = needed_libraries(&built);
    assert!(
        needed.iter().any(|library| library == "libdl.so.2"),
        "make's libkawrap.so needs only {needed:?}"
    );
    assert_loads_into_musl("the libkawrap.so `make` builds", &built);

    // What `make dist` ships: its glibc symbol versions are ≤ 2.17 (above),
    // and zig links it against stubs of 2.17's own libraries, so each one
    // names a symbol glibc 2.17 defines.
    let dir = temp_dir("dist-musl");
    let Some((tar, deb)) = unpacked_dist(dir.path()) else { return };
    assert_loads_into_musl("the tarball's libkawrap.so", &tar.join("lib/kawrap/libkawrap.so"));
    assert_loads_into_musl("the .deb's libkawrap.so", &deb.join("usr/lib/kawrap/libkawrap.so"));
}

#[test]
fn the_artifacts_hold_what_the_readme_lists() {
    let dir = temp_dir("dist-contents");
    let Some((tar, deb)) = unpacked_dist(dir.path()) else { return };
    for (root, zsh) in [
        (&tar, "share/zsh/site-functions/_kawrap"),
        (&deb.join("usr"), "share/zsh/vendor-completions/_kawrap"),
    ] {
        for file in [
            "bin/kawrap",
            "lib/kawrap/libkawrap.so",
            "share/bash-completion/completions/kawrap",
            "share/fish/vendor_completions.d/kawrap.fish",
            zsh,
            "share/doc/kawrap/README.md",
            "share/doc/kawrap/LICENSE-MIT",
            "share/doc/kawrap/LICENSE-APACHE",
        ] {
            assert!(root.join(file).is_file(), "{} is missing", root.join(file).display());
        }
        let man1 = root.join("share/man/man1");
        let pages: Vec<_> =
            std::fs::read_dir(&man1).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        for page in ["kawrap.1", "kawrap-check.1", "kawrap-env.1", "kawrap-attach.1", "kawrap-profiles.1"] {
            assert!(
                pages
                    .iter()
                    .any(|name| name.to_str().is_some_and(|name| name.trim_end_matches(".gz") == page)),
                "{page} is not in {}: {pages:?}",
                man1.display()
            );
        }
    }
    assert!(deb.join("usr/share/doc/kawrap/copyright").is_file());
    let field = |name: &str| {
        let out = Command::new("dpkg-deb").args(["-f"]).arg(dist::deb()).arg(name).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(field("Package"), "kawrap");
    assert_eq!(field("Version"), VERSION);
    assert_eq!(field("Architecture"), "amd64");
}

// ---- what the kernel says ------------------------------------------------

/// Ends the client, which must not have said a word on stderr (no warning
/// from kawrap, no message from the loader); returns what it printed.
fn finish_quietly(held: Held) -> Vec<String> {
    let finished = held.finish();
    assert!(finished.stderr.is_empty(), "stderr: {}", finished.stderr);
    finished.lines
}

/// Fails unless `held`'s socket has a keepalive timer of at most the
/// profile's idle time.
fn assert_profile_timer(what: &str, held: &Held) {
    let timer = held.keepalive_timer();
    assert!(
        timer.is_some_and(|remaining| remaining <= IDLE),
        "{what}: keepalive timer {timer:?}, want ≤ {IDLE:?}"
    );
}

// ---- musl ----------------------------------------------------------------

/// `keepalive_client.c` built with musl-gcc (dynamically linked, as on
/// Alpine), or `None` after a SKIP.
fn musl_client(dir: &Path) -> Option<PathBuf> {
    let program = clients::c_client("musl-gcc", &[], dir, "keepalive-client-musl")?;
    let interpreter = Command::new("readelf").arg("-l").arg(&program).output().expect("readelf");
    assert!(String::from_utf8_lossy(&interpreter.stdout).contains(MUSL_LOADER), "not a dynamic musl program");
    Some(program)
}

/// The musl client under `kawrap` (no `-q`): the profile as getsockopt and
/// `ss` report it, and not a word on stderr; without kawrap, no keepalive.
fn musl_client_gets_the_profile(kawrap: &Path, program: &Path) {
    let run = |under_kawrap: bool| {
        hold(|port| {
            let mut command = if under_kawrap {
                let mut command = Command::new(kawrap);
                command.args(["--profile", PROFILE]).arg(program);
                command
            } else {
                Command::new(program)
            };
            kawrap_integration::without_kawrap_env(command.args(["127.0.0.1", &port.to_string()]));
            command
        })
    };
    let held = run(true);
    assert_profile_timer("musl client under kawrap", &held);
    assert_eq!(finish_quietly(held), ["keepalive=1 idle=300 intvl=30 cnt=5 ut=0"]);

    let bare = run(false);
    assert_eq!(bare.keepalive_timer(), None);
    let lines = finish_quietly(bare);
    assert!(lines[0].starts_with("keepalive=0 "), "{lines:?}");
}

#[test]
fn a_musl_program_gets_the_profile_from_the_built_shim() {
    let dir = temp_dir("musl");
    let Some(program) = musl_client(dir.path()) else { return };
    musl_client_gets_the_profile(&release_dir().join("kawrap"), &program);
}

#[test]
fn a_musl_program_gets_the_profile_from_the_dist_shim() {
    let dir = temp_dir("musl-dist");
    let Some(program) = musl_client(dir.path()) else { return };
    let Some((tar, _)) = unpacked_dist(dir.path()) else { return };
    musl_client_gets_the_profile(&tar.join("bin/kawrap"), &program);
}

// ---- Debian 11 and 13 ----------------------------------------------------

/// A fresh chroot of `release` with `dist/` at /dist, or `None` after a
/// SKIP (a failure under CI).
fn debian_chroot(release: Release) -> Option<Chroot> {
    for reason in [debian::unavailable_reason(), dist::unavailable_reason()] {
        if skip_unless(reason.is_none(), reason.as_deref().unwrap_or_default()) {
            return None;
        }
    }
    match Chroot::new(release) {
        Ok(mut chroot) => {
            chroot.bind_read_only(&dist::dist_dir(), "/dist");
            Some(chroot)
        }
        Err(error) => {
            skip_unless(false, &format!("no Debian {} root: {error}", release.suite));
            None
        }
    }
}

/// Runs `args` in the chroot to success; returns its stdout.
fn run_in(chroot: &Chroot, args: &[&str]) -> String {
    let output = chroot.command(args).output().expect("run unshare");
    assert!(
        output.status.success(),
        "{args:?} in {}: {}\n{}",
        chroot.release().suite,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The distribution's own bash holds a connection to the host's listener
/// (`/dev/tcp`), with `prefix` in front of it.
fn bash_client(chroot: &Chroot, prefix: &[&str]) -> Held {
    hold(|port| {
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && read -r _ <&3; exit 0");
        let mut args = prefix.to_vec();
        args.extend(["bash", "-c", &script]);
        chroot.command(&args)
    })
}

/// The installed launcher runs, finds the installed shim at `lib`, and
/// gives the distribution's bash the profile; bash without it gets none.
fn installed_kawrap_works(chroot: &Chroot, lib: &str) {
    let suite = chroot.release().suite;
    assert_eq!(run_in(chroot, &["kawrap", "--version"]), format!("kawrap {VERSION}\n"));
    let dry_run = run_in(chroot, &["kawrap", "--dry-run", "--", "true"]);
    assert!(dry_run.contains(&format!("export LD_PRELOAD={lib}\n")), "{dry_run}");

    let held = bash_client(chroot, &["kawrap", "--profile", PROFILE]);
    assert_profile_timer(&format!("{suite}: bash under kawrap"), &held);
    finish_quietly(held);
    let bare = bash_client(chroot, &[]);
    assert_eq!(bare.keepalive_timer(), None, "{suite}: bash without kawrap");
    finish_quietly(bare);
}

/// The README's container recipe, done to a fresh root of `release`: the
/// host's library bind-mounted read-only at the same path, LD_PRELOAD and
/// KAWRAP_PROFILE set, nothing installed in the root.
fn container_recipe_works(release: Release, host_lib: &Path) {
    let Some(mut chroot) = debian_chroot(release) else { return };
    chroot.bind_read_only(host_lib, "/usr/lib/kawrap/libkawrap.so");
    let held = bash_client(
        &chroot,
        &["LD_PRELOAD=/usr/lib/kawrap/libkawrap.so", &format!("KAWRAP_PROFILE={PROFILE}")],
    );
    assert_profile_timer(&format!("{}: the container recipe", release.suite), &held);
    finish_quietly(held);
}

#[test]
fn debian_11_the_deb_installed_with_dpkg() {
    let Some(chroot) = debian_chroot(BULLSEYE) else { return };
    run_in(&chroot, &["dpkg", "-i", &format!("/dist/kawrap_{VERSION}_amd64.deb")]);
    installed_kawrap_works(&chroot, "/usr/lib/kawrap/libkawrap.so");

    let dir = temp_dir("bullseye-recipe");
    let deb = dist::unpack_deb(dir.path());
    container_recipe_works(BULLSEYE, &deb.join("usr/lib/kawrap/libkawrap.so"));
    // The shim `make` builds on this (glibc 2.36) machine loads there too:
    // it needs no symbol glibc 2.31 keeps elsewhere (pthread_atfork).
    container_recipe_works(BULLSEYE, &shim_path());
}

#[test]
fn debian_13_the_tarball_unpacked_into_usr_local() {
    let Some(chroot) = debian_chroot(TRIXIE) else { return };
    // The README's command, word for word.
    let tarball = format!("/dist/kawrap-{VERSION}-x86_64-linux.tar.gz");
    run_in(&chroot, &["tar", "-C", "/usr/local", "--strip-components=1", "-xzf", &tarball]);
    installed_kawrap_works(&chroot, "/usr/local/lib/kawrap/libkawrap.so");

    let dir = temp_dir("trixie-recipe");
    let tar = dist::unpack_tarball(dir.path());
    container_recipe_works(TRIXIE, &tar.join("lib/kawrap/libkawrap.so"));
}
