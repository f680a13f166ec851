//! Failed logins, counted three ways under one lock: per username, per
//! username *and* client address, and per client address.
//!
//! - An attempt is **reserved before the password is checked**: it counts as
//!   a failure from the moment it is let through, and a success gives the
//!   count back. So logins sent all at once cannot get past the limit by
//!   being checked before any of them has failed.
//! - **Slow the username, lock the address.** A username is locked only
//!   briefly (`user_lock_for`, a minute), and the pair of a username and an
//!   address for long (`lock_for`): a stranger guessing from one address is
//!   shut out for a quarter of an hour after ten guesses, but keeps the owner,
//!   logging in from elsewhere, out for a minute at most, since their own
//!   address cannot lock the username again until its pair lock ends.
//! - An address gets `address_factor` times a username's limits, since one
//!   office or NAT holds many honest users; past them it is locked for
//!   `lock_for`, whatever username it tries.
//!
//! The counts live in the gateway process (each replica counts its own),
//! which bounds guessing per replica without a shared store.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures are counted over this window.
    pub window: Duration,
    /// From this many failures on, each attempt is delayed by `step` per failure past it.
    pub slow_after: u32,
    pub step: Duration,
    pub max_delay: Duration,
    /// At this many failures a username, or a username from one address, is refused.
    pub lock_after: u32,
    /// How long a username from one address (and an address) stays refused.
    pub lock_for: Duration,
    /// How long a username stays refused whatever the address.
    pub user_lock_for: Duration,
    /// How many times more failures a client address may have than a username.
    pub address_factor: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            window: Duration::from_secs(15 * 60),
            slow_after: 3,
            step: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
            lock_after: 10,
            lock_for: Duration::from_secs(15 * 60),
            user_lock_for: Duration::from_secs(60),
            address_factor: 5,
        }
    }
}

/// One kind of key's limits.
#[derive(Debug, Clone, Copy)]
struct Limits {
    window: Duration,
    slow_after: u32,
    lock_after: u32,
    lock_for: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead after waiting this long; the attempt is counted already.
    Proceed(Duration),
    /// Refused for this much longer; nothing was counted.
    Locked(Duration),
}

/// Keys kept at most per kind; past this, expired ones are dropped first.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
struct Counts {
    users: HashMap<String, Failures>,
    pairs: HashMap<String, Failures>,
    addresses: HashMap<String, Failures>,
}

/// Counts for usernames, username-and-address pairs and client addresses.
#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    counts: Mutex<Counts>,
}

