//! What the shim remembers about sockets: one 64-bit record per socket,
//! changed only with single atomic operations (no lock, no allocation).
//!
//! A record is (identity, state): the socket's identity (48 bits of its
//! SO_COOKIE, see `socket::identity`) and 16 bits saying which keepalive
//! options the program set itself, which profile the shim applied, whether
//! the socket is TCP or a listener, and whether a thread is writing one of
//! its options.
//!
//! Records live in a table indexed by descriptor number (zero pages until
//! touched), at the number the program used last for that socket. The
//! number only says where to look first: a record counts only if its
//! identity is the socket's the kernel names now, so an entry left behind
//! by a close the shim never saw (close_range, closefrom, fclose, `__close`,
//! a raw syscall, dup2 onto the number, a vfork child) is simply a record
//! of another socket, never trusted and never needing to be forgotten.
//! When the identity differs, the socket's record may be under another
//! number (dup, dup2, dup3, F_DUPFD, SCM_RIGHTS): it is looked for in the
//! table up to the highest number that ever held one, and moved to the
//! number in use — one record per socket, so what the program set through
//! one number holds through all (but see *fresh* marks below). A record
//! displaced by a new socket on its number goes to a small ring of orphans
//! first, where a duplicate that is used only later (dup, close the
//! original, open another socket) still finds it.
//!
//! A *fresh* mark (no identity) says "the shim created a TCP socket at this
//! number and gave it the profile; the program has set nothing since". It
//! costs no system call and is trusted only together with the kernel's
//! SO_KEEPALIVE, which the shim turned on (see `events`). A mark left by a
//! closed socket can be claimed by a duplicate of another one, which then
//! has a second record: before the shim turns keepalive back on, it gathers
//! them.
//!
//! Writes of the program and of the shim to the same socket from two
//! threads (a connect applying a rule while another thread sets
//! TCP_KEEPIDLE) are ordered through the record: before each write the
//! shim marks the record *writing*, only if the program has not set that
//! option; the program marks its option first, makes its call, and if the
//! mark it replaced showed a write in progress, waits for that write to
//! end and makes its call again — so the program's value is the last one.
//! Waiting is bounded: a mark that stays longer than a write could take is
//! one a fork copied from a thread the child does not have, and is cleared.
//! (While a record moves from one number to another, a third thread using
//! the same socket through yet another number at that instant may not find
//! it, and treats the socket as one it meets for the first time.)
use core::ffi::c_int;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kawrap_core::RuleIndex;

use crate::options::{KeepaliveOption, OptionSet};
use crate::socket::{IDENTITY_BITS, Identity};
use crate::sys;

/// Descriptors below this have a place (the default hard `RLIMIT_NOFILE`
/// ceiling, `nr_open`, is 2^20); sockets at higher numbers get no record.
const TABLE_SIZE: usize = 1 << 20;

static TABLE: [AtomicU64; TABLE_SIZE] = [const { AtomicU64::new(0) }; TABLE_SIZE];

/// The highest number that ever held a record: where a search stops.
static HIGHEST: AtomicUsize = AtomicUsize::new(0);

/// Records displaced from their number while their socket may live on
/// under another one, newest overwriting oldest.
const ORPHANS: usize = 64;
static ORPHAN: [AtomicU64; ORPHANS] = [const { AtomicU64::new(0) }; ORPHANS];
static NEXT_ORPHAN: AtomicUsize = AtomicUsize::new(0);

const IDENTITY: u64 = (1 << IDENTITY_BITS) - 1;
/// Bits 48..=52: the options the program set itself (an [`OptionSet`]).
const PROGRAM_SHIFT: u32 = IDENTITY_BITS;
/// Bits 53..=58: what the shim applied: 0 nothing, 1 the main profile,
/// 2 + i rule i.
const APPLIED_SHIFT: u32 = PROGRAM_SHIFT + 5;
const APPLIED: u64 = 0x3f << APPLIED_SHIFT;
// The last rule's code, 2 + (MAX_RULES - 1), fits: a longer rule list
// would need a wider field (with_applied would wrap silently).
const _: () = assert!((kawrap_core::MAX_RULES as u64) < APPLIED >> APPLIED_SHIFT);
const NOT_TCP: u64 = 1 << 59;
/// Created by the shim at this number, profile applied, identity not
/// asked (see the module docs).
const FRESH: u64 = 1 << 60;
/// A thread is writing one of this socket's options.
const WRITING: u64 = 1 << 61;
/// Flips with every write begun, so a waiting thread can tell the write it
/// saw from a later one.
const TURN: u64 = 1 << 62;

