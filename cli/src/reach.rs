//! Programs that libkawrap.so cannot reach, found before they run.
//!
//! The shim works only when the dynamic loader preloads it and the program
//! opens its sockets through the C library's functions (glibc's or musl's:
//! the shim loads into both). Programs that skip either run with the
//! kernel's keepalive settings whatever kawrap says, so the launcher looks
//! at the file it is about to exec and tells the person once.
//! Only a few small reads are made (the ELF header, program and section
//! headers, the loader's name, at most 64 KiB of data for Go's marker): a
//! large binary is never read whole, and a file that is not what it claims
//! to be simply gets no warning.
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::program::path_candidates;

/// Why LD_PRELOAD will not reach a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bypass {
    /// `sudo` or `doas`: they start the program with a cleaned environment.
    PrivilegeWrapper(String),
    /// Runs as another user: the loader is in secure mode (AT_SECURE).
    Setuid,
    /// Runs as another group: the loader is in secure mode (AT_SECURE).
    Setgid,
    /// Gains capabilities from `security.capability`: secure mode too.
    FileCapabilities,
    /// Go's runtime makes its own system calls, without the C library.
    Go,
    /// No PT_INTERP: no dynamic loader ever runs, so nothing is preloaded.
    Static,
}

/// A program kawrap is about to run that its shim will not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The program as kawrap found it.
    pub program: PathBuf,
    /// The interpreter that really runs, when `program` is a `#!` script.
    pub interpreter: Option<PathBuf>,
    /// Why the shim will not reach it.
    pub bypass: Bypass,
}

/// What to do instead when the program does not go through the C library.
const NO_LIBC_ADVICE: &str = "use `kawrap --bpf` (root) or `kawrap attach PID` after it starts, or set \
                              sysctl net.ipv4.tcp_keepalive_* for the whole system";

impl fmt::Display for Unreachable {
    /// Two lines: the warning, then what to do instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match &self.interpreter {
            Some(interpreter) => format!("{} (run by {})", self.program.display(), interpreter.display()),
            None => self.program.display().to_string(),
        };
        let consequence = "so its sockets keep the kernel's keepalive settings";
        let secure_advice = "run it with `kawrap attach PID` after it starts (as root), or set sysctl \
                             net.ipv4.tcp_keepalive_* for the whole system";
        let (problem, advice) = match &self.bypass {
            Bypass::PrivilegeWrapper(name) => {
                return write!(
                    f,
                    "kawrap: warning: {name} starts the program with a cleaned environment: it removes \
                     LD_PRELOAD and KAWRAP_*, {consequence}\n  instead: put kawrap after {name}: \
                     {name} kawrap … CMD"
                );
            }
            Bypass::Setuid => ("is setuid: the loader ignores LD_PRELOAD for it".to_owned(), secure_advice),
            Bypass::Setgid => ("is setgid: the loader ignores LD_PRELOAD for it".to_owned(), secure_advice),
            Bypass::FileCapabilities => (
                "has file capabilities (security.capability): the loader ignores LD_PRELOAD for it"
                    .to_owned(),
                secure_advice,
            ),
            Bypass::Go => (
                "is a Go program: Go programs make their own system calls; LD_PRELOAD cannot reach them"
                    .to_owned(),
                NO_LIBC_ADVICE,
            ),
            Bypass::Static => (
                "is statically linked: no dynamic loader runs to preload libkawrap.so".to_owned(),
                NO_LIBC_ADVICE,
            ),
        };
        write!(f, "kawrap: warning: {subject} {problem}, {consequence}\n  instead: {advice}")
    }
}

/// The kernel follows at most this many `#!` interpreters in a row
/// (BINPRM_MAX_RECURSION) before it refuses.
const MAX_INTERPRETERS: usize = 4;

