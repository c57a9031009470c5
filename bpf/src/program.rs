//! Loading kawrap's BPF object, filling its configuration map and attaching
//! its two programs to a cgroup.
//!
//! The loader is aya rather than libbpf-rs: aya is pure Rust and reaches
//! the kernel through the bpf(2) system call itself, so building it needs no
//! C toolchain, no libbpf/libelf/zlib to link and no bindgen or vendored C
//! build; only the BPF object itself needs clang (see build.rs).
use std::fs::{self, File};
use std::path::Path;

use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{Array, Map, MapData};
use aya::{Ebpf, EbpfLoader};
use kawrap_core::Config;

use crate::error::Error;
use crate::fs as kfs;
use crate::maps::{COUNTER_SLOTS, Counters, RawConfig};
use crate::sys;

/// The object compiled by build.rs, aligned as aya's ELF parser requires.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kawrap.bpf.o"));

pub(crate) const SOCKOPS_PROGRAM: &str = "kawrap_sockops";
pub(crate) const SETSOCKOPT_PROGRAM: &str = "kawrap_setsockopt";
pub(crate) const CONFIG_MAP: &str = "kawrap_config";
pub(crate) const STATS_MAP: &str = "kawrap_stats";
const SOCKETS_MAP: &str = "kawrap_sockets";
/// The pin of the socket storage map all kawrap attachments share (see the
/// C source); versioned with `struct kawrap_sk`'s layout.
const SOCKETS_PIN: &str = "sockets-v1";

/// kawrap's programs, loaded into the kernel with their maps.
pub(crate) struct Loaded {
    ebpf: Ebpf,
    /// `kawrap_config` and `kawrap_stats`, taken out of `ebpf` so that the
    /// same functions serve them and the maps `attach` and `status` open
    /// by pin or id.
    config: Map,
    stats: Map,
}

/// The two attachments to one cgroup, as link fds. Closing them detaches
/// the programs, unless the links are pinned.
pub(crate) struct Links {
    pub(crate) sockops: OwnedFd,
    pub(crate) setsockopt: OwnedFd,
}

impl Loaded {
    /// Loads the object and writes `config` into its map.
    pub(crate) fn load(config: &Config) -> Result<Loaded, Error> {
        // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, whose
        // default (64 KiB) is too small for the maps; raising it is harmless
        // on newer kernels. Failure is left to the load to report.
        let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };

        let shared = kfs::pin_root()?;
        fs::create_dir_all(&shared).map_err(|e| Error::io(format!("create {}", shared.display()), e))?;
        let sockets = shared.join(SOCKETS_PIN);
        let load = || EbpfLoader::new().map_pin_path(SOCKETS_MAP, sockets.as_path()).load(OBJECT);
        // Two kawraps creating the shared map at once: one pin wins, the
        // other load fails and, retried, reuses it.
        let mut ebpf = load()
            .or_else(|e| if sockets.exists() { load() } else { Err(e) })
            .map_err(|e| Error::from_bpf("kawrap.bpf.o (maps)", &e))?;
        let mut config_map = ebpf.take_map(CONFIG_MAP).ok_or_else(|| missing(CONFIG_MAP))?;
        let stats = ebpf.take_map(STATS_MAP).ok_or_else(|| missing(STATS_MAP))?;
        write_config(&mut config_map, config)?;
        for name in [SOCKOPS_PROGRAM, SETSOCKOPT_PROGRAM] {
            let program = ebpf.program_mut(name).ok_or_else(|| missing(name))?;
            let result = match program {
                aya::programs::Program::SockOps(p) => p.load(),
                aya::programs::Program::CgroupSockopt(p) => p.load(),
                _ => return Err(missing(name)),
            };
            result.map_err(|e| Error::from_bpf(name, &e))?;
        }
        Ok(Loaded { ebpf, config: config_map, stats })
    }

    /// Attaches both programs to the cgroup directory `cgroup`, as BPF
    /// links next to any programs others attached there.
    pub(crate) fn attach(&mut self, cgroup: &Path) -> Result<Links, Error> {
        let dir =
            File::open(cgroup).map_err(|e| Error::NoSuchCgroup { path: cgroup.to_path_buf(), source: e })?;
        let link = |name: &str, attach_type: u32| -> Result<OwnedFd, Error> {
            let program = self.ebpf.program(name).ok_or_else(|| missing(name))?;
            let fd = program.fd().map_err(|e| Error::from_bpf(name, &e))?;
            sys::link_create(fd.as_fd(), &dir, attach_type)
                .map_err(|e| Error::from_bpf(&format!("{name} (attach to {})", cgroup.display()), &e))
        };
        let sockops = link(SOCKOPS_PROGRAM, sys::BPF_CGROUP_SOCK_OPS)?;
        let setsockopt = link(SETSOCKOPT_PROGRAM, sys::BPF_CGROUP_SETSOCKOPT)?;
        Ok(Links { sockops, setsockopt })
    }

    /// Pins the configuration and counter maps under `dir`.
    pub(crate) fn pin_maps(&self, dir: &Path) -> Result<(), Error> {
        for (map, name) in [(&self.config, CONFIG_MAP), (&self.stats, STATS_MAP)] {
            map.pin(dir.join(name)).map_err(|e| Error::from_bpf(name, &e))?;
        }
        Ok(())
    }

    /// The counters so far.
    pub(crate) fn counters(&self) -> Counters {
        read_stats(&self.stats)
    }

    /// Replaces the configuration; sockets connecting from now on get it.
    pub(crate) fn update(&mut self, config: &Config) -> Result<(), Error> {
        write_config(&mut self.config, config)
    }
}

fn missing(name: &str) -> Error {
    Error::KernelRefused { program: name.to_string(), detail: "not found in kawrap.bpf.o".to_string() }
}

/// Writes `config` into a configuration map: this loader's, or one opened
/// by pin (`Map::Array(MapData::from_pin(…))`).
pub(crate) fn write_config(map: &mut Map, config: &Config) -> Result<(), Error> {
    let mut array: Array<&mut MapData, RawConfig> =
        Array::try_from(map).map_err(|e| Error::from_bpf(CONFIG_MAP, &e))?;
    array.set(0, RawConfig::encode(config), 0).map_err(|e| Error::from_bpf(CONFIG_MAP, &e))
}

/// Reads a configuration map back.
pub(crate) fn read_config(map: &Map) -> Result<Config, String> {
    let array: Array<&MapData, RawConfig> = Array::try_from(map).map_err(|e| e.to_string())?;
    array.get(&0, 0).map_err(|e| e.to_string())?.decode()
}

/// Reads a counters map; unreadable slots count as 0.
pub(crate) fn read_stats(map: &Map) -> Counters {
    let Ok(array) = Array::<&MapData, u64>::try_from(map) else { return Counters::default() };
    let slots: Vec<u64> = (0..COUNTER_SLOTS).map(|i| array.get(&i, 0).unwrap_or(0)).collect();
    Counters::from_slots(&slots)
}
