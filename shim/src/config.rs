//! The shim's configuration: read from the environment once, kept in a
//! static, published with an atomic (no lock: a `fork` while another thread
//! is loading must not leave the child waiting forever).
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use kawrap_core::{Config, env};

use crate::{log, sys};

/// What the hooks need, owned (the environment may be cleared later).
pub(crate) struct Loaded {
    /// `None`: the shim stays out of the way (disabled, or invalid values).
    pub(crate) config: Option<Config>,
    pub(crate) log: log::Target,
}

impl Loaded {
    fn from_environment() -> Loaded {
        // secure_getenv already returns nothing in AT_SECURE processes; the
        // explicit check makes "never open a file there" independent of it.
        let log_path = if sys::is_secure_process() { None } else { sys::secure_env(env::LOG) };
        let mut loaded = Loaded { config: None, log: log::Target::new(log_path) };
        if env::is_disabled(sys::secure_env(env::DISABLE)) {
            return loaded;
        }
        let text = |name| sys::secure_env(name).map(core::str::from_utf8);
        let (profile, rules, policy) = (text(env::PROFILE), text(env::RULES), text(env::POLICY));
        let values = [(env::PROFILE, profile), (env::RULES, rules), (env::POLICY, policy)];
        if let Some((name, _)) = values.iter().find(|(_, value)| matches!(value, Some(Err(_)))) {
            log::not_utf8(&loaded.log, name);
            return loaded;
        }
        let ok = |value: Option<Result<&'static str, _>>| value.and_then(Result::ok);
        match Config::from_values(ok(profile), ok(rules), ok(policy)) {
            Ok(config) => loaded.config = Some(config),
            Err(error) => log::invalid(&loaded.log, &error),
        }
        loaded
    }
}

const UNLOADED: u8 = 0;
const LOADING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNLOADED);

struct Slot(UnsafeCell<MaybeUninit<Loaded>>);

// SAFETY: written once by the thread that moved STATE from UNLOADED to
// LOADING, read only after STATE is READY (Release/Acquire).
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// The configuration; loads it on first use.
///
/// A thread arriving while another is loading (or a child forked in the
/// middle of it) does not wait: it reads the environment itself for this
/// call and uses that copy.
pub(crate) fn with<R>(f: impl FnOnce(&Loaded) -> R) -> R {
    // A plain load first: once loaded, every hook call is a read of a
    // shared cache line, never a write threads would contend for.
    if STATE.load(Ordering::Acquire) == READY {
        return f(ready());
    }
    match STATE.compare_exchange(UNLOADED, LOADING, Ordering::Acquire, Ordering::Acquire) {
        Ok(_) => {
            let loaded = load();
            // SAFETY: we won the race to LOADING; no one reads until READY.
            unsafe { (*SLOT.0.get()).write(loaded) };
            STATE.store(READY, Ordering::Release);
            f(ready())
        }
        Err(READY) => f(ready()),
        Err(_) => f(&load()),
    }
}

/// Reads the environment (and may log why it is invalid) without
/// changing `errno`: loading can happen inside any hook, before or after
/// the real call.
fn load() -> Loaded {
    let _errno = sys::ErrnoGuard::save();
    Loaded::from_environment()
}

fn ready() -> &'static Loaded {
    // SAFETY: only called after observing READY with Acquire ordering.
    unsafe { (*SLOT.0.get()).assume_init_ref() }
}

/// Loads the configuration now (from the constructor).
pub(crate) fn get() {
    with(|_| ());
}