/// Whether libkawrap.so will reach the program `name` resolved to
/// `program`; `None` when nothing stands in its way as far as the file
/// shows (or the file cannot be read: then the run will tell).
pub fn check(name: &OsStr, program: &Path) -> Option<Unreachable> {
    let mut path = program.to_owned();
    let mut interpreter = None;
    for _ in 0..=MAX_INTERPRETERS {
        let unreachable =
            |bypass| Unreachable { program: program.to_owned(), interpreter: interpreter.clone(), bypass };
        let wrapper = [name, path.as_os_str()]
            .into_iter()
            .chain(fs::canonicalize(&path).ok().as_deref().map(Path::as_os_str))
            .find_map(privilege_wrapper);
        if let Some(wrapper) = wrapper {
            return Some(unreachable(Bypass::PrivilegeWrapper(wrapper)));
        }
        let file = File::open(&path).ok()?;
        let metadata = file.metadata().ok()?;
        let mut buf = [0u8; SHEBANG_MAX];
        let len = read_prefix(&file, &mut buf);
        let head = &buf[..len];
        if let Some(next) = shebang(head) {
            // The kernel ignores setuid, setgid and capabilities on scripts:
            // only the interpreter's matter.
            path = resolve_interpreter(next)?;
            interpreter = Some(path.clone());
            continue;
        }
        if !head.starts_with(ELF_MAGIC) {
            return None;
        }
        if let Some(bypass) = privileges(&path, &file, &metadata) {
            return Some(unreachable(bypass));
        }
        return elf_bypass(&file).map(unreachable);
    }
    None
}

/// `sudo` or `doas` when `path`'s file name is one of them.
fn privilege_wrapper(path: &OsStr) -> Option<String> {
    let file_name = Path::new(path).file_name()?;
    ["sudo", "doas"].into_iter().find(|wrapper| file_name == *wrapper).map(str::to_owned)
}

/// Whether exec'ing `path` puts the loader in secure mode (AT_SECURE), in
/// which it ignores LD_PRELOAD: it changes the user or group, or raises
/// capabilities for a caller that is not root.
fn privileges(path: &Path, file: &File, metadata: &fs::Metadata) -> Option<Bypass> {
    // On a nosuid mount the kernel honours none of the three.
    if on_nosuid_mount(file) {
        return None;
    }
    // SAFETY: getuid(2) and getgid(2) cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mode = metadata.mode();
    if mode & 0o4000 != 0 && metadata.uid() != uid {
        return Some(Bypass::Setuid);
    }
    // Without group execute permission the setgid bit means mandatory
    // locking, and exec leaves the group alone.
    if mode & 0o2010 == 0o2010 && metadata.gid() != gid {
        return Some(Bypass::Setgid);
    }
    // A real uid of 0 already holds every capability it could gain, so the
    // kernel does not set AT_SECURE for root (security/commoncap.c).
    if uid != 0 && has_file_capabilities(path) {
        return Some(Bypass::FileCapabilities);
    }
    None
}

fn on_nosuid_mount(file: &File) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: the descriptor is open for the duration of the call, and
    // fstatvfs(2) writes only into the statvfs it is given.
    let ok = unsafe { libc::fstatvfs(file.as_raw_fd(), stat.as_mut_ptr()) } == 0;
    // SAFETY: zero-initialised, and filled in by a successful call.
    ok && unsafe { stat.assume_init() }.f_flag & libc::ST_NOSUID != 0
}

fn has_file_capabilities(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: both strings are NUL-terminated and outlive the call; a null
    // buffer of size 0 asks getxattr(2) only for the value's size.
    let size =
        unsafe { libc::getxattr(c_path.as_ptr(), c"security.capability".as_ptr(), std::ptr::null_mut(), 0) };
    size > 0
}

/// Reads as much of the start of `file` as fits in `buf`; returns how much.
fn read_prefix(file: &File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    filled
}

// ---- `#!` scripts -------------------------------------------------------

/// The kernel reads this much of a file for its `#!` line (BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;

/// The interpreter a `#!` line names and its optional argument, split as the
/// kernel splits it: the path up to the first blank, the rest as one word.
#[derive(Debug, PartialEq, Eq)]
struct Shebang<'a> {
    interpreter: &'a [u8],
    argument: Option<&'a [u8]>,
}

fn shebang(head: &[u8]) -> Option<Shebang<'_>> {
    let line = head.strip_prefix(b"#!")?;
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(end) => &line[..end],
        None => line,
    };
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let line = trim(line, blank);
    let end = line.iter().position(blank).unwrap_or(line.len());
    let (interpreter, rest) = line.split_at(end);
    if interpreter.is_empty() {
        return None;
    }
    let argument = trim(rest, blank);
    Some(Shebang { interpreter, argument: (!argument.is_empty()).then_some(argument) })
}