/// How long a thread waits for another's write before taking the mark for
/// stale: left by a thread that does not exist in this process (a fork
/// caught it writing). A live write is one setsockopt.
const STALE_WRITE_MS: i64 = 100;

/// One record, as read at one moment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record(u64);

impl Record {
    /// A TCP socket the shim has applied `applied` to (nothing: `None`).
    pub(crate) fn tcp(identity: Identity, applied: Option<RuleIndex>) -> Record {
        Record(identity & IDENTITY).with_applied(applied)
    }

    /// A socket the shim leaves alone.
    pub(crate) fn not_tcp(identity: Identity) -> Record {
        Record((identity & IDENTITY) | NOT_TCP)
    }

    fn identity(self) -> Identity {
        self.0 & IDENTITY
    }

    pub(crate) fn is_tcp(self) -> bool {
        self.0 & NOT_TCP == 0
    }

    /// The options the program set itself.
    pub(crate) fn program_set(self) -> OptionSet {
        OptionSet::from_bits((self.0 >> PROGRAM_SHIFT) as u8)
    }

    /// The profile the shim applied: `Some(None)` the main one,
    /// `Some(Some(i))` rule i; `None` if it applied none.
    pub(crate) fn applied(self) -> Option<RuleIndex> {
        match (self.0 & APPLIED) >> APPLIED_SHIFT {
            0 => None,
            1 => Some(None),
            rule => Some(Some(rule as usize - 2)),
        }
    }

    fn with_applied(self, applied: Option<RuleIndex>) -> Record {
        let code = match applied {
            None => 0,
            Some(None) => 1,
            Some(Some(rule)) => rule as u64 + 2,
        };
        Record((self.0 & !APPLIED) | ((code << APPLIED_SHIFT) & APPLIED))
    }

    /// This record with `options` added to the program's.
    pub(crate) fn with_program_set(self, options: OptionSet) -> Record {
        Record(self.0 | (u64::from(options.bits()) << PROGRAM_SHIFT))
    }

    fn without_program_set(self, options: OptionSet) -> Record {
        Record(self.0 & !(u64::from(options.bits()) << PROGRAM_SHIFT))
    }

    fn is_fresh(self) -> bool {
        self.0 & FRESH != 0
    }

    pub(crate) fn writing(self) -> bool {
        self.0 & WRITING != 0
    }

    fn turn(self) -> bool {
        self.0 & TURN != 0
    }
}

fn slot(fd: c_int) -> Option<&'static AtomicU64> {
    usize::try_from(fd).ok().and_then(|index| TABLE.get(index))
}

fn load(slot: &AtomicU64) -> Record {
    Record(slot.load(Ordering::Acquire))
}

