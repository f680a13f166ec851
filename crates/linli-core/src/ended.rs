//! Logins that ended before their tokens expire. An access token is checked
//! where it is used, without asking anyone, so logging out, disabling an
//! account, changing or resetting its password or a resident moving out would
//! otherwise leave a token in hand working for up to its lifetime. People keeps
//! the list of what ended (`ListEndedSessions`); every service reads what is new
//! in it every [`FOLLOW_EVERY`] and refuses the tokens it covers: within a
//! minute everywhere, even with a missed read or two.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use linli_proto::people::v1 as pb;

use crate::auth::Claims;
use crate::time::{micros, now_micros, to_timestamp};

/// How often each service reads what ended.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(10);
/// Each read goes back this far before the newest ending seen, for endings
/// written by a people replica whose clock is behind.
const OVERLAP_MICROS: i64 = 60 * 1_000_000;
/// Endings are forgotten once no token they cover can still be current.
const KEPT_MICROS: i64 = 2 * 3600 * 1_000_000;

/// What this process knows has ended.
#[derive(Clone, Default)]
pub struct Ended {
    inner: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    /// Account id → the lowest session epoch still valid, and when it rose.
    epochs: HashMap<String, (i64, i64)>,
    /// Session (login) id → when it ended.
    sessions: HashMap<String, i64>,
    /// The newest ending seen.
    newest: i64,
}

impl Ended {
    /// Why a token's login has ended, if it has.
    pub fn refuses(&self, claims: &Claims) -> Option<&'static str> {
        let account = claims.sub.strip_prefix("account:")?;
        let state = self.inner.read().expect("the ended sessions' lock");
        if let Some(sid) = &claims.sid
            && state.sessions.contains_key(sid)
        {
            return Some("this login has ended (logged out): log in again");
        }
        match state.epochs.get(account) {
            Some((epoch, _)) if claims.epoch < *epoch => Some(
                "this account's logins have ended (password changed or reset, or the account disabled): log in again",
            ),
            _ => None,
        }
    }

    /// Takes in endings read from people; reading the same ones twice changes nothing.
    pub fn apply(&self, ended: &[pb::EndedSession]) {
        let now = now_micros();
        let mut state = self.inner.write().expect("the ended sessions' lock");
        for e in ended {
            let at = e.ended_at.as_ref().map(micros).unwrap_or(now);
            state.newest = state.newest.max(at);
            if e.session_id.is_empty() {
                let entry = state
                    .epochs
                    .entry(e.account_id.clone())
                    .or_insert((e.session_epoch, at));
                if e.session_epoch >= entry.0 {
                    *entry = (e.session_epoch, at);
                }
            } else {
                state.sessions.insert(e.session_id.clone(), at);
            }
        }
        let horizon = now - KEPT_MICROS;
        state.epochs.retain(|_, (_, at)| *at >= horizon);
        state.sessions.retain(|_, at| *at >= horizon);
    }

    /// Where the next read starts.
    pub fn since(&self) -> Option<prost_types::Timestamp> {
        let newest = self.inner.read().expect("the ended sessions' lock").newest;
        (newest > 0).then(|| to_timestamp(newest - OVERLAP_MICROS))
    }

    /// Reads what ended with `read` every [`FOLLOW_EVERY`] until the task is dropped.
    pub fn follow<F, Fut>(&self, read: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Option<prost_types::Timestamp>) -> Fut + Send + 'static,
        Fut: Future<Output = crate::Result<Vec<pb::EndedSession>>> + Send,
    {
        let ended = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FOLLOW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match read(ended.since()).await {
                    Ok(list) => {
                        if failing {
                            tracing::info!("reading the ended logins again");
                        }
                        failing = false;
                        ended.apply(&list);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot read the ended logins from people; tokens of logins ended since are still accepted here");
                        }
                        failing = true;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn token(account: &str, sid: &str, epoch: i64) -> Claims {
        let mut c = Claims::new(
            format!("account:{account}"),
            Role::Cadre,
            Duration::from_secs(60),
        );
        c.sid = Some(sid.into());
        c.epoch = epoch;
        c
    }

    fn ending(account: &str, sid: &str, epoch: i64) -> pb::EndedSession {
        pb::EndedSession {
            account_id: account.into(),
            session_id: sid.into(),
            session_epoch: epoch,
            ended_at: Some(to_timestamp(now_micros())),
        }
    }

    #[test]
    fn a_logout_ends_that_login_and_a_new_epoch_ends_every_older_one() {
        let ended = Ended::default();
        assert!(ended.since().is_none());
        let a1 = token("a", "s1", 0);
        let a2 = token("a", "s2", 0);
        assert!(ended.refuses(&a1).is_none());

        ended.apply(&[ending("a", "s1", 0)]);
        assert!(ended.refuses(&a1).is_some(), "logged out");
        assert!(
            ended.refuses(&a2).is_none(),
            "another login of the same account"
        );

        ended.apply(&[ending("a", "", 1)]);
        assert!(ended.refuses(&a2).is_some(), "password changed");
        assert!(
            ended.refuses(&token("a", "s3", 1)).is_none(),
            "logged in after"
        );
        assert!(
            ended.refuses(&token("b", "s4", 0)).is_none(),
            "someone else"
        );
        // Read again (the overlap), or an older ending read late: nothing goes back.
        ended.apply(&[ending("a", "", 1), ending("a", "", 0)]);
        assert!(ended.refuses(&token("a", "s3", 1)).is_none());
        assert!(ended.refuses(&a2).is_some());
        // A service's token is never an account's.
        let service = Claims::new("service:issues", Role::Admin, Duration::from_secs(60));
        assert!(ended.refuses(&service).is_none());
        assert!(ended.since().is_some());
    }
}
