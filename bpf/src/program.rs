//! kawrap's two programs and their maps in the kernel: loaded from the
//! object (verified: the slow part), opened from pins of an earlier load,
//! attached to cgroups, and each cgroup's configuration and counters.
//!
//! The loader is aya rather than libbpf-rs: aya is pure Rust and reaches
//! the kernel through the bpf(2) system call itself, so building it needs no
//! C toolchain, no libbpf/libelf/zlib to link and no bindgen or vendored C
//! build; only the BPF object itself needs clang (see build.rs). Everything
//! after the load is a handful of bpf(2) commands (sys.rs).
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use aya::maps::{Map, MapData};
use aya::{Ebpf, EbpfLoader};

use crate::error::Error;
use crate::maps::{COUNTER_SLOTS, Counters, RawConfig};
use crate::sys;

/// The objects compiled by build.rs, aligned as aya's ELF parser requires.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kawrap.bpf.o"));
static PINNED_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kawrap-pinned.bpf.o"));

/// Which of the two builds of the programs (see the C source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Each cgroup's configuration in cgroup local storage: the copy every
    /// run and `attach` reuses.
    PerCgroup,
    /// One configuration built in: a copy pinned for systemd.
    Pinned,
}

/// This build's name for what it pins: kawrap's version and a hash of the
/// object, so that an upgrade never reuses another build's programs. The
/// BPF filesystem refuses dots in names: `0_1_0-0123456789abcdef`.
pub(crate) const BUILD: &str = concat!(
    env!("CARGO_PKG_VERSION_MAJOR"),
    "_",
    env!("CARGO_PKG_VERSION_MINOR"),
    "_",
    env!("CARGO_PKG_VERSION_PATCH"),
    "-",
    env!("KAWRAP_BPF_BUILD")
);

pub(crate) const SOCKOPS_PROGRAM: &str = "kawrap_sockops";
const SETSOCKOPT_PROGRAM: &str = "kawrap_setsockopt";
/// Program names as the kernel keeps them: at most 15 bytes.
pub(crate) const KERNEL_NAMES: [&str; 2] = ["kawrap_sockops", "kawrap_setsocko"];
const CGROUP_CONFIG_MAP: &str = "kawrap_cgroup";
const PINNED_CONFIG_MAP: &str = "kawrap_pinned";
const STATS_MAP: &str = "kawrap_stats";
const SOCKETS_MAP: &str = "kawrap_sockets";
/// The pin of the socket storage map all kawrap programs share (see the C
/// source); versioned with `struct kawrap_sk`'s layout.
pub(crate) const SOCKETS_PIN: &str = "sockets-v2";

/// The attach types, in the order kawrap attaches them.
pub(crate) const ATTACH_TYPES: [u32; 2] = [sys::BPF_CGROUP_SOCK_OPS, sys::BPF_CGROUP_SETSOCKOPT];

/// The names systemd's BPFProgram= and bpftool give the attach types, in
/// [`ATTACH_TYPES`] order.
pub(crate) const HOOK_NAMES: [&str; 2] = ["sock_ops", "setsockopt"];

/// The pin names of a set of programs: the programs under their
/// [`HOOK_NAMES`], then the maps.
pub(crate) const PIN_NAMES: [&str; 4] = [HOOK_NAMES[0], HOOK_NAMES[1], "config", "stats"];

/// The configuration and counter maps of one copy of the programs.
pub(crate) struct Maps {
    /// `kawrap_cgroup` (each attached cgroup's configuration) or
    /// `kawrap_pinned` (the one configuration of a pinned copy).
    config: OwnedFd,
    variant: Variant,
    /// `kawrap_stats`: each attached cgroup's counters, per CPU.
    stats: OwnedFd,
}

/// kawrap's programs, loaded in the kernel, with their maps.
pub(crate) struct Programs {
    /// In [`ATTACH_TYPES`] order.
    programs: [OwnedFd; 2],
    pub(crate) maps: Maps,
}

fn clone_fd(fd: BorrowedFd<'_>, what: &str) -> Result<OwnedFd, Error> {
    fd.try_clone_to_owned().map_err(|e| Error::io(format!("duplicate the descriptor of {what}"), e))
}

fn missing(name: &str) -> Error {
    Error::KernelRefused { program: name.to_string(), detail: "not found in kawrap.bpf.o".to_string() }
}

/// The descriptor of one of the object's maps.
fn map_fd(ebpf: &Ebpf, name: &str) -> Result<OwnedFd, Error> {
    let data: &MapData = match ebpf.map(name).ok_or_else(|| missing(name))? {
        Map::Array(data) | Map::CgroupStorage(data) | Map::PerCpuCgroupStorage(data) => data,
        _ => return Err(missing(name)),
    };
    clone_fd(data.fd().as_fd(), name)
}

