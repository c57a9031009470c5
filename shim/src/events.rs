//! What the shim does when the program creates, connects, listens on,
//! accepts from or configures a socket. The hooks call these after (or,
//! for the program's own setsockopt, around) the real call.
//!
//! Two ways of keeping track, chosen by the configuration:
//! - **One profile, `respect`** (the default): a connect's decision can be
//!   made from the kernel's SO_KEEPALIVE. The shim turns it on for every TCP
//!   socket it creates; a socket that has it on at connect was configured by
//!   the shim, by the program, or by whoever made it (respect keeps all
//!   three), and is left alone. Only a socket with it off — one the shim
//!   did not create, or whose program turned keepalive off — is looked at
//!   further (TCP? the program's own choice, from its record?). So
//!   `socket()` makes no call of its own and `connect()` one getsockopt;
//!   the shim's socket() marks the number *fresh* (no identity asked), which
//!   the program's first keepalive setsockopt claims once the kernel shows
//!   SO_KEEPALIVE on.
//! - **Rules, or `force`**: the shim must know which profile each socket
//!   got (a connect may need a rule's, force puts back the one it got). It
//!   records each socket's identity at `socket()` and `accept()` (one
//!   getsockopt) and finds the record again by identity at `connect()` (one
//!   more).
//!
//! The program's own setsockopt of a keepalive option costs one getsockopt
//! (the identity), two the first time on a fresh number.
//!
//! A socket the shim meets for the first time (made by a raw syscall,
//! received from another process, inherited): under `respect`, SO_KEEPALIVE
//! already on means whoever made it chose its keepalive settings, and they
//! stand; off, it gets the profile (or its destination's rule) like any
//! socket. Under `force` it gets the profile either way.
//!
//! Options are set after the kernel accepted the program's call, so the
//! shim never looks at an address the kernel would refuse (a bad pointer
//! gets the kernel's EFAULT). Keepalive timers start when the connection
//! is established, which a blocking connect has already reached: the new
//! values re-arm them. A rule's TCP_USER_TIMEOUT therefore governs the
//! handshake only of non-blocking connects; the main profile's, set at
//! `socket()`, always does.
//!
//! Listeners: `listen()` gives one the profile (once: a socket with a
//! destination's rule keeps it); `accept()` finds the listener's record by
//! its identity (one getsockopt), and a connection from a configured
//! listener needs nothing more: the kernel copied the options. Listeners
//! inherited from a parent (systemd socket activation, inetd) are never
//! changed: another process holds them too. A connection accepted from one gets the profile itself,
//! unless the listener had keepalive on (systemd's `KeepAlive=`): under
//! `respect` that choice is inherited as it is; under `force` the profile
//! replaces it.
use core::ffi::c_int;

use kawrap_core::{Config, KeepaliveProfile, Policy, RuleIndex};

use crate::config::Loaded;
use crate::log::{self, Event};
use crate::options::{Applied, KeepaliveOption, OptionSet};
use crate::records::{self, Handle, Place, Record};
use crate::socket::{self, Identity};
use crate::sys::ErrnoGuard;

/// True when the shim records every socket it creates (see module docs).
fn records_every_socket(config: &Config) -> bool {
    config.policy == Policy::Force || !config.rules.is_empty()
}

fn respects_program(config: &Config) -> bool {
    config.policy == Policy::Respect
}

fn profile_of(config: &Config, choice: RuleIndex) -> &KeepaliveProfile {
    match choice.and_then(|index| config.rules.as_slice().get(index)) {
        Some(rule) => rule.profile(),
        None => &config.profile,
    }
}

/// Sets `profile` on a socket no other thread can reach yet (the shim
/// holds the only knowledge of its number): `socket()` and `accept()`.
fn apply_new(fd: c_int, profile: &KeepaliveProfile, keep: OptionSet) -> Applied {
    let mut applied = Applied { kept: keep, ..Applied::default() };
    for option in KeepaliveOption::ALL {
        if let Some(value) = option.value_in(profile).filter(|_| !keep.contains(option)) {
            applied.record(option, option.set(fd, value));
        }
    }
    applied
}

