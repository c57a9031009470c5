//! `kawrap __generate man DIR` and `kawrap __generate completions DIR`: the
//! man pages and the bash, zsh and fish completions, made from the very
//! clap definition that parses the command line, so they cannot drift from
//! it. `make install` runs them; nothing is generated at build time.
//!
//! Deliberately not a clap subcommand: it never shows in `--help`, in the
//! man page or in the completions. `kawrap -- __generate` still runs a
//! program of that name.
use std::ffi::OsString;
use std::fs;
use std::path::Path;

use clap_complete::Shell;

use crate::completions::{bash, fish};
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::man;

/// The first argument that selects this instead of the normal parser.
pub const NAME: &str = "__generate";

/// `args` are what follows `__generate`.
pub fn run(args: &[OsString]) -> Result<ExitCode, Error> {
    let usage = || Error::Invalid {
        message: format!(
            "{NAME}: expected `man DIR` or `completions DIR`, got {:?}",
            args.iter().map(|arg| arg.to_string_lossy()).collect::<Vec<_>>()
        ),
        hint: format!("usage: kawrap {NAME} man|completions DIR (used by `make install`)"),
    };
    let [what, dir] = args else { return Err(usage()) };
    let dir = Path::new(dir);
    match what.to_str() {
        Some("man") => man_pages(dir)?,
        Some("completions") => completions(dir)?,
        _ => return Err(usage()),
    }
    Ok(ExitCode::Success)
}

/// kawrap.1, and kawrap-SUBCOMMAND.1 for each subcommand.
fn man_pages(dir: &Path) -> Result<(), Error> {
    create_dir(dir)?;
    let pages = man::pages(crate::args::command())
        .map_err(|error| Error::io(format!("cannot make the man pages for {}", dir.display()), error))?;
    for page in pages {
        let path = dir.join(&page.file_name);
        fs::write(&path, page.text)
            .map_err(|error| Error::io(format!("cannot write {}", path.display()), error))?;
    }
    Ok(())
}

/// kawrap.bash and kawrap.fish (kawrap's own generators, which know what a
/// profile or a PID is and where COMMAND starts), and _kawrap (zsh,
/// clap_complete's).
fn completions(dir: &Path) -> Result<(), Error> {
    create_dir(dir)?;
    let mut command = crate::args::command();
    clap_complete::generate_to(Shell::Zsh, &mut command, "kawrap", dir)
        .map_err(|error| Error::io(format!("cannot write zsh completions into {}", dir.display()), error))?;
    for (name, script) in [("kawrap.bash", bash::script(&command)), ("kawrap.fish", fish::script(&command))] {
        let path = dir.join(name);
        fs::write(&path, script)
            .map_err(|error| Error::io(format!("cannot write {}", path.display()), error))?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|error| Error::io(format!("cannot create {}", dir.display()), error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(what: &str) -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        run(&[what.into(), dir.path().into()]).unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        (dir, names)
    }

    #[test]
    fn a_man_page_for_kawrap_and_each_subcommand() {
        let (dir, names) = generated("man");
        assert!(names.contains(&"kawrap.1".to_owned()), "{names:?}");
        for sub in crate::args::command().get_subcommands() {
            assert!(names.contains(&format!("kawrap-{}.1", sub.get_name())), "{names:?}");
        }
        assert!(!names.iter().any(|name| name.contains(NAME)), "{names:?}");
        let page = fs::read_to_string(dir.path().join("kawrap.1")).unwrap();
        assert!(page.starts_with(".ie"), "{}", &page[..80.min(page.len())]);
        assert!(page.contains(".TH kawrap 1"), "no title line");
        assert!(page.contains("\\-\\-profile"), "options missing");
        // The generated part of the long help (the profiles table) is there.
        for named in kawrap_core::BUILTIN_PROFILES {
            // roff writes a minus sign as \-.
            assert!(page.contains(&named.name.replace('-', "\\-")), "{} missing", named.name);
        }
    }

    #[test]
    fn completions_for_three_shells_know_the_subcommands_and_options() {
        let (dir, names) = generated("completions");
        assert_eq!(names, ["_kawrap", "kawrap.bash", "kawrap.fish"]);
        for name in &names {
            let script = fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(script.contains("profiles") && script.contains("--profile"), "{name}");
            assert!(!script.contains(NAME), "{name} offers {NAME}");
        }
    }

    #[test]
    fn anything_else_is_a_usage_error() {
        for args in [
            &[][..],
            &["man".into()],
            &["pdf".into(), "/tmp".into()],
            &["man".into(), "a".into(), "b".into()],
        ] {
            let error = run(args).unwrap_err();
            assert!(error.to_string().starts_with("__generate: expected `man DIR`"), "{error}");
        }
    }
}
