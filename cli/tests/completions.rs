//! The shell completions `make install` installs, driven as the shells
//! drive them: bash calls the completion function with COMP_WORDS split as
//! readline splits the line (at COMP_WORDBREAKS too), fish answers
//! `complete -C LINE`. What they offer is compared with what kawrap takes.
mod testenv;

use std::path::{Path, PathBuf};
use std::process::Command;

use kawrap_core::BUILTIN_PROFILES;
use testenv::{TestEnv, have, kawrap_bin, skip_unless};

/// bash-completion's main script, which gives `_command_offset`.
const BASH_COMPLETION: &str = "/usr/share/bash-completion/bash_completion";

/// A directory with the generated completions, a PATH holding `kawrap` and
/// a program `fakecmd` (with its own completion in each shell), and an
/// XDG_CONFIG_HOME defining the profile `nightly`.
struct Shells {
    env: TestEnv,
    scripts: PathBuf,
    path: String,
    config: PathBuf,
}

impl Shells {
    fn new() -> Shells {
        let env = TestEnv::new();
        let scripts = env.root().join("completions");
        let status =
            Command::new(kawrap_bin()).arg("__generate").arg("completions").arg(&scripts).status().unwrap();
        assert!(status.success());
        env.install_kawrap("bin/kawrap");
        env.write_file("bin/fakecmd", "#!/bin/sh\n", 0o755);
        env.write_file(
            "config/kawrap/profiles.toml",
            "[profiles.nightly]\nkeepalive = \"120/20/6\"\n",
            0o644,
        );
        // A file in the working directory: never offered as a profile.
        env.write_file("recommended-notes.txt", "", 0o644);
        let path = format!("{}:/usr/bin:/bin", env.root().join("bin").display());
        let config = env.root().join("config");
        Shells { env, scripts, path, config }
    }