fn pair(user: &str, address: &str) -> String {
    format!("{user}\u{0}{address}")
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> LoginThrottle {
        LoginThrottle {
            settings,
            counts: Mutex::default(),
        }
    }

    fn user_limits(&self) -> Limits {
        Limits {
            lock_for: self.settings.user_lock_for,
            ..self.pair_limits()
        }
    }

    fn pair_limits(&self) -> Limits {
        let s = &self.settings;
        Limits {
            window: s.window,
            slow_after: s.slow_after,
            lock_after: s.lock_after,
            lock_for: s.lock_for,
        }
    }

    fn address_limits(&self) -> Limits {
        let s = &self.settings;
        let f = s.address_factor.max(1);
        Limits {
            slow_after: s.slow_after.saturating_mul(f),
            lock_after: s.lock_after.saturating_mul(f),
            ..self.pair_limits()
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides an attempt by `user` from `address` and, unless it is refused,
    /// counts it as a failure at once (see [`LoginThrottle::succeeded`] and
    /// [`LoginThrottle::unchecked`]). Checking and counting are one step, so
    /// attempts made at the same moment cannot all slip under the limit.
    pub fn reserve(&self, user: &str, address: &str) -> Verdict {
        let now = Instant::now();
        let (ul, pl, al) = (
            self.user_limits(),
            self.pair_limits(),
            self.address_limits(),
        );
        let pair = pair(user, address);
        let mut c = self.counts();
        let locked = [
            locked_for(c.users.get(user), now),
            locked_for(c.pairs.get(&pair), now),
            locked_for(c.addresses.get(address), now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(left) = locked {
            return Verdict::Locked(left);
        }
        let excess = [
            count(&mut c.users, user, ul, now),
            count(&mut c.pairs, &pair, pl, now),
            count(&mut c.addresses, address, al, now),
        ]
        .into_iter()
        .max()
        .unwrap_or_default();
        Verdict::Proceed((self.settings.step * excess).min(self.settings.max_delay))
    }

    /// The reserved attempt had the right password: the username's counts are
    /// cleared, and the address gets its one attempt back.
    pub fn succeeded(&self, user: &str, address: &str) {
        let mut c = self.counts();
        c.users.remove(user);
        c.pairs.remove(&pair(user, address));
        give_back(&mut c.addresses, address, self.address_limits());
    }

    /// The reserved attempt was not decided (the people service did not
    /// answer): it counts for nobody.
    pub fn unchecked(&self, user: &str, address: &str) {
        let mut c = self.counts();
        give_back(&mut c.users, user, self.user_limits());
        give_back(&mut c.pairs, &pair(user, address), self.pair_limits());
        give_back(&mut c.addresses, address, self.address_limits());
    }
}

fn locked_for(f: Option<&Failures>, now: Instant) -> Option<Duration> {
    f.and_then(|f| f.locked_until)
        .filter(|until| *until > now)
        .map(|until| until - now)
}

/// Counts one failure for `key`; how many it had past `slow_after` before this one.
fn count(map: &mut HashMap<String, Failures>, key: &str, l: Limits, now: Instant) -> u32 {
    if map.len() >= MAX_KEYS {
        map.retain(|_, f| {
            now.duration_since(f.since) <= l.window || f.locked_until.is_some_and(|u| u > now)
        });
    }
    let f = map.entry(key.to_owned()).or_insert(Failures {
        count: 0,
        since: now,
        locked_until: None,
    });
    let expired_lock = f.locked_until.is_some_and(|u| u <= now);
    if expired_lock || now.duration_since(f.since) > l.window {
        *f = Failures {
            count: 0,
            since: now,
            locked_until: None,
        };
    }
    let excess = (f.count + 1).saturating_sub(l.slow_after);
    f.count += 1;
    if f.count >= l.lock_after {
        f.locked_until = Some(now + l.lock_for);
    }
    excess
}

/// Takes back one counted failure of `key`, and the lock it brought if the
/// count is under the limit again.
fn give_back(map: &mut HashMap<String, Failures>, key: &str, l: Limits) {
    if let Some(f) = map.get_mut(key) {
        f.count = f.count.saturating_sub(1);
        if f.count < l.lock_after {
            f.locked_until = None;
        }
        if f.count == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            window: Duration::from_secs(60),
            slow_after: 2,
            step: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            lock_after: 4,
            lock_for: Duration::from_secs(600),
            user_lock_for: Duration::from_secs(60),
            address_factor: 3,
        }
    }

    fn locked(v: Verdict) -> Option<Duration> {
        match v {
            Verdict::Locked(d) => Some(d),
            Verdict::Proceed(_) => None,
        }
    }

    #[test]
    fn slows_then_locks_then_forgets_on_success() {
        let t = LoginThrottle::new(settings());
        let ms = Duration::from_millis;
        assert_eq!(t.reserve("a", "ip1"), Verdict::Proceed(Duration::ZERO));
        assert_eq!(t.reserve("a", "ip1"), Verdict::Proceed(Duration::ZERO));
        assert_eq!(t.reserve("a", "ip1"), Verdict::Proceed(ms(100)));
        assert_eq!(t.reserve("a", "ip1"), Verdict::Proceed(ms(200)));
        // Four reserved (and failed): the username is locked everywhere, briefly,
        let elsewhere = locked(t.reserve("a", "ip2")).expect("locked from ip2");
        assert!(elsewhere <= Duration::from_secs(60), "{elsewhere:?}");
        // and from the guessing address for long.
        let here = locked(t.reserve("a", "ip1")).expect("locked from ip1");
        assert!(here > Duration::from_secs(500), "{here:?}");
        // Another username from the same address is not locked: the address has more room.
        assert!(locked(t.reserve("b", "ip1")).is_none());
        t.succeeded("b", "ip1");
        t.succeeded("a", "ip1");
        assert_eq!(t.reserve("a", "ip2"), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn attempts_at_once_cannot_pass_the_limit() {
        // Every attempt is counted when it is let through, before any answer:
        // of 41 sent together, only the limit's worth are checked.
        let t = std::sync::Arc::new(LoginThrottle::new(ThrottleSettings {
            lock_after: 10,
            ..settings()
        }));
        let let_through = std::thread::scope(|s| {
            let handles: Vec<_> = (0..41)
                .map(|_| s.spawn(|| locked(t.reserve("admin", "ip1")).is_none()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|passed| *passed)
                .count()
        });
        assert_eq!(let_through, 10);
    }

    #[test]
    fn a_stranger_keeps_the_owner_out_for_a_minute_at_most() {
        let t = LoginThrottle::new(settings());
        for _ in 0..4 {
            assert!(locked(t.reserve("wujing", "stranger")).is_none());
        }
        let owner = locked(t.reserve("wujing", "office")).expect("briefly locked");
        assert!(owner <= Duration::from_secs(60));
        // The stranger cannot lock the username again: its own pair is locked for long.
        assert!(locked(t.reserve("wujing", "stranger")).unwrap() > Duration::from_secs(500));
    }

    #[test]
    fn an_address_guessing_many_usernames_is_locked_too() {
        let t = LoginThrottle::new(settings());
        for i in 0..12 {
            assert!(locked(t.reserve(&format!("user{i}"), "ip1")).is_none());
        }
        assert!(locked(t.reserve("fresh", "ip1")).is_some());
        assert_eq!(t.reserve("fresh", "ip2"), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn an_undecided_attempt_counts_for_nobody() {
        let t = LoginThrottle::new(settings());
        for _ in 0..10 {
            assert!(locked(t.reserve("a", "ip1")).is_none());
            t.unchecked("a", "ip1");
        }
        assert_eq!(t.reserve("a", "ip1"), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn delay_is_capped() {
        let t = LoginThrottle::new(ThrottleSettings {
            lock_after: 100,
            address_factor: 1,
            ..settings()
        });
        for _ in 0..50 {
            let _ = t.reserve("x", "ip");
        }
        assert_eq!(
            t.reserve("x", "ip"),
            Verdict::Proceed(Duration::from_millis(250))
        );
    }
}
