//! The shim's own calls to the kernel and to libc, apart from the hooked
//! functions themselves (those are in `real`).
//!
//! The shim's socket-option and file work is done with raw system calls:
//! they can never re-enter a hook, and on x86_64 they never touch `errno`
//! (the instruction is issued directly), so what the program sees in
//! `errno` is always what its own call left there. Every call here is one
//! an ordinary networking program makes (get/setsockopt, fstat, the log
//! file's open/write/close, clock_gettime, sched_yield, prctl); none reads
//! another process's memory, so a seccomp allow-list of a hardened service
//! has no reason to refuse them.
use core::ffi::{c_char, c_int, c_long, c_void};

/// An errno value, as returned by a failed call.
pub(crate) type Errno = c_int;

/// `syscall(number, args…)`: `Ok(result)` or `Err(errno)`, with the
/// thread's `errno` left alone.
///
/// # Safety
/// The arguments must be what that system call expects; pointers must
/// describe live memory of the size the call uses.
#[cfg(target_arch = "x86_64")]
unsafe fn syscall(number: c_long, args: [usize; 6]) -> Result<usize, Errno> {
    let result: isize;
    // SAFETY: the x86_64 Linux system call convention; rcx and r11 are
    // clobbered by the instruction, memory may be read and written.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    // -4095..=-1 are errors, as the kernel reports them.
    if (-4095..0).contains(&result) { Err(-result as Errno) } else { Ok(result as usize) }
}

/// Elsewhere through libc's `syscall(2)`, restoring `errno` afterwards.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn syscall(number: c_long, args: [usize; 6]) -> Result<usize, Errno> {
    let saved = errno();
    // SAFETY: as the caller promises.
    let result = unsafe { libc::syscall(number, args[0], args[1], args[2], args[3], args[4], args[5]) };
    let outcome = if result == -1 { Err(errno()) } else { Ok(result as usize) };
    set_errno(saved);
    outcome
}

pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Keeps `errno` as it was when created, whatever happens until it drops:
/// for the few libc calls the shim makes itself (reading the environment,
/// resolving symbols) and for a program's call the shim repeats.
pub(crate) struct ErrnoGuard(c_int);

impl ErrnoGuard {
    pub(crate) fn save() -> Self {
        ErrnoGuard(errno())
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
pub(crate) fn set_int_option(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), Errno> {
    let size = core::mem::size_of::<c_int>();
    // SAFETY: the value pointer and length describe a live c_int.
    unsafe {
        syscall(
            libc::SYS_setsockopt,
            [fd as usize, level as usize, name as usize, &value as *const c_int as usize, size, 0],
        )
    }
    .map(drop)
}

/// `getsockopt` of an option of type `T` (an int, or SO_COOKIE's u64).
fn get_option<T: Copy + Default>(fd: c_int, level: c_int, name: c_int) -> Result<T, Errno> {
    let mut value = T::default();
    let mut size = core::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: value and size are live, and size is value's size.
    unsafe {
        syscall(
            libc::SYS_getsockopt,
            [
                fd as usize,
                level as usize,
                name as usize,
                &mut value as *mut T as usize,
                &mut size as *mut libc::socklen_t as usize,
                0,
            ],
        )
    }?;
    Ok(value)
}

pub(crate) fn get_int_option(fd: c_int, level: c_int, name: c_int) -> Result<c_int, Errno> {
    get_option(fd, level, name)
}

pub(crate) fn get_u64_option(fd: c_int, level: c_int, name: c_int) -> Result<u64, Errno> {
    get_option(fd, level, name)
}

/// `fstat(fd)`: (file type bits of st_mode, inode number).
pub(crate) fn file_type_and_inode(fd: c_int) -> Result<(u32, u64), Errno> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut stat: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: stat is live and of the kernel's struct stat layout.
    unsafe { syscall(libc::SYS_fstat, [fd as usize, &mut stat as *mut libc::stat as usize, 0, 0, 0, 0]) }?;
    Ok((stat.st_mode & libc::S_IFMT, stat.st_ino))
}

/// Gives the processor to another thread (while waiting for one).
pub(crate) fn yield_now() {
    // SAFETY: sched_yield takes no arguments and cannot fail.
    let _ = unsafe { syscall(libc::SYS_sched_yield, [0; 6]) };
}

/// `clock_gettime(clock)` as (seconds, nanoseconds); `None` if the clock
/// cannot be read.
///
/// Through libc, which reads the clock from the vDSO without a system
/// call: a sandbox that allows only what ordinary programs do may not list
/// the clock_gettime system call (programs never make it), and an answer of
/// EPERM there must not leave a bounded wait unbounded.
pub(crate) fn clock(clock: libc::clockid_t) -> Option<(i64, i64)> {
    let _errno = ErrnoGuard::save();
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: time is a live timespec.
    let result = unsafe { libc::clock_gettime(clock, &mut time) };
    (result == 0).then_some((time.tv_sec, time.tv_nsec))
}

/// The running kernel's version as (major, minor), from uname(2); `None`
/// if it cannot be read.
pub(crate) fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: an all-zero utsname is a valid value to be overwritten.
    let mut names: libc::utsname = unsafe { core::mem::zeroed() };
    // SAFETY: names is live and of the kernel's struct utsname layout.
    unsafe { syscall(libc::SYS_uname, [&mut names as *mut libc::utsname as usize, 0, 0, 0, 0, 0]) }.ok()?;
    // "6.18.44-fc-v1147": digits, a dot, digits.
    let release = names.release.map(|c| c as u8);
    let mut parts = release.split(|&b| b == b'.' || b == b'-' || b == 0);
    let mut number = || -> Option<u32> {
        let digits = parts.next()?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits.iter().try_fold(0u32, |n, d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
    };
    Some((number()?, number()?))
}

pub(crate) fn getpid() -> i64 {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { syscall(libc::SYS_getpid, [0; 6]) }.map_or(0, |pid| pid as i64)
}

/// The calling thread's name (`comm`, as `ps` shows it): up to 15 bytes.
pub(crate) fn thread_name() -> ([u8; 16], usize) {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included.
    let _ = unsafe {
        syscall(libc::SYS_prctl, [libc::PR_GET_NAME as usize, name.as_mut_ptr() as usize, 0, 0, 0, 0])
    };
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    (name, len)
}

/// The environment variable's bytes, or `None` if unset — always `None` in
/// a setuid/setgid/capability (AT_SECURE) process.
pub(crate) fn secure_env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    unsafe extern "C" {
        // Not declared by the libc crate for glibc; present since glibc
        // 2.17 and in musl.
        fn secure_getenv(name: *const c_char) -> *mut c_char;
    }
    // SAFETY: name is NUL-terminated; the returned pointer, if not null,
    // points into the environment block, NUL-terminated.
    unsafe {
        let value = secure_getenv(name.as_ptr());
        if value.is_null() { None } else { Some(core::ffi::CStr::from_ptr(value).to_bytes()) }
    }
}