impl Programs {
    /// Loads the object: the kernel verifies both programs, which is what
    /// takes time (tens of milliseconds). `sockets_pin`: where the shared
    /// socket map is pinned, or is to be pinned (None: this copy has a
    /// map of its own).
    pub(crate) fn load(variant: Variant, sockets_pin: Option<&Path>) -> Result<Programs, Error> {
        // The verifier gives up with EAGAIN when a signal arrives meanwhile.
        let mut attempts = 0;
        loop {
            match Programs::load_once(variant, sockets_pin) {
                Err(error) if attempts < 3 && error.is_interrupted() => attempts += 1,
                result => return result,
            }
        }
    }

    fn load_once(variant: Variant, sockets_pin: Option<&Path>) -> Result<Programs, Error> {
        // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, whose
        // default (64 KiB) is too small for the maps; raising it is harmless
        // on newer kernels. Failure is left to the load to report.
        let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };

        let load = || {
            let mut loader = EbpfLoader::new();
            if let Some(pin) = sockets_pin {
                loader.map_pin_path(SOCKETS_MAP, pin);
            }
            loader.load(match variant {
                Variant::PerCgroup => OBJECT,
                Variant::Pinned => PINNED_OBJECT,
            })
        };
        // Two kawraps creating the shared map at once: one pin wins, the
        // other load fails and, retried, reuses it.
        let mut ebpf = load()
            .or_else(|e| if sockets_pin.is_some_and(Path::exists) { load() } else { Err(e) })
            .map_err(|e| Error::from_bpf("kawrap.bpf.o (maps)", &e))?;
        let mut programs = Vec::new();
        for name in [SOCKOPS_PROGRAM, SETSOCKOPT_PROGRAM] {
            let program = ebpf.program_mut(name).ok_or_else(|| missing(name))?;
            let result = match program {
                aya::programs::Program::SockOps(p) => p.load(),
                aya::programs::Program::CgroupSockopt(p) => p.load(),
                _ => return Err(missing(name)),
            };
            result.map_err(|e| Error::from_bpf(name, &e))?;
            let fd = program.fd().map_err(|e| Error::from_bpf(name, &e))?;
            programs.push(clone_fd(fd.as_fd(), name)?);
        }
        let [sockops, setsockopt] =
            <[OwnedFd; 2]>::try_from(programs).map_err(|_| missing(SOCKOPS_PROGRAM))?;
        let config_map = match variant {
            Variant::PerCgroup => CGROUP_CONFIG_MAP,
            Variant::Pinned => PINNED_CONFIG_MAP,
        };
        let maps = Maps { config: map_fd(&ebpf, config_map)?, variant, stats: map_fd(&ebpf, STATS_MAP)? };
        // Dropping `ebpf` closes aya's descriptors; ours keep everything
        // loaded.
        Ok(Programs { programs: [sockops, setsockopt], maps })
    }

    /// Opens a set pinned by [`Programs::pin`].
    pub(crate) fn open(dir: &Path) -> io::Result<Programs> {
        let get = |name: &str| sys::obj_get(&dir.join(name));
        let config = get(PIN_NAMES[2])?;
        let variant = Maps::variant_of(&sys::map_name(config.as_fd())?)?;
        Ok(Programs {
            programs: [get(PIN_NAMES[0])?, get(PIN_NAMES[1])?],
            maps: Maps { config, variant, stats: get(PIN_NAMES[3])? },
        })
    }

    /// Pins the programs and maps in the existing directory `dir`.
    pub(crate) fn pin(&self, dir: &Path) -> Result<(), Error> {
        let [sockops, setsockopt] = &self.programs;
        let fds = [sockops, setsockopt, &self.maps.config, &self.maps.stats];
        for (fd, name) in fds.into_iter().zip(PIN_NAMES) {
            let path = dir.join(name);
            sys::obj_pin(fd.as_fd(), &path).map_err(|e| Error::io(format!("pin {}", path.display()), e))?;
        }
        Ok(())
    }

    /// The kernel's ids of the two programs.
    pub(crate) fn ids(&self) -> Result<[u32; 2], Error> {
        let id = |fd: &OwnedFd| {
            sys::prog_info(fd.as_fd()).map(|info| info.id).map_err(|e| Error::io("read a program's id", e))
        };
        Ok([id(&self.programs[0])?, id(&self.programs[1])?])
    }

    /// Attaches both programs to the cgroup open as `cgroup`, next to any
    /// others there. Already attached (a concurrent kawrap was first) is
    /// fine: the programs are the same.
    pub(crate) fn attach(&self, cgroup: &File) -> io::Result<()> {
        for (program, attach_type) in self.programs.iter().zip(ATTACH_TYPES) {
            if let Err(error) = sys::prog_attach(program.as_fd(), cgroup, attach_type) {
                // The kernel answers EINVAL for a program attached twice,
                // and for other reasons: ask what is there.
                let id = sys::prog_info(program.as_fd())?.id;
                if !sys::prog_query(cgroup, attach_type)?.ids.contains(&id) {
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

impl Maps {
    fn variant_of(config_map_name: &str) -> io::Result<Variant> {
        match config_map_name {
            CGROUP_CONFIG_MAP => Ok(Variant::PerCgroup),
            PINNED_CONFIG_MAP => Ok(Variant::Pinned),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "not kawrap's maps (another kawrap version?)")),
        }
    }

    /// The maps of the loaded program with this id (found by their names).
    pub(crate) fn of_program(id: u32) -> io::Result<Maps> {
        let info = sys::prog_info(sys::prog_by_id(id)?.as_fd())?;
        let (mut config, mut stats) = (None, None);
        for id in info.map_ids {
            let Ok(map) = sys::map_by_id(id) else { continue };
            let Ok(name) = sys::map_name(map.as_fd()) else { continue };
            if name == STATS_MAP {
                stats = Some(map);
            } else if let Ok(variant) = Maps::variant_of(&name) {
                config = Some((map, variant));
            }
        }
        match (config, stats) {
            (Some((config, variant)), Some(stats)) => Ok(Maps { config, variant, stats }),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "not kawrap's maps (another kawrap version?)")),
        }
    }

    /// A copy pinned for systemd (one configuration for every cgroup).
    pub(crate) fn is_pinned_copy(&self) -> bool {
        self.variant == Variant::Pinned
    }

    /// The key of `cgroup_id`'s entry in the configuration map.
    fn config_key(&self, cgroup_id: u64) -> Vec<u8> {
        match self.variant {
            Variant::PerCgroup => cgroup_id.to_ne_bytes().to_vec(),
            Variant::Pinned => 0u32.to_ne_bytes().to_vec(),
        }
    }

    /// Writes the configuration in force in the cgroup with this id: its
    /// own (the programs must be attached to it: ENOENT otherwise), or, for
    /// a pinned copy, the one of every cgroup.
    pub(crate) fn write(&self, cgroup_id: u64, config: &RawConfig) -> io::Result<()> {
        sys::map_update(self.config.as_fd(), &self.config_key(cgroup_id), config.as_bytes())
    }

    /// The configuration in force in the cgroup with this id; `None` if it
    /// is not set (or not readable).
    pub(crate) fn read(&self, cgroup_id: u64) -> Option<RawConfig> {
        let mut bytes = vec![0u8; size_of::<RawConfig>()];
        sys::map_lookup(self.config.as_fd(), &self.config_key(cgroup_id), &mut bytes).ok()?;
        RawConfig::from_bytes(&bytes).filter(|raw| raw.owner() != 0)
    }

    /// The counters of the cgroup with this id (zero if not attached).
    pub(crate) fn counters(&self, cgroup_id: u64) -> Counters {
        let mut bytes = vec![0u8; COUNTER_SLOTS * 8 * sys::possible_cpus()];
        match sys::map_lookup(self.stats.as_fd(), &cgroup_id.to_ne_bytes(), &mut bytes) {
            Ok(()) => Counters::from_per_cpu(&bytes),
            Err(_) => Counters::default(),
        }
    }
}

/// Removes a directory of pins and everything in it; a missing one is fine.
pub(crate) fn remove_pin_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The ids of kawrap's programs (any copy, any build: by name) attached
/// directly to the cgroup open as `cgroup` for `attach_type`.
pub(crate) fn kawrap_programs_on(cgroup: &File, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ours = Vec::new();
    for id in sys::prog_query(cgroup, attach_type)?.ids {
        if is_kawrap(id)? {
            ours.push(id);
        }
    }
    Ok(ours)
}

/// Whether the program with this id is one of kawrap's, by its name. Opening
/// a program by id needs CAP_SYS_ADMIN: without, an error, not "no".
pub(crate) fn is_kawrap(id: u32) -> io::Result<bool> {
    let program = match sys::prog_by_id(id) {
        Ok(program) => program,
        // Unloaded since it was listed.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(KERNEL_NAMES.contains(&sys::prog_info(program.as_fd())?.name.as_str()))
}
