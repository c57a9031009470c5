//! The configuration map's layout, shared with `bpf/kawrap.bpf.c`, and the
//! translation between it and [`kawrap_core::Config`].
//!
//! The kernel program does no parsing: addresses arrive masked, with their
//! mask, in network byte order, so matching a rule is a few AND/compare
//! instructions and stays exactly `Rules::first_match`.
use std::net::IpAddr;

use kawrap_core::{Config, KeepaliveProfile, MAX_RULES, Policy, Rule, Rules};

/// `KAWRAP_CONFIG_VERSION` in the C source: a program only acts on a
/// configuration whose version it knows.
pub(crate) const CONFIG_VERSION: u32 = 2;

const HAS_USER_TIMEOUT: u32 = 1;
const POLICY_RESPECT: u32 = 0;
const POLICY_FORCE: u32 = 1;
const FAMILY_ANY: u32 = 0;
const FAMILY_V4: u32 = 4;
const FAMILY_V6: u32 = 6;

/// `struct kawrap_values`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawValues {
    idle_secs: u32,
    interval_secs: u32,
    count: u32,
    user_timeout_ms: u32,
    flags: u32,
}

/// `struct kawrap_rule`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawRule {
    family: u32,
    port: u32,
    addr: [u32; 4],
    mask: [u32; 4],
    values: RawValues,
}

/// `struct kawrap_config`: a cgroup's entry of `kawrap_cgroup`, or the
/// single entry of `kawrap_pinned`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawConfig {
    version: u32,
    rule_count: u32,
    policy: u32,
    kind: u32,
    owner: u64,
    profile: RawValues,
    rules: [RawRule; MAX_RULES],
    reserved: u32,
}

/// Who attached a configuration (`kind` in the C struct); only `status`
/// reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A transient cgroup of `kawrap --bpf`.
    Run,
    /// `kawrap bpf attach`.
    Attach,
    /// A copy pinned by `kawrap bpf pin`, attached by systemd (or anyone).
    Pinned,
}

impl Kind {
    fn raw(self) -> u32 {
        match self {
            Kind::Run => 1,
            Kind::Attach => 2,
            Kind::Pinned => 3,
        }
    }

    fn from_raw(raw: u32) -> Option<Kind> {
        [Kind::Run, Kind::Attach, Kind::Pinned].into_iter().find(|kind| kind.raw() == raw)
    }
}

impl RawConfig {
    /// The bytes of the value, as bpf(2) reads and writes it.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: `repr(C)` integers and arrays of them with no padding
        // (size asserted in the tests and in the C source): every byte is
        // initialised.
        unsafe { std::slice::from_raw_parts((self as *const RawConfig).cast::<u8>(), size_of::<RawConfig>()) }
    }

    /// A value read back from a map; `None` when `bytes` has another size.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<RawConfig> {
        (bytes.len() == size_of::<RawConfig>()).then(|| {
            // SAFETY: the size matches and any bit pattern is a valid value
            // of these integers; read_unaligned copes with the alignment.
            unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawConfig>()) }
        })
    }

    /// The attachment this configuration belongs to (`owner`).
    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    /// Who wrote it; `None` for an empty entry or an unknown kind.
    pub(crate) fn kind(&self) -> Option<Kind> {
        (self.version == CONFIG_VERSION).then(|| Kind::from_raw(self.kind)).flatten()
    }
}

/// Counters kept by the kernel programs for each cgroup (`STAT_*` in the C
/// source).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Outgoing connections given a profile.
    pub connect: u64,
    /// Accepted connections given a profile.
    pub passive: u64,
    /// `bpf_setsockopt` calls the kernel refused (should stay 0).
    pub failed: u64,
    /// The program's own keepalive `setsockopt` values replaced (`force`).
    pub forced: u64,
    /// The program's own keepalive `setsockopt` calls left alone (`respect`).
    pub respected: u64,
}

/// Number of counters in a `kawrap_stats` value (`STAT_COUNT`).
pub(crate) const COUNTER_SLOTS: usize = 5;

impl Counters {
    /// Sums a per-CPU `kawrap_stats` value as bpf(2) returns it: one block
    /// of [`COUNTER_SLOTS`] native-endian u64s per possible CPU.
    pub(crate) fn from_per_cpu(bytes: &[u8]) -> Counters {
        let mut sums = [0u64; COUNTER_SLOTS];
        for block in bytes.chunks_exact(COUNTER_SLOTS * 8) {
            for (sum, word) in sums.iter_mut().zip(block.chunks_exact(8)) {
                *sum = sum.wrapping_add(u64::from_ne_bytes(word.try_into().unwrap_or([0; 8])));
            }
        }
        let [connect, passive, failed, forced, respected] = sums;
        Counters { connect, passive, failed, forced, respected }
    }
}