/// True in a process the loader treats as privileged (setuid, setgid,
/// file capabilities): there the shim never opens a file.
pub(crate) fn is_secure_process() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// A descriptor of the shim's own, closed when dropped.
struct OwnFd(usize);

impl Drop for OwnFd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this module opened.
        let _ = unsafe { syscall(libc::SYS_close, [self.0, 0, 0, 0, 0, 0]) };
    }
}

fn is_regular(stat: &libc::stat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Appends `line` to the regular file at `path` (absolute, NUL-terminated):
/// opened, written with one `write(2)` (O_APPEND keeps concurrent lines
/// whole) and closed again, so no descriptor of ours lives in the program
/// (a daemon that closes all fds, or reuses the number, can't be confused).
///
/// What is refused, silently:
/// - a symbolic link as the last component, even a dangling one
///   (O_NOFOLLOW): someone who can write the log's directory must not make
///   the program append to, or create, a file of their choosing;
/// - anything but a regular file, checked before opening (opening a device
///   can have effects of its own) and again on the open descriptor: a FIFO
///   nobody reads would block the program (hence also O_NONBLOCK), a
///   terminal or pipe would put our text on the program's output;
/// - a write past `ulimit -f`, which would kill the program with SIGXFSZ:
///   a log at the limit stops growing instead.
pub(crate) fn append_to_file(path: &[u8], line: &[u8]) {
    let flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_CLOEXEC
        | libc::O_NOCTTY
        | libc::O_NONBLOCK
        | libc::O_NOFOLLOW;
    let at_cwd = libc::AT_FDCWD as isize as usize;
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut stat: libc::stat = unsafe { core::mem::zeroed() };
    let stat_out = &mut stat as *mut libc::stat as usize;
    // SAFETY: path is NUL-terminated (checked by the caller), stat is live.
    let before = unsafe {
        syscall(
            libc::SYS_newfstatat,
            [at_cwd, path.as_ptr() as usize, stat_out, libc::AT_SYMLINK_NOFOLLOW as usize, 0, 0],
        )
    };
    if before.is_ok() && !is_regular(&stat) {
        return;
    }
    // SAFETY: as above; the descriptor is ours and closed by OwnFd.
    let Ok(opened) =
        (unsafe { syscall(libc::SYS_openat, [at_cwd, path.as_ptr() as usize, flags as usize, 0o600, 0, 0]) })
    else {
        return;
    };
    let mut fd = OwnFd(opened);
    // If fd 0, 1 or 2 were closed, open(2) reuses them; move ours out of
    // the way so nothing the shim writes ever lands on a standard stream
    // number, even momentarily.
    if fd.0 <= 2 {
        // SAFETY: duplicating our own descriptor.
        let Ok(moved) =
            (unsafe { syscall(libc::SYS_fcntl, [fd.0, libc::F_DUPFD_CLOEXEC as usize, 3, 0, 0, 0]) })
        else {
            return;
        };
        fd = OwnFd(moved);
    }
    let mut limit = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    let limit_out = &mut limit as *mut libc::rlimit as usize;
    // SAFETY: stat and limit are live; prlimit64(0, …, NULL, out) only reads.
    let fits = unsafe {
        syscall(libc::SYS_fstat, [fd.0, stat_out, 0, 0, 0, 0]).is_ok()
            && is_regular(&stat)
            && syscall(libc::SYS_prlimit64, [0, libc::RLIMIT_FSIZE as usize, 0, limit_out, 0, 0]).is_ok()
    } && (limit.rlim_cur == libc::RLIM_INFINITY
        || (stat.st_size as u64).saturating_add(line.len() as u64) <= limit.rlim_cur);
    if fits {
        // SAFETY: line is live for its length.
        let _ = unsafe { syscall(libc::SYS_write, [fd.0, line.as_ptr() as usize, line.len(), 0, 0, 0]) };
    }
}

/// Reads `length` bytes at `address` into `buffer` (at most its size).
///
/// # Safety
/// Only for memory the kernel has just read successfully in the program's
/// own call (its address argument): the program's contract with that call
/// already says it is readable.
pub(crate) unsafe fn copy_accepted<const N: usize>(
    address: *const c_void,
    length: usize,
) -> ([u8; N], usize) {
    let mut buffer = [0u8; N];
    let length = length.min(N);
    // SAFETY: as the caller promises, `length` bytes at address are readable.
    unsafe { core::ptr::copy_nonoverlapping(address as *const u8, buffer.as_mut_ptr(), length) };
    (buffer, length)
}
