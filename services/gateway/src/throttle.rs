//! Failed logins, counted per username and per client address: after a few
//! each further attempt waits a little longer, and past a limit the key is
//! refused for a while. An address gets `address_factor` times the limits of
//! a username, since one office or NAT may hold many honest users. The counts live in the gateway process (each replica
//! counts its own), which bounds guessing per replica without a shared store.
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
    /// At this many failures the key is refused for `lock_for`.
    pub lock_after: u32,
    pub lock_for: Duration,
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
            address_factor: 5,
        }
    }
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
    /// Go ahead after waiting this long.
    Proceed(Duration),
    /// Refused for this much longer.
    Locked(Duration),
}

/// Counts for usernames and for client addresses.
#[derive(Debug)]
pub struct LoginThrottle {
    pub users: Throttle,
    pub addresses: Throttle,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> LoginThrottle {
        let f = settings.address_factor.max(1);
        let addresses = ThrottleSettings {
            slow_after: settings.slow_after.saturating_mul(f),
            lock_after: settings.lock_after.saturating_mul(f),
            ..settings.clone()
        };
        LoginThrottle {
            users: Throttle::new(settings),
            addresses: Throttle::new(addresses),
        }
    }

    /// The worse verdict of the username's and the address's.
    pub fn check(&self, user: &str, address: &str) -> Verdict {
        match (self.users.check(user), self.addresses.check(address)) {
            (Verdict::Locked(a), Verdict::Locked(b)) => Verdict::Locked(a.max(b)),
            (Verdict::Locked(a), _) | (_, Verdict::Locked(a)) => Verdict::Locked(a),
            (Verdict::Proceed(a), Verdict::Proceed(b)) => Verdict::Proceed(a.max(b)),
        }
    }

    pub fn failed(&self, user: &str, address: &str) {
        self.users.failed(user);
        self.addresses.failed(address);
    }

    /// A successful login clears its username's count (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.users.forget(user);
    }
}

#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    failures: Mutex<HashMap<String, Failures>>,
}

/// Keys kept at most; past this, expired ones are dropped first.
const MAX_KEYS: usize = 100_000;

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Throttle {
        Throttle {
            settings,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The verdict for an attempt by `key`.
    pub fn check(&self, key: &str) -> Verdict {
        let now = Instant::now();
        let map = self.failures.lock().expect("throttle lock");
        let Some(f) = map.get(key) else {
            return Verdict::Proceed(Duration::ZERO);
        };
        if let Some(until) = f.locked_until
            && until > now
        {
            return Verdict::Locked(until - now);
        }
        if now.duration_since(f.since) > self.settings.window || f.count < self.settings.slow_after
        {
            return Verdict::Proceed(Duration::ZERO);
        }
        let excess = f.count - self.settings.slow_after + 1;
        Verdict::Proceed((self.settings.step * excess).min(self.settings.max_delay))
    }

    /// Counts a failed attempt by `key`.
    pub fn failed(&self, key: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("throttle lock");
        if map.len() >= MAX_KEYS {
            let window = self.settings.window;
            map.retain(|_, f| {
                now.duration_since(f.since) <= window || f.locked_until.is_some_and(|u| u > now)
            });
        }
        {
            let f = map.entry(key.to_owned()).or_insert(Failures {
                count: 0,
                since: now,
                locked_until: None,
            });
            let expired_lock = f.locked_until.is_some_and(|u| u <= now);
            if expired_lock || now.duration_since(f.since) > self.settings.window {
                *f = Failures {
                    count: 0,
                    since: now,
                    locked_until: None,
                };
            }
            f.count += 1;
            if f.count >= self.settings.lock_after {
                f.locked_until = Some(now + self.settings.lock_for);
            }
        }
    }

    pub fn forget(&self, key: &str) {
        self.failures.lock().expect("throttle lock").remove(key);
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
            lock_for: Duration::from_secs(60),
            address_factor: 3,
        }
    }

    #[test]
    fn slows_then_locks_then_forgets_on_success() {
        let t = LoginThrottle::new(settings());
        let ms = Duration::from_millis;
        assert_eq!(t.check("a", "ip1"), Verdict::Proceed(Duration::ZERO));
        t.failed("a", "ip1");
        assert_eq!(t.check("a", "ip1"), Verdict::Proceed(Duration::ZERO));
        t.failed("a", "ip1");
        assert_eq!(t.check("a", "ip1"), Verdict::Proceed(ms(100)));
        t.failed("a", "ip1");
        assert_eq!(t.check("a", "ip1"), Verdict::Proceed(ms(200)));
        t.failed("a", "ip1");
        assert!(matches!(t.check("a", "ip2"), Verdict::Locked(d) if d > Duration::from_secs(50)));
        // Another username from the same address is not locked: the address has more room.
        assert_eq!(t.check("b", "ip1"), Verdict::Proceed(Duration::ZERO));
        t.succeeded("a");
        assert_eq!(t.check("a", "ip2"), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn an_address_guessing_many_usernames_is_locked_too() {
        let t = LoginThrottle::new(settings());
        for i in 0..12 {
            t.failed(&format!("user{i}"), "ip1");
        }
        assert!(matches!(t.check("fresh", "ip1"), Verdict::Locked(_)));
        assert_eq!(t.check("fresh", "ip2"), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn delay_is_capped() {
        let t = Throttle::new(ThrottleSettings {
            lock_after: 100,
            ..settings()
        });
        for _ in 0..50 {
            t.failed("x");
        }
        assert_eq!(t.check("x"), Verdict::Proceed(Duration::from_millis(250)));
    }
}