fn values(profile: &KeepaliveProfile) -> RawValues {
    RawValues {
        idle_secs: u32::from(profile.idle_secs()),
        interval_secs: u32::from(profile.interval_secs()),
        count: u32::from(profile.count()),
        user_timeout_ms: profile.user_timeout_ms().unwrap_or(0),
        flags: if profile.user_timeout_ms().is_some() { HAS_USER_TIMEOUT } else { 0 },
    }
}

/// Network-order words of a masked address and of its mask.
fn network_words(ip: IpAddr, len: u8) -> (u32, [u32; 4], [u32; 4]) {
    let to_words = |octets: &[u8]| {
        let mut words = [0u32; 4];
        for (word, chunk) in words.iter_mut().zip(octets.chunks(4)) {
            // The kernel hands the program addresses as they sit in memory
            // (network order); reading the bytes natively keeps that order.
            *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        words
    };
    match ip {
        IpAddr::V4(v4) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            (FAMILY_V4, to_words(&v4.octets()), to_words(&mask.to_be_bytes()))
        }
        IpAddr::V6(v6) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            (FAMILY_V6, to_words(&v6.octets()), to_words(&mask.to_be_bytes()))
        }
    }
}

fn raw_rule(rule: &Rule) -> RawRule {
    let (family, addr, mask) = match rule.network() {
        Some((ip, len)) => network_words(ip, len),
        None => (FAMILY_ANY, [0; 4], [0; 4]),
    };
    RawRule { family, port: rule.port().map_or(0, u32::from), addr, mask, values: values(rule.profile()) }
}

impl RawConfig {
    /// The entry for `config`, attached as `kind`, as attachment `owner`
    /// (nonzero: a zero owner means "no configuration" to the programs).
    pub(crate) fn encode(config: &Config, kind: Kind, owner: u64) -> RawConfig {
        let mut rules = [RawRule::default(); MAX_RULES];
        for (slot, rule) in rules.iter_mut().zip(config.rules.as_slice()) {
            *slot = raw_rule(rule);
        }
        RawConfig {
            version: CONFIG_VERSION,
            rule_count: config.rules.as_slice().len() as u32,
            policy: match config.policy {
                Policy::Respect => POLICY_RESPECT,
                Policy::Force => POLICY_FORCE,
            },
            kind: kind.raw(),
            owner,
            profile: values(&config.profile),
            rules,
            reserved: 0,
        }
    }

    /// The configuration a map holds, or why it cannot be read back (a map
    /// written by another kawrap version).
    pub(crate) fn decode(&self) -> Result<Config, String> {
        if self.version != CONFIG_VERSION {
            return Err(format!(
                "configuration version {} (this kawrap reads version {CONFIG_VERSION})",
                self.version
            ));
        }
        let profile = decode_values(&self.profile)?;
        let count = (self.rule_count as usize).min(MAX_RULES);
        let mut entries = Vec::with_capacity(count);
        for raw in &self.rules[..count] {
            entries.push(format!("{}={}", destination_text(raw)?, decode_values(&raw.values)?));
        }
        // The canonical text is the one way `kawrap-core` builds rules; it
        // also re-validates what the map holds.
        let text = entries.join(",");
        let rules = Rules::parse(&text).map_err(|e| e.to_string())?;
        let policy = if self.policy == POLICY_FORCE { Policy::Force } else { Policy::Respect };
        Ok(Config { profile, rules, policy })
    }
}

fn decode_values(raw: &RawValues) -> Result<KeepaliveProfile, String> {
    let user_timeout = (raw.flags & HAS_USER_TIMEOUT != 0).then_some(u64::from(raw.user_timeout_ms));
    KeepaliveProfile::new(
        u64::from(raw.idle_secs),
        u64::from(raw.interval_secs),
        u64::from(raw.count),
        user_timeout,
    )
    .map_err(|(field, value)| format!("{} {value} is out of range {:?}", field.name(), field.range()))
}