/// Sets profile `choice` on a socket the program may be using from other
/// threads, one option at a time through its record (see `records`): an
/// option the program set itself is kept under `respect`, and the
/// program's concurrent writes come last.
fn apply_shared(
    loaded: &Loaded,
    config: &Config,
    fd: c_int,
    handle: Handle,
    choice: RuleIndex,
    event: Event,
) {
    let profile = profile_of(config, choice);
    // Recorded before the first write: a `force` put-back in another thread
    // (see `put_back`) then puts back this profile's values.
    let previous = handle.set_applied(choice);
    // A rule without a user timeout replacing a profile with one: the
    // kernel's default (0, off) is what this destination asked for.
    let clear_user_timeout =
        previous.is_some_and(|previous| profile_of(config, previous).user_timeout_ms().is_some());
    let mut applied = Applied::default();
    for option in KeepaliveOption::ALL {
        let value = match option.value_in(profile) {
            Some(value) => value,
            None if option == KeepaliveOption::UserTimeout && clear_user_timeout => 0,
            None => continue,
        };
        if handle.begin_write(option, respects_program(config)).is_none() {
            applied.kept.insert(option);
            continue;
        }
        applied.record(option, option.set(fd, value));
        handle.end_write();
    }
    log::applied(&loaded.log, fd, event, choice, profile, &applied);
}

/// `socket()` returned `fd`.
pub(crate) fn created(loaded: &Loaded, fd: c_int, domain: c_int, kind: c_int, protocol: c_int) {
    let Some(config) = &loaded.config else { return };
    if !socket::creates_tcp(domain, kind, protocol) {
        records::forget_fresh(fd);
        return;
    }
    let applied = apply_new(fd, &config.profile, OptionSet::EMPTY);
    remember_new(fd, records_every_socket(config), OptionSet::EMPTY);
    log::applied(&loaded.log, fd, Event::Socket, None, &config.profile, &applied);
}

/// Remembers the TCP socket `socket()` or `accept()` just gave at `fd`:
/// by its identity (one getsockopt) when `by_identity`, with `program_set`
/// as the program's own options; else as a fresh mark, at no cost.
fn remember_new(fd: c_int, by_identity: bool, program_set: OptionSet) {
    if !by_identity {
        records::mark_fresh(fd);
    } else if let Some(identity) = socket::identity(fd) {
        records::create(fd, Record::tcp(identity, Some(None)).with_program_set(program_set));
    }
}

/// Makes the record of a socket the shim meets for the first time; `None`
/// if it is not TCP (or has no place in the table). Under `respect`, one
/// with keepalive already on was configured by whoever made it: all its
/// options are kept, and the second value is true.
fn meet(
    loaded: &Loaded,
    config: &Config,
    fd: c_int,
    identity: Identity,
    event: Event,
) -> Option<(Handle, bool)> {
    if !socket::is_tcp(fd) {
        records::create(fd, Record::not_tcp(identity));
        return None;
    }
    let handle = records::create(fd, Record::tcp(identity, None))?;
    let configured = respects_program(config) && socket::keepalive_on(fd) == Some(true);
    if configured {
        handle.keep_all();
        let applied = Applied { kept: OptionSet::ALL, ..Applied::default() };
        log::applied(&loaded.log, fd, event, None, &config.profile, &applied);
    }
    Some((handle, configured))
}

/// The record of a socket the shim has none of, made now: the socket is
/// settled the way the module docs say. `None` if it is not TCP (or has
/// no place in the table).
fn first_meeting(
    loaded: &Loaded,
    config: &Config,
    fd: c_int,
    identity: Identity,
    event: Event,
) -> Option<Handle> {
    let (handle, configured) = meet(loaded, config, fd, identity, event)?;
    if !configured {
        let choice = config.profile_for(event.destination().as_ref()).0;
        apply_shared(loaded, config, fd, handle, choice, event);
    }
    Some(handle)
}

/// The record of the TCP socket at `fd`, however the shim knew it, or
/// made at this first meeting; `None` for anything else.
fn tcp_record(
    loaded: &Loaded,
    config: &Config,
    fd: c_int,
    identity: Identity,
    event: Event,
) -> Option<Handle> {
    match records::find(fd, identity) {
        Some(handle) => handle.record().filter(|r| r.is_tcp()).map(|_| handle),
        None => first_meeting(loaded, config, fd, identity, event),
    }
}

