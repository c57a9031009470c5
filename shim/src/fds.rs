//! What the shim knows about each file descriptor, in a fixed table of
//! atomics indexed by fd (zero pages until touched; no allocation, no lock).
//!
//! It remembers which keepalive options the *program* set itself (the
//! `respect` policy keeps them) and which profile the shim applied, so that
//! `connect()` does no syscall at all when nothing needs to change.
//! An entry is reset when `socket()` returns its number and forgotten at
//! `close()`, but only by the process that owns this memory: a vfork child
//! shares the table, not the descriptors, and its closes must not wipe the
//! parent's entries. A number reused without either (`dup2()`, a close
//! inside libc) may keep a stale entry, which is why the shim asks the
//! kernel with `getsockopt` that a descriptor is TCP before it writes to
//! one it did not just create.
use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicU16, Ordering};

use crate::options::OptionSet;
use crate::sys;

/// Descriptors below this are tracked (the default hard `RLIMIT_NOFILE`
/// ceiling, `nr_open`, is 2^20).
const TABLE_SIZE: usize = 1 << 20;

static TABLE: [AtomicU16; TABLE_SIZE] = [const { AtomicU16::new(0) }; TABLE_SIZE];

/// Bits 0..=4: options the program set itself (an [`OptionSet`]).
const PROGRAM_SET_MASK: u16 = 0x1f;
/// The socket is not TCP: never touch it.
const NOT_TCP: u16 = 1 << 5;
/// The shim applied a profile; bits 8..=15 say which.
const APPLIED: u16 = 1 << 6;
const CHOICE_SHIFT: u16 = 8;
/// The choice value meaning "the main profile" (rules are 0..32).
const CHOICE_PROFILE: u16 = 0xff;

/// A snapshot of one descriptor's entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry(u16);

/// Which profile was applied: `None` is the main profile, `Some(i)` rule i.
pub(crate) type Choice = Option<usize>;

impl Entry {
    pub(crate) const UNKNOWN: Entry = Entry(0);

    pub(crate) fn is_not_tcp(self) -> bool {
        self.0 & NOT_TCP != 0
    }

    /// The profile the shim last applied, if it applied one.
    pub(crate) fn applied(self) -> Option<Choice> {
        if self.0 & APPLIED == 0 {
            return None;
        }
        Some(match self.0 >> CHOICE_SHIFT {
            CHOICE_PROFILE => None,
            index => Some(usize::from(index)),
        })
    }

    /// Options the program set itself on this socket.
    pub(crate) fn program_set(self) -> OptionSet {
        OptionSet::from_bits((self.0 & PROGRAM_SET_MASK) as u8)
    }
}

fn slot(fd: c_int) -> Option<&'static AtomicU16> {
    usize::try_from(fd).ok().and_then(|index| TABLE.get(index))
}

pub(crate) fn get(fd: c_int) -> Entry {
    slot(fd).map_or(Entry::UNKNOWN, |slot| Entry(slot.load(Ordering::Relaxed)))
}

/// The process whose memory this table is: set when the shim loads and
/// in every fork child. A vfork child (or `posix_spawn`'s) runs in its
/// parent's memory without fork handlers, so it sees its parent's pid here.
static OWNER: AtomicI32 = AtomicI32::new(0);

extern "C" fn after_fork_in_child() {
    OWNER.store(sys::getpid() as i32, Ordering::Relaxed);
}

/// Records this process as the table's owner (from the constructor).
pub(crate) fn claim() {
    after_fork_in_child();
    // SAFETY: registering a handler that only stores an atomic; no other
    // precondition. A failure (ENOMEM) leaves fork children never
    // forgetting at close(), which is the safe direction.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
}

/// `close(fd)`: forget the entry, unless this is a vfork child writing
/// into its parent's table. Only entries holding the program's own
/// settings cost a syscall (getpid) to tell.
pub(crate) fn forget(fd: c_int) {
    let Some(slot) = slot(fd) else { return };
    let value = slot.load(Ordering::Relaxed);
    if value == 0 {
        return;
    }
    // Only the program's own option bits would be lost for good if a vfork
    // child wiped them; anything else the shim works out again with
    // getsockopt at the next use. So only those entries cost a getpid.
    if value & PROGRAM_SET_MASK == 0 {
        slot.store(0, Ordering::Relaxed);
        return;
    }
    let owner = OWNER.load(Ordering::Relaxed);
    if owner == 0 || i64::from(owner) == sys::getpid() {
        slot.store(0, Ordering::Relaxed);
    }
}

/// A new descriptor from `socket()`: forget what the number meant before.
pub(crate) fn reset(fd: c_int) {
    if let Some(slot) = slot(fd) {
        slot.store(0, Ordering::Relaxed);
    }
}

pub(crate) fn mark_not_tcp(fd: c_int) {
    if let Some(slot) = slot(fd) {
        slot.store(NOT_TCP, Ordering::Relaxed);
    }
}

/// Records that the shim applied `choice`, keeping the program's bits.
pub(crate) fn mark_applied(fd: c_int, choice: Choice) {
    let choice = match choice {
        None => CHOICE_PROFILE,
        Some(index) => index as u16 & 0xff,
    };
    if let Some(slot) = slot(fd) {
        let program_set = slot.load(Ordering::Relaxed) & PROGRAM_SET_MASK;
        slot.store(program_set | APPLIED | (choice << CHOICE_SHIFT), Ordering::Relaxed);
    }
}

/// Records options the program set itself.
pub(crate) fn mark_program_set(fd: c_int, options: OptionSet) {
    if let Some(slot) = slot(fd) {
        slot.fetch_or(u16::from(options.bits()), Ordering::Relaxed);
    }
}
