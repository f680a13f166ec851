//! Live event streams last as long as a page is open, each holding a
//! connection and a stream from the issues and logistics services. A session
//! may hold a few (a person with several tabs), and the gateway a bounded
//! number in all; past either, a new one is refused at once (429) rather
//! than let one session, or a crowd, hold the gateway's streams.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::WebError;

/// Streams one session may hold at once.
pub const PER_SESSION: usize = 4;
/// Streams one gateway process holds at once.
pub const IN_ALL: usize = 1024;

pub struct StreamSlots {
    all: Arc<Semaphore>,
    per_session: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl Default for StreamSlots {
    fn default() -> Self {
        StreamSlots::new(PER_SESSION, IN_ALL)
    }
}

/// One open stream's place; given back when the stream ends.
pub struct Slot {
    _place: OwnedSemaphorePermit,
    session: String,
    slots: Arc<StreamSlots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.session);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(per_session: usize, in_all: usize) -> StreamSlots {
        StreamSlots {
            all: Arc::new(Semaphore::new(in_all)),
            per_session,
            open: Mutex::default(),
        }
    }

    /// A place for one more stream of `session`, or why there is none.
    pub fn take(self: &Arc<Self>, session: &str) -> Result<Slot, WebError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(session.to_owned()).or_default();
        if *n >= self.per_session {
            return Err(WebError::TooMany(format!(
                "this session already has {} live views open; close one (another tab) first",
                self.per_session
            )));
        }
        let place = self.all.clone().try_acquire_owned().map_err(|_| {
            WebError::TooMany(
                "the gateway has as many live views open as it keeps; reload in a minute".into(),
            )
        })?;
        *n += 1;
        Ok(Slot {
            _place: place,
            session: session.to_owned(),
            slots: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_a_few_and_the_gateway_a_bounded_number() {
        let slots = Arc::new(StreamSlots::new(2, 3));
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert!(matches!(slots.take("a"), Err(WebError::TooMany(_))));
        let _b1 = slots.take("b").unwrap();
        // Three open in all.
        assert!(matches!(slots.take("c"), Err(WebError::TooMany(_))));
        drop(a1);
        let _a3 = slots.take("a").unwrap();
        assert!(slots.open.lock().unwrap()["a"] == 2);
    }
}