fn swap(slot: &AtomicU64, old: Record, new: Record) -> bool {
    slot.compare_exchange(old.0, new.0, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// `socket()` or `accept()` gave the shim a TCP socket at `fd` that it
/// configured: mark the number fresh.
pub(crate) fn mark_fresh(fd: c_int) {
    if let Some(slot) = slot(fd) {
        let old = Record(slot.swap(FRESH, Ordering::AcqRel));
        displaced(old, 0);
    }
}

/// A socket the shim did not configure is at `fd`: the fresh mark, if
/// any, is about an earlier one.
pub(crate) fn forget_fresh(fd: c_int) {
    if let Some(slot) = slot(fd) {
        let old = load(slot);
        if old.is_fresh() {
            swap(slot, old, Record(0));
        }
    }
}

/// Keeps a record pushed out of its number by another socket's, in case
/// its socket lives on under another number.
fn displaced(old: Record, by: Identity) {
    if old.identity() != 0 && old.identity() != by && old.is_tcp() {
        let index = NEXT_ORPHAN.fetch_add(1, Ordering::Relaxed) % ORPHANS;
        ORPHAN[index].store(old.0 & !WRITING, Ordering::Release);
    }
}

/// Where the record of socket `identity` stands, seen from number `fd`.
pub(crate) enum Place {
    /// At `fd`.
    Here(Handle),
    /// `fd` holds a fresh mark (which may or may not be about this socket).
    Fresh,
    /// Not at `fd`.
    Elsewhere,
}

/// Looks at `fd` only (no search).
pub(crate) fn at(fd: c_int, identity: Identity) -> Place {
    let Some(slot) = slot(fd) else { return Place::Elsewhere };
    let record = load(slot);
    if record.identity() == identity {
        Place::Here(Handle { slot, identity })
    } else if record.is_fresh() {
        Place::Fresh
    } else {
        Place::Elsewhere
    }
}

/// The record of socket `identity`, moved to `fd` if it was under another
/// number or among the orphans; `None` if the shim has none.
pub(crate) fn find(fd: c_int, identity: Identity) -> Option<Handle> {
    match at(fd, identity) {
        Place::Here(handle) => Some(handle),
        Place::Fresh | Place::Elsewhere => relocate(fd, identity),
    }
}

fn relocate(fd: c_int, identity: Identity) -> Option<Handle> {
    let slot = slot(fd)?;
    let highest = HIGHEST.load(Ordering::Relaxed).min(TABLE_SIZE - 1);
    let here = fd as usize;
    let record = TABLE[..=highest]
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != here)
        .map(|(_, other)| other)
        .chain(ORPHAN.iter())
        .find_map(|other| take(other, identity))?;
    Some(place(slot, fd, record))
}

/// Removes socket `identity`'s record from `slot`, once no write is in
/// progress on it (a record moves with its marks, never mid-write).
fn take(slot: &AtomicU64, identity: Identity) -> Option<Record> {
    loop {
        let record = load(slot);
        if record.identity() != identity {
            return None;
        }
        if record.writing() {
            wait_for_write(slot, record);
        } else if swap(slot, record, Record(0)) {
            return Some(record);
        }
    }
}

/// Puts `record` at `fd`: a record of the same socket already there (two
/// threads found it at once) keeps both's program options.
fn place(slot: &'static AtomicU64, fd: c_int, record: Record) -> Handle {
    let identity = record.identity();
    loop {
        let old = load(slot);
        let new =
            if old.identity() == identity { old.with_program_set(record.program_set()) } else { record };
        if swap(slot, old, new) {
            displaced(old, identity);
            break;
        }
    }
    note_highest(fd);
    Handle { slot, identity }
}

fn note_highest(fd: c_int) {
    let index = fd as usize;
    if index > HIGHEST.load(Ordering::Relaxed) {
        HIGHEST.fetch_max(index, Ordering::Relaxed);
    }
}

/// Records `record` at `fd` for a socket the shim has no record of, unless
/// another thread did so meanwhile; `None` above the table's end.
pub(crate) fn create(fd: c_int, record: Record) -> Option<Handle> {
    Some(place(slot(fd)?, fd, record))
}

/// Turns the fresh mark at `fd` into the record of socket `identity`: the
/// main profile applied, nothing set by the program. The caller has checked
/// with the kernel that the socket there is one the shim configured.
///
/// No search (a scan of the table at every first keepalive setsockopt of a
/// program): the mark may be a closed socket's, and the socket at `fd` now
/// a duplicate of one recorded under another number. Such a socket has two
/// records until [`gather`] merges them.
pub(crate) fn claim_fresh(fd: c_int, identity: Identity) -> Option<Handle> {
    let slot = slot(fd)?;
    let old = load(slot);
    if old.is_fresh() && swap(slot, old, Record::tcp(identity, Some(None))) {
        note_highest(fd);
        return Some(Handle { slot, identity });
    }
    find(fd, identity)
}

/// The record of socket `identity` at `fd` with every other record of the
/// same socket merged into it (see [`claim_fresh`]): a search of the table,
/// for the rare decisions that depend on all the program set.
pub(crate) fn gather(fd: c_int, identity: Identity) -> Option<Record> {
    while relocate(fd, identity).is_some() {}
    match at(fd, identity) {
        Place::Here(handle) => handle.record(),
        Place::Fresh | Place::Elsewhere => None,
    }
}

/// Waits, yielding the processor, until the write `seen` showed in `slot`
/// is over; a mark older than [`STALE_WRITE_MS`] is cleared instead.
fn wait_for_write(slot: &AtomicU64, seen: Record) {
    let mut deadline = None;
    for round in 1u32.. {
        let now = load(slot);
        if now.identity() != seen.identity() || !now.writing() || now.turn() != seen.turn() {
            return;
        }
        sys::yield_now();
        if round % 64 == 0 {
            // A clock that cannot be read ends the wait at once.
            let ms = sys::clock(libc::CLOCK_MONOTONIC).map_or(i64::MAX, |(secs, nanos)| {
                secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
            });
            match deadline {
                None => deadline = Some(ms.saturating_add(STALE_WRITE_MS)),
                Some(limit) if ms >= limit => {
                    swap(slot, now, Record(now.0 & !WRITING));
                    return;
                }
                Some(_) => {}
            }
        }
    }
}

/// The record of one socket, reached through the number the program is
/// using for it.
#[derive(Clone, Copy)]
pub(crate) struct Handle {
    slot: &'static AtomicU64,
    identity: Identity,
}

/// What to do with a record, decided from its current value.
enum Change {
    Leave,
    Wait,
    To(Record),
}

impl Handle {
    /// The record now; `None` if it left this number (the number was closed
    /// and reused meanwhile, by another thread).
    pub(crate) fn record(&self) -> Option<Record> {
        let record = load(self.slot);
        (record.identity() == self.identity).then_some(record)
    }

    /// Applies `change` atomically; returns the record before and after.
    fn change(&self, mut change: impl FnMut(Record) -> Change) -> Option<(Record, Record)> {
        loop {
            let old = self.record()?;
            match change(old) {
                Change::Leave => return Some((old, old)),
                Change::Wait => wait_for_write(self.slot, old),
                Change::To(new) => {
                    if swap(self.slot, old, new) {
                        return Some((old, new));
                    }
                }
            }
        }
    }

    /// Marks `option` as the program's; returns the record as it was.
    pub(crate) fn add_program_option(&self, option: KeepaliveOption) -> Option<Record> {
        let only = OptionSet::only(option);
        self.change(|record| Change::To(record.with_program_set(only))).map(|(old, _)| old)
    }

    /// Unmarks `option` (the program's call failed: it set nothing).
    pub(crate) fn remove_program_option(&self, option: KeepaliveOption) {
        let only = OptionSet::only(option);
        self.change(|record| Change::To(record.without_program_set(only)));
    }

    /// Marks every option as the program's: whoever made the socket chose
    /// its keepalive settings before the shim met it.
    pub(crate) fn keep_all(&self) {
        self.change(|record| Change::To(record.with_program_set(OptionSet::ALL)));
    }

    /// Waits until the write `seen` showed is over.
    pub(crate) fn wait_for_write(&self, seen: Record) {
        wait_for_write(self.slot, seen);
    }

    /// Begins the shim's write of `option`. `None` if the write must not
    /// happen: the program set that option itself and `respect_program`,
    /// or the record is gone. Otherwise the record as marked; the caller
    /// writes and calls [`Handle::end_write`].
    pub(crate) fn begin_write(&self, option: KeepaliveOption, respect_program: bool) -> Option<Record> {
        let (old, new) = self.change(|record| {
            if respect_program && record.program_set().contains(option) {
                Change::Leave
            } else if record.writing() {
                Change::Wait
            } else {
                Change::To(Record((record.0 | WRITING) ^ TURN))
            }
        })?;
        (old != new).then_some(new)
    }

    pub(crate) fn end_write(&self) {
        self.change(
            |record| if record.writing() { Change::To(Record(record.0 & !WRITING)) } else { Change::Leave },
        );
    }

    /// Records that the socket has profile `applied` now; returns the one
    /// it had (`None`: none, or the record is gone).
    pub(crate) fn set_applied(&self, applied: RuleIndex) -> Option<RuleIndex> {
        let (old, _) = self.change(|record| Change::To(record.with_applied(Some(applied))))?;
        old.applied()
    }
}