fn destination_text(raw: &RawRule) -> Result<String, String> {
    let bytes = |words: &[u32]| words.iter().flat_map(|w| w.to_ne_bytes()).collect::<Vec<u8>>();
    let prefix = |words: &[u32]| words.iter().map(|w| u32::from_be(*w).count_ones()).sum::<u32>();
    let network = match raw.family {
        FAMILY_ANY => None,
        FAMILY_V4 => {
            let b = bytes(&raw.addr[..1]);
            Some(format!("{}.{}.{}.{}/{}", b[0], b[1], b[2], b[3], prefix(&raw.mask[..1])))
        }
        FAMILY_V6 => {
            let octets: [u8; 16] = bytes(&raw.addr).try_into().map_err(|_| "bad IPv6 address")?;
            Some(format!("[{}]/{}", std::net::Ipv6Addr::from(octets), prefix(&raw.mask)))
        }
        other => return Err(format!("rule family {other} (expected 0, 4 or 6)")),
    };
    Ok(match (network, raw.port) {
        (None, 0) => return Err("a rule with neither network nor port".to_string()),
        (None, port) => format!(":{port}"),
        (Some(network), 0) => network,
        (Some(network), port) => format!("{network}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(profile: &str, rules: &str, policy: &str) -> Config {
        Config::from_values(Some(profile), Some(rules), Some(policy)).unwrap()
    }

    fn encode(config: &Config) -> RawConfig {
        RawConfig::encode(config, Kind::Attach, 1)
    }

    #[test]
    fn layout_matches_the_c_struct() {
        // 4 header words + the 64-bit owner + 5 profile words + 32 rules of
        // 15 words + 1 reserved word; the C source asserts the same sizes.
        assert_eq!(size_of::<RawValues>(), 20);
        assert_eq!(size_of::<RawRule>(), 60);
        assert_eq!(size_of::<RawConfig>(), 1968);
    }

    #[test]
    fn round_trips_every_destination_form() {
        let rules = ":3306=firewall,10.0.0.0/8=60/10/6,192.0.2.7=2/1/3/5s,[2001:db8::]/32:5432=ssh,\
                     [::1]=1/1/1,0.0.0.0/0:80=5/5/5";
        for policy in ["respect", "force"] {
            let original = config("300/30/5/auto", rules, policy);
            let raw = RawConfig::encode(&original, Kind::Run, 7);
            assert_eq!(raw.decode().unwrap(), original);
        }
    }

    #[test]
    fn encodes_networks_in_network_order() {
        let raw = encode(&config("recommended", "10.1.0.0/16:5432=firewall", "respect"));
        let rule = raw.rules[0];
        assert_eq!(rule.family, FAMILY_V4);
        assert_eq!(rule.port, 5432);
        assert_eq!(rule.addr[0].to_ne_bytes(), [10, 1, 0, 0]);
        assert_eq!(rule.mask[0].to_ne_bytes(), [255, 255, 0, 0]);
        assert_eq!(
            rule.values,
            RawValues { idle_secs: 60, interval_secs: 10, count: 6, ..Default::default() }
        );
        let raw = encode(&config("recommended", "[2001:db8::]/33=ssh", "respect"));
        let rule = raw.rules[0];
        assert_eq!(rule.family, FAMILY_V6);
        assert_eq!(rule.addr[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(rule.mask[0].to_ne_bytes(), [255, 255, 255, 255]);
        assert_eq!(rule.mask[1].to_ne_bytes(), [128, 0, 0, 0]);
        assert_eq!(rule.mask[2], 0);
        assert_eq!(raw.rule_count, 1);
    }

    #[test]
    fn user_timeout_is_flagged() {
        let raw = encode(&config("2/1/3/4500", "", "respect"));
        assert_eq!(raw.profile.flags, HAS_USER_TIMEOUT);
        assert_eq!(raw.profile.user_timeout_ms, 4500);
        let raw = encode(&config("2/1/3/0", "", "respect"));
        assert_eq!((raw.profile.flags, raw.profile.user_timeout_ms), (HAS_USER_TIMEOUT, 0));
        let raw = encode(&config("2/1/3", "", "respect"));
        assert_eq!(raw.profile.flags, 0);
    }

    #[test]
    fn bytes_round_trip_with_kind_and_owner() {
        let raw = RawConfig::encode(&config("7/3/4", ":22=ssh", "force"), Kind::Pinned, u64::MAX - 1);
        let back = RawConfig::from_bytes(raw.as_bytes()).unwrap();
        assert_eq!(back, raw);
        assert_eq!((back.kind(), back.owner()), (Some(Kind::Pinned), u64::MAX - 1));
        assert!(RawConfig::from_bytes(&raw.as_bytes()[1..]).is_none());
        // A zeroed entry (attached, not yet written) is nobody's.
        let empty = RawConfig::from_bytes(&[0; size_of::<RawConfig>()]).unwrap();
        assert_eq!((empty.kind(), empty.owner()), (None, 0));
    }

    #[test]
    fn sums_counters_over_cpus() {
        let words: Vec<u64> = vec![1, 2, 3, 4, 5, 10, 20, 30, 40, 50];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let counters = Counters::from_per_cpu(&bytes);
        assert_eq!(counters, Counters { connect: 11, passive: 22, failed: 33, forced: 44, respected: 55 });
    }

    #[test]
    fn refuses_a_foreign_version() {
        let mut raw = encode(&Config::default());
        raw.version = 99;
        assert!(raw.decode().unwrap_err().contains("version 99"));
    }
}