fn trim(bytes: &[u8], blank: impl Fn(&u8) -> bool) -> &[u8] {
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !blank(b)).map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// The file that runs a script: the interpreter itself, or for
/// `#!/usr/bin/env NAME` the NAME that env will find in PATH.
fn resolve_interpreter(shebang: Shebang<'_>) -> Option<PathBuf> {
    let interpreter = Path::new(OsStr::from_bytes(shebang.interpreter));
    if interpreter.file_name() != Some(OsStr::new("env")) {
        return Some(interpreter.to_owned());
    }
    // env's options (-S splits the rest into words, -i, -u NAME…) and
    // NAME=VALUE assignments come before the command.
    let command = shebang
        .argument?
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|word| !word.is_empty())
        .find(|word| !word.starts_with(b"-") && !word.contains(&b'='))?;
    let command = Path::new(OsStr::from_bytes(command));
    if command.as_os_str().as_bytes().contains(&b'/') {
        return Some(command.to_owned());
    }
    find_in_path(command)
}

/// The first executable regular file called `name` in PATH, as env(1)'s
/// execvp finds it.
fn find_in_path(name: &Path) -> Option<PathBuf> {
    path_candidates(name).into_iter().find(|candidate| {
        fs::metadata(candidate).is_ok_and(|metadata| metadata.is_file() && metadata.mode() & 0o111 != 0)
    })
}

// ---- ELF ------------------------------------------------------------------

const ELF_MAGIC: &[u8] = b"\x7fELF";
/// Go's linker starts the build information with this (debug/buildinfo).
const GO_MARKER: &[u8] = b"\xff Go buildinf:";
/// Sections only Go's linker writes.
const GO_SECTIONS: [&[u8]; 2] = [b".go.buildinfo", b".note.go.buildid"];
/// How much of the first writable segment Go's own tools search for the
/// marker when there is no `.go.buildinfo` section.
const GO_MARKER_SEARCH: u64 = 64 * 1024;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PF_W: u32 = 2;
/// Bounds on what a sane executable has; anything beyond is not trusted
/// enough to allocate for.
const MAX_PROGRAM_HEADERS: usize = 512;
const MAX_SECTIONS: usize = 4096;
/// Entries are 56 or 32 bytes (program headers), 64 or 40 (sections);
/// larger ones are allowed by the format but never written.
const MAX_ENTRY_SIZE: usize = 256;
const MAX_INTERP_LEN: u64 = 4096;
const MAX_SECTION_NAMES: u64 = 64 * 1024;

/// Something that can be read at an offset: a file, or bytes in tests.
trait Source {
    /// Fills `buf` from `offset`, or says it cannot (short, or an error).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> bool;
}

impl Source for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> bool {
        FileExt::read_exact_at(self, buf, offset).is_ok()
    }
}

impl Source for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> bool {
        let Ok(start) = usize::try_from(offset) else { return false };
        match start.checked_add(buf.len()).and_then(|end| self.get(start..end)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// Reads `len` bytes at `offset` into a new buffer (`len` is already bounded).
fn read_vec(source: &(impl Source + ?Sized), offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).ok()?];
    source.read_exact_at(&mut buf, offset).then_some(buf)
}

/// Fixed-width fields of a header, in the file's byte order; `None` past
/// its end.
struct Fields<'a> {
    bytes: &'a [u8],
    little_endian: bool,
    is_64: bool,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let bytes = self.array(at)?;
        Some(if self.little_endian { u16::from_le_bytes(bytes) } else { u16::from_be_bytes(bytes) })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let bytes = self.array(at)?;
        Some(if self.little_endian { u32::from_le_bytes(bytes) } else { u32::from_be_bytes(bytes) })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let bytes = self.array(at)?;
        Some(if self.little_endian { u64::from_le_bytes(bytes) } else { u64::from_be_bytes(bytes) })
    }
    /// An address or offset: 4 bytes in ELFCLASS32, 8 in ELFCLASS64.
    fn word(&self, at: usize) -> Option<u64> {
        if self.is_64 { self.u64(at) } else { self.u32(at).map(u64::from) }
    }
    fn with<'b>(&self, bytes: &'b [u8]) -> Fields<'b> {
        Fields { bytes, little_endian: self.little_endian, is_64: self.is_64 }
    }
}

