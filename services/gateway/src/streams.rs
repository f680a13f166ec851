//! Live event streams last as long as a page is open or a system watches,
//! each holding a connection and a stream from the issues and logistics
//! services. A page session may hold a few (a person with several tabs), a
//! gRPC caller a few more (a county-wide one a community's worth each), and the
//! gateway a bounded number in all, pages and gRPC together; past either, a new
//! one is refused at once (429, RESOURCE_EXHAUSTED) rather than let one caller,
//! or a crowd, hold the gateway's streams.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Streams one page session may hold at once.
pub const PER_SESSION: usize = 4;
/// `WatchCommunity` streams one gRPC caller may hold at once.
pub const PER_CALLER: usize = 8;
/// ... and one county-wide caller (admin, supervisor, a county system), which
/// may watch every community of the county.
pub const PER_COUNTY_CALLER: usize = 256;
/// Streams one gateway process holds at once.
pub const IN_ALL: usize = 1024;

/// Marks a stream request whose place is already taken (a page's, per session).
#[derive(Clone, Copy)]
pub struct Counted;

/// Why no stream could be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This caller holds as many as it may.
    Caller(usize),
    /// The gateway holds as many as it keeps.
    Gateway,
}

impl From<Refused> for crate::web::WebError {
    fn from(r: Refused) -> Self {
        crate::web::WebError::TooMany(match r {
            Refused::Caller(n) => format!(
                "this session already has {n} live views open; close one (another tab) first"
            ),
            Refused::Gateway => {
                "the gateway has as many live views open as it keeps; reload in a minute".into()
            }
        })
    }
}

impl From<Refused> for tonic::Status {
    fn from(r: Refused) -> Self {
        tonic::Status::resource_exhausted(match r {
            Refused::Caller(n) => format!(
                "this caller already watches {n} streams; end one first (one stream per community)"
            ),
            Refused::Gateway => {
                "the gateway holds as many streams as it keeps; try again in a minute".into()
            }
        })
    }
}

pub struct StreamSlots {
    all: Arc<Semaphore>,
    open: Mutex<HashMap<String, usize>>,
}

impl Default for StreamSlots {
    fn default() -> Self {
        StreamSlots::new(IN_ALL)
    }
}

/// One open stream's place; given back when the stream ends.
pub struct Slot {
    _place: OwnedSemaphorePermit,
    holder: String,
    slots: Arc<StreamSlots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.holder);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(in_all: usize) -> StreamSlots {
        StreamSlots {
            all: Arc::new(Semaphore::new(in_all)),
            open: Mutex::default(),
        }
    }

    /// A place for one more stream of `holder` (a page session's hash, or
    /// `grpc:` and the caller), who may hold at most `most`; or why there is none.
    pub fn take(self: &Arc<Self>, holder: &str, most: usize) -> Result<Slot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(holder.to_owned()).or_default();
        if *n >= most {
            return Err(Refused::Caller(most));
        }
        let place = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Gateway)?;
        *n += 1;
        Ok(Slot {
            _place: place,
            holder: holder.to_owned(),
            slots: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_a_few_and_the_gateway_a_bounded_number() {
        let slots = Arc::new(StreamSlots::new(3));
        let a1 = slots.take("a", 2).unwrap();
        let _a2 = slots.take("a", 2).unwrap();
        assert_eq!(slots.take("a", 2).err(), Some(Refused::Caller(2)));
        let _b1 = slots.take("b", 2).unwrap();
        // Three open in all.
        assert_eq!(slots.take("c", 2).err(), Some(Refused::Gateway));
        drop(a1);
        let _a3 = slots.take("a", 2).unwrap();
        assert!(slots.open.lock().unwrap()["a"] == 2);
    }
}