/// The kernel accepted a connect of `fd` (`event` says how, and where to).
pub(crate) fn connected(loaded: &Loaded, fd: c_int, event: Event) {
    let Some(config) = &loaded.config else { return };
    let every = records_every_socket(config);
    let dest = event.destination();
    if !every && (socket::keepalive_on(fd) != Some(false) || !socket::is_tcp(fd)) {
        // Keepalive on: nothing is owed (see module docs).
        return;
    }
    if every && dest.is_none() {
        // Not an IPv4/IPv6 destination (AF_UNSPEC dissolves a connection).
        return;
    }
    let Some(identity) = socket::identity(fd) else { return };
    let Some(handle) = records::find(fd, identity) else {
        first_meeting(loaded, config, fd, identity, event);
        return;
    };
    let Some(record) = handle.record().filter(|r| r.is_tcp()) else { return };
    let choice = config.profile_for(dest.as_ref()).0;
    let needed = if every {
        // A destination may call for another profile than socket() gave.
        record.applied() != Some(choice)
    } else {
        // Keepalive is off: only the program's own SO_KEEPALIVE=0 stands.
        !program_set_keepalive(fd, identity, record)
    };
    if needed {
        apply_shared(loaded, config, fd, handle, choice, event);
    }
}

/// Whether the program set SO_KEEPALIVE itself on the socket at `fd`, as
/// `record` or another record of the socket says (see `records::gather`).
fn program_set_keepalive(fd: c_int, identity: Identity, record: Record) -> bool {
    let set = |record: Record| record.program_set().contains(KeepaliveOption::Enable);
    set(record) || records::gather(fd, identity).is_some_and(set)
}

/// `listen()` succeeded on `fd`: the listener gets the profile once (and a
/// socket with a destination's rule keeps it).
pub(crate) fn listening(loaded: &Loaded, fd: c_int) {
    let Some(config) = &loaded.config else { return };
    let Some(identity) = socket::identity(fd) else { return };
    if claim_fresh_mark(fd, identity).is_some() {
        // The shim's own socket, with the profile since socket().
        return;
    }
    let Some(handle) = records::find(fd, identity) else {
        first_meeting(loaded, config, fd, identity, Event::Listen);
        return;
    };
    let Some(record) = handle.record().filter(|r| r.is_tcp()) else { return };
    let needed = if records_every_socket(config) {
        record.applied().is_none()
    } else {
        // As at connect: keepalive off, and not by the program's choice.
        !program_set_keepalive(fd, identity, record) && socket::keepalive_on(fd) == Some(false)
    };
    if needed {
        apply_shared(loaded, config, fd, handle, None, Event::Listen);
    }
}

/// Whether `connected` needs the connect's destination: only where the
/// shim records every socket (with rules, a destination picks the profile).
pub(crate) fn wants_destination(loaded: &Loaded) -> bool {
    loaded.config.as_ref().is_some_and(records_every_socket)
}

/// `accept()` on `listener` returned `fd`: a connection from a listener
/// the shim configured has the profile already (the kernel copied it); one
/// from a listener it never configured gets it here.
///
/// The listener is looked up by its identity at every accept, like any
/// socket at any event (one getsockopt): its number may have changed hands
/// behind libc's back since the shim last met it, and a record of another
/// socket is never trusted.
pub(crate) fn accepted(loaded: &Loaded, listener: c_int, fd: c_int) {
    let Some(config) = &loaded.config else { return };
    let every = records_every_socket(config);
    let Some(listener) = listener_record(loaded, config, listener) else {
        if !every {
            records::forget_fresh(fd);
        }
        return;
    };
    let keep = if respects_program(config) { listener.program_set() } else { OptionSet::EMPTY };
    // The connection inherits the listener's options, the program's own
    // among them. Without rules a fresh mark would stand for the shim's
    // profile, which a listener whose SO_KEEPALIVE the program set (off,
    // maybe) did not pass on: such a connection is recorded by identity.
    remember_new(fd, every || keep.contains(KeepaliveOption::Enable), keep);
    // Configured by the shim; or, under respect, keepalive turned off by the
    // program, or configured by whoever made the listener.
    if listener.applied().is_some() || keep.contains(KeepaliveOption::Enable) {
        return;
    }
    let applied = apply_new(fd, &config.profile, keep);
    log::applied(&loaded.log, fd, Event::Accept, None, &config.profile, &applied);
}