/// The bypass an ELF executable shows, if any.
fn elf_bypass(source: &(impl Source + ?Sized)) -> Option<Bypass> {
    let facts = ElfFacts::read(source)?;
    if facts.go {
        // Before the check for a loader: Go programs that use cgo have one,
        // but their sockets still come from Go's own system calls.
        return Some(Bypass::Go);
    }
    // Any loader will do: the shim loads into glibc's and musl's alike.
    facts.interpreter.is_none().then_some(Bypass::Static)
}

/// What the launcher needs to know about an executable.
#[derive(Debug, Default, PartialEq, Eq)]
struct ElfFacts {
    /// PT_INTERP's path (NUL and what follows removed); `None` without one.
    interpreter: Option<Vec<u8>>,
    /// Built by Go's linker.
    go: bool,
}

impl ElfFacts {
    /// `None` when this is not an ELF file that can be run, or its headers
    /// do not hold together: then nothing is claimed about it.
    fn read(source: &(impl Source + ?Sized)) -> Option<Self> {
        let mut ident = [0u8; 64];
        // A 32-bit header is 52 bytes, and an executable is always longer
        // than 64; a shorter file is no program.
        if !source.read_exact_at(&mut ident, 0) || !ident.starts_with(ELF_MAGIC) {
            return None;
        }
        let is_64 = match ident[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little_endian = match ident[5] {
            1 => true,
            2 => false,
            _ => return None,
        };
        let header = Fields { bytes: &ident, little_endian, is_64 };
        // ET_EXEC or ET_DYN (PIE): the only kinds execve runs.
        if !matches!(header.u16(16)?, 2 | 3) {
            return None;
        }
        let (phoff, phentsize, phnum) = if is_64 {
            (header.u64(32)?, header.u16(54)?, header.u16(56)?)
        } else {
            (u64::from(header.u32(28)?), header.u16(42)?, header.u16(44)?)
        };
        let (shoff, shentsize, shnum, shstrndx) = if is_64 {
            (header.u64(40)?, header.u16(58)?, header.u16(60)?, header.u16(62)?)
        } else {
            (u64::from(header.u32(32)?), header.u16(46)?, header.u16(48)?, header.u16(50)?)
        };

        // Program headers: the loader's name, and where writable data starts.
        let phentsize = usize::from(phentsize);
        let phnum = usize::from(phnum);
        let min_entry = if is_64 { 56 } else { 32 };
        if phnum == 0 || phnum > MAX_PROGRAM_HEADERS || !(min_entry..=MAX_ENTRY_SIZE).contains(&phentsize) {
            return None;
        }
        let table = read_vec(source, phoff, (phentsize * phnum) as u64)?;
        let mut interpreter = None;
        let mut data = None;
        for entry in table.chunks_exact(phentsize) {
            let ph = header.with(entry);
            let p_type = ph.u32(0)?;
            let (flags, offset, filesz) = if is_64 {
                (ph.u32(4)?, ph.u64(8)?, ph.u64(32)?)
            } else {
                (ph.u32(24)?, u64::from(ph.u32(4)?), u64::from(ph.u32(16)?))
            };
            if p_type == PT_INTERP && interpreter.is_none() {
                let mut path = read_vec(source, offset, filesz.min(MAX_INTERP_LEN)).unwrap_or_default();
                if let Some(nul) = path.iter().position(|&b| b == 0) {
                    path.truncate(nul);
                }
                interpreter = Some(path);
            } else if p_type == PT_LOAD && flags & PF_W != 0 && data.is_none() {
                data = Some((offset, filesz));
            }
        }

        let go = has_go_section(source, &header, shoff, shentsize, shnum, shstrndx)
            || data.is_some_and(|(offset, size)| has_go_marker(source, offset, size));
        Some(ElfFacts { interpreter, go })
    }
}

/// Whether a section is named like one of Go's. Section headers are
/// optional (`strip` keeps them, other tools may not): `false` when absent
/// or unreadable.
fn has_go_section(
    source: &(impl Source + ?Sized),
    header: &Fields<'_>,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
) -> bool {
    let is_64 = header.is_64;
    let entsize = usize::from(shentsize);
    let min_entry = if is_64 { 64 } else { 40 };
    if shoff == 0 || !(min_entry..=MAX_ENTRY_SIZE).contains(&entsize) {
        return false;
    }
    let Some(first) = read_vec(source, shoff, entsize as u64) else { return false };
    let first = header.with(&first);
    // With more than 0xff00 sections the real count is section 0's sh_size
    // and the index of the names' section its sh_link (SHN_XINDEX).
    let count = match shnum {
        0 => first.word(if is_64 { 32 } else { 20 }).unwrap_or(0),
        n => u64::from(n),
    };
    let names_index = match shstrndx {
        0xffff => first.u32(if is_64 { 40 } else { 24 }).map_or(0, u64::from),
        n => u64::from(n),
    };
    let count = count.min(MAX_SECTIONS as u64) as usize;
    if count == 0 || names_index == 0 || names_index >= count as u64 {
        return false;
    }
    let Some(table) = read_vec(source, shoff, (entsize * count) as u64) else { return false };
    let section = |index: usize| {
        let entry = header.with(table.get(index * entsize..(index + 1) * entsize)?);
        let name = entry.u32(0)?;
        let (offset, size) = if is_64 {
            (entry.u64(24)?, entry.u64(32)?)
        } else {
            (u64::from(entry.u32(16)?), u64::from(entry.u32(20)?))
        };
        Some((name, offset, size))
    };
    let Some((_, names_offset, names_size)) = section(names_index as usize) else { return false };
    let Some(names) = read_vec(source, names_offset, names_size.min(MAX_SECTION_NAMES)) else { return false };
    (1..count).filter_map(section).any(|(name, _, _)| {
        let name = names.get(name as usize..).unwrap_or_default();
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        GO_SECTIONS.contains(&name)
    })
}

/// Whether Go's build-information marker is in the first 64 KiB of the
/// segment at `offset`, where Go's linker puts it.
fn has_go_marker(source: &(impl Source + ?Sized), offset: u64, size: u64) -> bool {
    let Some(data) = read_vec(source, offset, size.min(GO_MARKER_SEARCH)) else { return false };
    data.windows(GO_MARKER.len()).any(|window| window == GO_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small ELF executable in the given class and byte order: optional
    /// PT_INTERP, one writable PT_LOAD holding `data`, and sections named
    /// `sections` (none: no section header table at all).
    fn elf(
        is_64: bool,
        little_endian: bool,
        interp: Option<&[u8]>,
        data: &[u8],
        sections: &[&str],
    ) -> Vec<u8> {
        let put = |out: &mut Vec<u8>, value: u64, width: usize| {
            let bytes = if little_endian { value.to_le_bytes() } else { value.to_be_bytes() };
            if little_endian {
                out.extend_from_slice(&bytes[..width]);
            } else {
                out.extend_from_slice(&bytes[8 - width..]);
            }
        };
        let word = if is_64 { 8 } else { 4 };
        let (ehsize, phentsize, shentsize) = if is_64 { (64, 56, 64) } else { (52, 32, 40) };
        let phnum = 1 + usize::from(interp.is_some());
        let interp_off = ehsize + phentsize * phnum;
        let interp = interp.map(|path| [path, b"\0"].concat()).unwrap_or_default();
        let data_off = interp_off + interp.len();
        let mut names = vec![0u8];
        let mut name_offsets = Vec::new();
        for name in sections.iter().copied().chain([".shstrtab"]) {
            name_offsets.push(names.len());
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let names_off = data_off + data.len();
        let shoff = if sections.is_empty() { 0 } else { names_off + names.len() };
        let shnum = if sections.is_empty() { 0 } else { sections.len() + 2 };

        let mut out = b"\x7fELF".to_vec();
        out.extend_from_slice(&[if is_64 { 2 } else { 1 }, if little_endian { 1 } else { 2 }, 1]);
        out.resize(16, 0);
        put(&mut out, 3, 2); // ET_DYN
        put(&mut out, 62, 2);
        put(&mut out, 1, 4);
        put(&mut out, 0, word); // entry
        put(&mut out, ehsize as u64, word); // phoff
        put(&mut out, shoff as u64, word);
        put(&mut out, 0, 4);
        put(&mut out, ehsize as u64, 2);
        put(&mut out, phentsize as u64, 2);
        put(&mut out, phnum as u64, 2);
        put(&mut out, shentsize as u64, 2);
        put(&mut out, shnum as u64, 2);
        put(&mut out, shnum.saturating_sub(1) as u64, 2);
        assert_eq!(out.len(), ehsize);
        let phdr = |out: &mut Vec<u8>, p_type: u64, flags: u64, offset: usize, size: usize| {
            put(out, p_type, 4);
            if is_64 {
                put(out, flags, 4);
            }
            for value in [offset, offset, offset, size, size] {
                put(out, value as u64, word);
            }
            if !is_64 {
                put(out, flags, 4);
            }
            put(out, 1, word);
        };
        if !interp.is_empty() {
            phdr(&mut out, 3, 4, interp_off, interp.len());
        }
        phdr(&mut out, 1, 6, data_off, data.len());
        assert_eq!(out.len(), interp_off);
        out.extend_from_slice(&interp);
        out.extend_from_slice(data);
        out.extend_from_slice(&names);
        if !sections.is_empty() {
            out.resize(out.len() + shentsize, 0); // section 0
            for (index, &name_off) in name_offsets.iter().enumerate() {
                let is_names = index == name_offsets.len() - 1;
                put(&mut out, name_off as u64, 4);
                put(&mut out, if is_names { 3 } else { 1 }, 4);
                put(&mut out, 0, word); // flags
                put(&mut out, 0, word); // addr
                put(&mut out, if is_names { names_off } else { data_off } as u64, word);
                put(&mut out, if is_names { names.len() } else { data.len() } as u64, word);
                put(&mut out, 0, 4);
                put(&mut out, 0, 4);
                put(&mut out, 1, word);
                put(&mut out, 0, word);
            }
        }
        out
    }

    const GLIBC: &[u8] = b"/lib64/ld-linux-x86-64.so.2";

    fn facts(bytes: &[u8]) -> Option<ElfFacts> {
        ElfFacts::read(bytes)
    }

    #[test]
    fn every_class_and_byte_order_reads_the_same() {
        for is_64 in [true, false] {
            for little_endian in [true, false] {
                let plain = elf(is_64, little_endian, Some(GLIBC), b"data", &[".data"]);
                assert_eq!(facts(&plain), Some(ElfFacts { interpreter: Some(GLIBC.to_vec()), go: false }));
                let go = elf(is_64, little_endian, Some(GLIBC), b"data", &[".text", ".go.buildinfo"]);
                assert_eq!(facts(&go), Some(ElfFacts { interpreter: Some(GLIBC.to_vec()), go: true }));
                let marker = elf(is_64, little_endian, None, b"\0\0\xff Go buildinf:\x08\x02", &[]);
                assert_eq!(facts(&marker), Some(ElfFacts { interpreter: None, go: true }));
            }
        }
    }

    #[test]
    fn bypasses_by_kind() {
        let bypass = |bytes: Vec<u8>| elf_bypass(bytes.as_slice());
        assert_eq!(bypass(elf(true, true, Some(GLIBC), b"x", &[".data"])), None);
        assert_eq!(bypass(elf(true, true, None, b"x", &[".data"])), Some(Bypass::Static));
        // cgo: a loader, and still Go.
        assert_eq!(bypass(elf(true, true, Some(GLIBC), b"x", &[".note.go.buildid"])), Some(Bypass::Go));
        assert_eq!(bypass(elf(true, true, Some(b"/lib/ld-musl-x86_64.so.1"), b"x", &[])), None);
        // A section merely containing "go" in its name is not Go's.
        assert_eq!(bypass(elf(true, true, Some(GLIBC), b"x", &[".go.buildinfox", ".gox"])), None);
    }

    #[test]
    fn not_an_executable_is_no_claim() {
        assert_eq!(facts(b""), None);
        assert_eq!(facts(b"\x7fELF"), None);
        assert_eq!(facts(&[0x7f; 200]), None);
        let mut object = elf(true, true, None, b"x", &[]);
        object[16] = 1; // ET_REL
        assert_eq!(facts(&object), None);
        let mut class = elf(true, true, None, b"x", &[]);
        class[4] = 3;
        assert_eq!(facts(&class), None);
    }

    #[test]
    fn a_truncated_file_claims_nothing_it_cannot_see() {
        let whole = elf(true, true, Some(GLIBC), b"\xff Go buildinf:", &[".go.buildinfo"]);
        for len in 0..whole.len() {
            // Never a panic; and never "static" because the loader's name
            // was cut off: PT_INTERP's presence is what counts.
            if let Some(facts) = facts(&whole[..len]) {
                assert!(facts.interpreter.is_some(), "cut at {len}: {facts:?}");
            }
        }
    }

    /// A tiny deterministic generator: the same "random" bytes every run.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let base = elf(true, true, Some(GLIBC), b"\xff Go buildinf:", &[".text", ".go.buildinfo"]);
        let base32 = elf(false, false, Some(GLIBC), b"data", &[".text"]);
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 { base.clone() } else { base32.clone() };
            for _ in 0..=(xorshift(&mut state) % 8) {
                let at = (xorshift(&mut state) % bytes.len() as u64) as usize;
                bytes[at] = xorshift(&mut state) as u8;
            }
            // Extremes in the header's counts, sizes and offsets.
            if round % 7 == 0 {
                let at = 32 + (xorshift(&mut state) % 32) as usize;
                bytes[at] = 0xff;
            }
            let _ = facts(&bytes);
            let _ = elf_bypass(bytes.as_slice());
        }
    }

    #[test]
    fn shebang_lines_split_as_the_kernel_does() {
        let parse =
            |line: &[u8]| shebang(line).map(|s| (s.interpreter.to_vec(), s.argument.map(<[u8]>::to_vec)));
        assert_eq!(parse(b"#!/bin/sh\necho"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(
            parse(b"#! /usr/bin/env  perl -w \nx"),
            Some((b"/usr/bin/env".to_vec(), Some(b"perl -w".to_vec())))
        );
        assert_eq!(parse(b"#!\t/bin/bash\t-e"), Some((b"/bin/bash".to_vec(), Some(b"-e".to_vec()))));
        assert_eq!(parse(b"#!\n/bin/sh"), None);
        assert_eq!(parse(b"#!   "), None);
        assert_eq!(parse(b"\x7fELF"), None);
        assert_eq!(parse(b"# !/bin/sh"), None);
    }

    #[test]
    fn env_finds_the_command_after_its_options() {
        let resolve = |interpreter: &[u8], argument: Option<&[u8]>| {
            resolve_interpreter(Shebang { interpreter, argument })
        };
        assert_eq!(resolve(b"/bin/sh", Some(b"-e")), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve(b"/usr/bin/env", Some(b"-S /opt/x/perl -w")), Some(PathBuf::from("/opt/x/perl")));
        assert_eq!(resolve(b"/usr/bin/env", Some(b"-i A=1 ./tool")), Some(PathBuf::from("./tool")));
        assert_eq!(resolve(b"/usr/bin/env", None), None);
        assert_eq!(resolve(b"/usr/bin/env", Some(b"-i")), None);
        // Found in PATH like env finds it (sh is everywhere).
        let sh = resolve(b"/usr/bin/env", Some(b"sh")).expect("sh in PATH");
        assert_eq!(sh.file_name(), Some(OsStr::new("sh")));
    }

    #[test]
    fn sudo_and_doas_by_name() {
        assert_eq!(privilege_wrapper(OsStr::new("sudo")), Some("sudo".to_owned()));
        assert_eq!(privilege_wrapper(OsStr::new("/usr/bin/doas")), Some("doas".to_owned()));
        assert_eq!(privilege_wrapper(OsStr::new("/usr/bin/sudoedit-ish")), None);
        assert_eq!(privilege_wrapper(OsStr::new("")), None);
    }

    #[test]
    fn the_warning_says_what_and_what_instead() {
        let warning = Unreachable {
            program: PathBuf::from("/s/run.pl"),
            interpreter: Some(PathBuf::from("/opt/perl")),
            bypass: Bypass::Static,
        };
        assert_eq!(
            warning.to_string(),
            "kawrap: warning: /s/run.pl (run by /opt/perl) is statically linked: no dynamic loader runs to \
             preload libkawrap.so, so its sockets keep the kernel's keepalive settings\n  instead: \
             use `kawrap --bpf` (root) or `kawrap attach PID` after it starts, or set sysctl \
             net.ipv4.tcp_keepalive_* for the whole system"
        );
    }
}