    /// What bash offers for `line` (the cursor at its end), with or
    /// without bash-completion loaded.
    fn bash(&self, line: &str, with_bash_completion: bool) -> Vec<String> {
        let words = comp_words(line);
        let preamble = if with_bash_completion { format!("source {BASH_COMPLETION}") } else { String::new() };
        let script = format!(
            r#"{preamble}
source "$SCRIPT" || exit 99
complete -W 'alpha beta --fake-opt' fakecmd
COMP_LINE=$1; COMP_POINT=${{#1}}; shift
COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
_kawrap
printf '%s\n' "${{COMPREPLY[@]}}""#
        );
        let output = Command::new("bash")
            .args(["-c", &script, "bash", line])
            .args(&words)
            .env("SCRIPT", self.scripts.join("kawrap.bash"))
            .env("PATH", &self.path)
            .env("XDG_CONFIG_HOME", &self.config)
            .current_dir(self.env.root())
            .output()
            .expect("run bash");
        assert!(output.status.success(), "bash: {}", String::from_utf8_lossy(&output.stderr));
        sorted_lines(&output.stdout)
    }

    /// What fish offers for `line` (`complete -C`), without descriptions.
    fn fish(&self, line: &str) -> Vec<String> {
        let script = r#"source $SCRIPT; or exit 99
complete -c fakecmd -f -a 'alpha beta'
complete -c fakecmd -l fake-opt
complete -C $argv[1]"#;
        let output = Command::new("fish")
            .args(["--no-config", "-c", script, line])
            .env("SCRIPT", self.scripts.join("kawrap.fish"))
            .env("PATH", &self.path)
            .env("XDG_CONFIG_HOME", &self.config)
            .current_dir(self.env.root())
            .output()
            .expect("run fish");
        assert!(output.status.success(), "fish: {}", String::from_utf8_lossy(&output.stderr));
        let mut lines = sorted_lines(&output.stdout);
        for line in &mut lines {
            line.truncate(line.find('\t').unwrap_or(line.len()));
        }
        lines
    }
}

/// COMP_WORDS as readline makes them for `line`: split at blanks outside
/// quotes, and at runs of COMP_WORDBREAKS characters (`=`, `:` …), which
/// are words of their own; a line ending in a blank has an empty word last.
fn comp_words(line: &str) -> Vec<String> {
    const BREAKS: &str = "><=;|&(:";
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_breaks = false;
    for c in line.chars() {
        if let Some(open) = quote {
            current.push(c);
            if c == open {
                quote = None;
            }
            continue;
        }
        if c.is_whitespace() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            in_breaks = false;
            continue;
        }
        let is_break = BREAKS.contains(c);
        if is_break != in_breaks && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        in_breaks = is_break;
        if c == '"' || c == '\'' {
            quote = Some(c);
        }
        current.push(c);
    }
    words.push(current);
    words
}

fn sorted_lines(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> =
        String::from_utf8_lossy(bytes).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
    lines.sort();
    lines.dedup();
    lines
}

/// The subcommands `kawrap PATH… --help` lists.
fn kawrap_bin_subcommands(path: &[&str]) -> Vec<String> {
    let output = Command::new(kawrap_bin()).args(path).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let listed = help.split("Commands:").nth(1).unwrap_or_default().split("\n\n").next().unwrap_or_default();
    // `  NAME  about`, the about's wrapped lines indented further.
    listed
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

fn profile_names() -> Vec<String> {
    let mut names: Vec<String> = BUILTIN_PROFILES.iter().map(|p| p.name.to_owned()).collect();
    names.push("nightly".to_owned());
    names.sort();
    names
}

fn strings(words: &[&str]) -> Vec<String> {
    let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    words.sort();
    words
}

fn all_pids(words: &[String]) -> bool {
    !words.is_empty() && words.iter().all(|w| w.parse::<u32>().is_ok()) && words.contains(&"1".to_owned())
}

#[test]
fn comp_words_split_like_readline() {
    assert_eq!(comp_words("kawrap --rule :3306=ssh x"), ["kawrap", "--rule", ":", "3306", "=", "ssh", "x"]);
    assert_eq!(comp_words("kawrap --profile="), ["kawrap", "--profile", "="]);
    assert_eq!(comp_words("kawrap -p "), ["kawrap", "-p", ""]);
    assert_eq!(comp_words("kawrap 'a b' c"), ["kawrap", "'a b'", "c"]);
}

#[test]
fn bash_completes_kawrap_values_not_file_names() {
    if !skip_unless(have("bash"), "needs bash") {
        return;
    }
    let shells = Shells::new();
    for with in [false, true] {
        if with && !skip_unless(Path::new(BASH_COMPLETION).exists(), "needs bash-completion") {
            continue;
        }
        let bash = |line: &str| shells.bash(line, with);
        assert_eq!(bash("kawrap --profile "), profile_names(), "with bash-completion: {with}");
        assert_eq!(bash("kawrap -p "), profile_names());
        assert_eq!(bash("kawrap -p fi"), ["firewall"]);
        assert_eq!(bash("kawrap --profile=ni"), ["nightly"]);
        assert_eq!(bash("kawrap env --systemd -p sa"), ["satellite"]);
        assert_eq!(bash("kawrap check --expect rec"), ["recommended"]);
        assert_eq!(bash("kawrap --policy "), strings(&["respect", "force"]));
        assert_eq!(bash("kawrap attach --policy "), strings(&["respect", "force"]));
        assert_eq!(bash("kawrap env --shell "), strings(&["sh", "bash", "zsh", "fish"]));
        assert!(all_pids(&bash("kawrap check --pid ")), "{:?}", bash("kawrap check --pid "));
        assert!(all_pids(&bash("kawrap attach -p ssh ")));
        assert_eq!(bash("kawrap --pol"), ["--policy"]);
        assert!(bash("kawrap ").contains(&"profiles".to_owned()));
        // Subcommands of subcommands, as clap has them.
        let bpf: Vec<String> = kawrap_bin_subcommands(&["bpf"])
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(bash("kawrap bpf "), bpf);
        assert!(bpf.contains(&"status".to_owned()), "{bpf:?}");
        // A rule's value is free text: nothing offered, files least of all.
        assert_eq!(bash("kawrap --rule "), Vec::<String>::new());
    }
}

#[test]
fn bash_completes_the_command_like_after_timeout() {
    if !skip_unless(have("bash") && Path::new(BASH_COMPLETION).exists(), "needs bash and bash-completion") {
        return;
    }
    let shells = Shells::new();
    let bash = |line: &str| shells.bash(line, true);
    assert_eq!(bash("kawrap -p ssh fakec"), ["fakecmd"]);
    assert_eq!(bash("kawrap -- fakec"), ["fakecmd"]);
    assert_eq!(bash("kawrap -p ssh fakecmd "), strings(&["--fake-opt", "alpha", "beta"]));
    // The command's own options, never kawrap's.
    assert_eq!(bash("kawrap -p ssh fakecmd --"), ["--fake-opt"]);
    assert_eq!(bash("kawrap -p ssh fakecmd alpha -p "), strings(&["--fake-opt", "alpha", "beta"]));
    // Values with `:` and `=` (split by readline) are still one word.
    assert_eq!(bash("kawrap --rule :3306=ssh -v fakecmd al"), ["alpha"]);
    assert_eq!(bash("kawrap --profile=ssh fakecmd be"), ["beta"]);
    // Without bash-completion: program names, then file names.
    assert_eq!(shells.bash("kawrap -q fakec", false), ["fakecmd"]);
    assert!(shells.bash("kawrap fakecmd recommended-", false).contains(&"recommended-notes.txt".to_owned()));
}

#[test]
fn fish_completes_kawrap_values_and_the_command() {
    if !skip_unless(have("fish"), "needs fish") {
        return;
    }
    let shells = Shells::new();
    let fish = |line: &str| shells.fish(line);
    assert_eq!(fish("kawrap --profile "), profile_names());
    assert_eq!(fish("kawrap -p fi"), ["firewall"]);
    assert_eq!(fish("kawrap check --expect ni"), ["nightly"]);
    assert_eq!(fish("kawrap --policy "), strings(&["respect", "force"]));
    assert_eq!(fish("kawrap attach --policy "), strings(&["respect", "force"]));
    assert_eq!(fish("kawrap env --shell "), strings(&["sh", "bash", "zsh", "fish"]));
    assert!(all_pids(&fish("kawrap check --pid ")), "{:?}", fish("kawrap check --pid "));
    assert!(all_pids(&fish("kawrap attach ")));
    assert_eq!(fish("kawrap --rule "), Vec::<String>::new());
    assert!(fish("kawrap ").contains(&"profiles".to_owned()));
    assert!(fish("kawrap --pol").contains(&"--policy".to_owned()));
    // COMMAND, then its own completion, never kawrap's options.
    assert_eq!(fish("kawrap -p ssh fakec"), ["fakecmd"]);
    assert_eq!(fish("kawrap -- fakec"), ["fakecmd"]);
    assert_eq!(fish("kawrap -p ssh fakecmd "), strings(&["alpha", "beta"]));
    assert_eq!(fish("kawrap -p ssh fakecmd --"), ["--fake-opt"]);
    assert_eq!(fish("kawrap --rule :3306=ssh fakecmd al"), ["alpha"]);
}