/// The record of the listener at `listener`, if it is TCP: the shim's, or
/// else made now (see `accepted`), without changing the listener itself —
/// other processes may hold it too. Under `respect`, a listener with
/// keepalive on was configured by whoever made it, and that stands.
fn listener_record(loaded: &Loaded, config: &Config, listener: c_int) -> Option<Record> {
    let identity = socket::identity(listener)?;
    let handle = match records::find(listener, identity) {
        Some(handle) => handle,
        None => meet(loaded, config, listener, identity, Event::Accept)?.0,
    };
    handle.record().filter(|r| r.is_tcp())
}

/// The program's `setsockopt` of a keepalive `option` on `fd`, made by
/// `call` (the real function with the program's arguments); returns its
/// result, with `errno` as `call` left it.
pub(crate) fn program_sets(
    loaded: &Loaded,
    fd: c_int,
    option: KeepaliveOption,
    call: impl Fn() -> c_int,
) -> c_int {
    let Some(config) = &loaded.config else { return call() };
    if respects_program(config) {
        program_sets_respected(loaded, config, fd, option, call)
    } else {
        // The program's own call first, so it gets exactly the kernel's
        // answer (EINVAL, EFAULT, EBADF…); only once that succeeded is the
        // profile's value put back.
        let result = call();
        if result == 0 {
            put_back(loaded, config, fd, option);
        }
        result
    }
}

/// Under `respect`: marks `option` as the program's in the socket's record
/// before the call, so the shim never writes it afterwards; if the shim
/// was writing an option of this socket in another thread at that moment,
/// the call is made again once that write is over, so the program's value
/// is the last.
fn program_sets_respected(
    loaded: &Loaded,
    config: &Config,
    fd: c_int,
    option: KeepaliveOption,
    call: impl Fn() -> c_int,
) -> c_int {
    let handle = socket::identity(fd).and_then(|identity| program_record(loaded, config, fd, identity));
    let Some(handle) = handle else { return call() };
    let before = handle.add_program_option(option);
    let result = call();
    if let Some(before) = before {
        let _errno = ErrnoGuard::save();
        if result == 0 && before.writing() {
            handle.wait_for_write(before);
            call();
        }
        if result != 0 && !before.program_set().contains(option) {
            handle.remove_program_option(option);
        }
    }
    result
}

/// The record the program's setsockopt on `fd` goes to.
fn program_record(loaded: &Loaded, config: &Config, fd: c_int, identity: Identity) -> Option<Handle> {
    claim_fresh_mark(fd, identity).or_else(|| tcp_record(loaded, config, fd, identity, Event::Setsockopt))
}

/// The fresh mark at `fd` made the record of socket `identity`, if there is
/// one and the kernel confirms keepalive is on (the shim's doing).
fn claim_fresh_mark(fd: c_int, identity: Identity) -> Option<Handle> {
    let fresh = matches!(records::at(fd, identity), Place::Fresh) && socket::keepalive_on(fd) == Some(true);
    fresh.then(|| records::claim_fresh(fd, identity)).flatten()
}

/// Under `force`: gives `option` the value of the profile the socket got.
fn put_back(loaded: &Loaded, config: &Config, fd: c_int, option: KeepaliveOption) {
    let Some(identity) = socket::identity(fd) else { return };
    let Some(handle) = tcp_record(loaded, config, fd, identity, Event::Setsockopt) else { return };
    let Some(record) = handle.begin_write(option, false) else { return };
    let choice = record.applied().unwrap_or(None);
    if let Some(value) = option.value_in(profile_of(config, choice)) {
        let outcome = option.set(fd, value).map(|()| value);
        log::forced(&loaded.log, fd, option, outcome);
    }
    handle.end_write();
}
