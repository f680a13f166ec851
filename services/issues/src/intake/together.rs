//! Reports written together: under load, the reports waiting at one moment
//! are written in one transaction (group commit).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tracing::Instrument;

use linli_core::idempotency::{self, IdemKey};
use linli_core::{Actor, Error, Result};
use linli_proto::issues::v1 as pb;

use super::ISSUE_SCOPE;
use crate::store::{NewIssue, Store};

/// How reports reach the database. Under load, the reports that arrive while
/// a transaction is being written wait for the next one and are written
/// together (group commit): one transaction and a handful of statements for
/// the lot, where each report alone costs ten statements and a commit. A
/// report that finds no other waiting is written alone, as soon as it comes,
/// so a quiet service answers as fast as before.
#[derive(Clone)]
pub struct Reports {
    /// The most reports written together; 1 writes each alone.
    max: usize,
    /// One queue per writer; a community's reports always wait in the same one.
    queues: Arc<OnceLock<Vec<mpsc::Sender<Pending>>>>,
    /// Transactions that wrote more than one report, and the reports they wrote.
    counts: Arc<[AtomicU64; 2]>,
}

/// Writers of batches, each its own transaction on its own connection, each
/// for its own share of the communities. A batch runs on one database
/// process, one statement after another, so several are written at once to
/// use the database's cores; and as each community's reports go to one
/// writer, two batches never wait on each other for a community's heads.
const REPORT_WRITERS: usize = 4;

/// A report waiting for its batch.
pub(crate) struct Pending {
    pub(super) actor: Actor,
    pub(super) idem: IdemKey,
    pub(super) new: NewIssue,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<pb::Issue>>,
}

impl Reports {
    pub fn new(max: usize) -> Reports {
        Reports {
            max: max.max(1),
            queues: Arc::default(),
            counts: Arc::default(),
        }
    }

    /// Transactions that wrote more than one report, and the reports they
    /// wrote, since the service started.
    pub fn written_together(&self) -> (u64, u64) {
        let [batches, reports] = &*self.counts;
        (
            batches.load(Ordering::Relaxed),
            reports.load(Ordering::Relaxed),
        )
    }

    /// Where a community's reports wait, the writers started on first use;
    /// `None` when each report is written alone.
    pub(super) fn queue(
        &self,
        store: &Store,
        community_id: &str,
    ) -> Option<&mpsc::Sender<Pending>> {
        if self.max == 1 {
            return None;
        }
        let queues = self.queues.get_or_init(|| {
            // The writers' store has queues of its own, never used, so that
            // they end once every other handle on this one is dropped.
            let writer = Store {
                reports: Reports {
                    queues: Arc::default(),
                    ..self.clone()
                },
                ..store.clone()
            };
            (0..REPORT_WRITERS)
                .map(|_| {
                    let (tx, rx) = mpsc::channel(self.max * 2);
                    tokio::spawn(write_reports(writer.clone(), rx, self.max));
                    tx
                })
                .collect()
        });
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(community_id, &mut hasher);
        let share = std::hash::Hasher::finish(&hasher) as usize % queues.len();
        Some(&queues[share])
    }
}

impl Default for Reports {
    fn default() -> Self {
        Reports::new(crate::settings::DEFAULT_REPORT_BATCH)
    }
}

/// One writer: takes what is waiting (at most `max`), writes it, and again.
async fn write_reports(store: Store, mut queue: mpsc::Receiver<Pending>, max: usize) {
    let mut batch = Vec::with_capacity(max);
    while queue.recv_many(&mut batch, max).await > 0 {
        let span = tracing::info_span!("issues.write_reports", reports = batch.len());
        store
            .write_batch(std::mem::take(&mut batch))
            .instrument(span)
            .await;
    }
}

impl Store {
    /// Reports waiting together, in one transaction: their keys claimed in
    /// one statement, the issues, watchers, events and audit records each
    /// written in one (and each community's heads moved once). Each comes back
    /// in the order of `batch`: its issue, or `None` when its key was already
    /// held, for [`Store::report_alone`] to answer as a retry or a misused key.
    async fn report_together(&self, batch: &[Pending]) -> Result<Vec<Option<pb::Issue>>> {
        let ids: Vec<String> = batch.iter().map(|_| linli_core::new_id()).collect();
        let mut tx = self.db.begin_write().await?;
        let keys: Vec<(&IdemKey, &str)> = batch
            .iter()
            .zip(&ids)
            .map(|(p, id)| (&p.idem, id.as_str()))
            .collect();
        let claimed = idempotency::claim_all(&mut tx, ISSUE_SCOPE, &keys).await?;
        let fresh: Vec<(&Actor, &str, &NewIssue)> = batch
            .iter()
            .zip(&ids)
            .filter(|(p, _)| claimed.contains(&p.idem.key))
            .map(|(p, id)| (&p.actor, id.as_str(), &p.new))
            .collect();
        let made = self.write_new(&mut tx, &fresh).await?;
        let changes = fresh
            .iter()
            .zip(&made)
            .map(|((actor, _, _), (_, change))| (*actor, change.clone()))
            .collect();
        linli_core::audit::record_all(&mut tx, changes).await?;
        tx.commit().await?;
        self.heads.written();
        let mut made = made.into_iter().map(|(issue, _)| issue);
        Ok(batch
            .iter()
            .map(|p| claimed.contains(&p.idem.key).then(|| made.next()).flatten())
            .collect())
    }

    /// Writes a batch and answers each report in it. A key that comes twice
    /// in one batch, a key already held, and every report of a batch the
    /// database refused are written alone afterwards, each in its own
    /// transaction. When the database cannot be reached, all are answered
    /// `UNAVAILABLE` at once.
    async fn write_batch(&self, batch: Vec<Pending>) {
        let mut keys = std::collections::HashSet::new();
        let (together, mut alone): (Vec<Pending>, Vec<Pending>) = batch
            .into_iter()
            .partition(|p| keys.insert(p.idem.key.clone()));
        if together.len() > 1 {
            match self.report_together(&together).await {
                Ok(made) => {
                    let [batches, reports] = &*self.reports.counts;
                    batches.fetch_add(1, Ordering::Relaxed);
                    reports.fetch_add(made.iter().flatten().count() as u64, Ordering::Relaxed);
                    for (p, issue) in together.into_iter().zip(made) {
                        match issue {
                            Some(issue) => {
                                let _ = p.reply.send(Ok(issue));
                            }
                            None => alone.push(p),
                        }
                    }
                }
                // The database cannot be reached: each alone would wait for it
                // in turn, so every report is answered at once instead.
                Err(e) if e.code() == tonic::Code::Unavailable => {
                    tracing::warn!(error = %e, reports = together.len(), "a batch of reports could not be written");
                    for p in together.into_iter().chain(alone) {
                        let _ = p.reply.send(Err(Error::Unavailable(
                            "the database is unavailable; retry later".into(),
                        )));
                    }
                    return;
                }
                // Something in it was refused (a conflict, a value the database
                // cannot store): each is written alone, so only that one fails.
                Err(e) => {
                    tracing::warn!(error = %e, reports = together.len(), "a batch of reports failed; writing each alone");
                    alone.splice(0..0, together);
                }
            }
        } else {
            alone.splice(0..0, together);
        }
        for p in alone {
            let _ = p
                .reply
                .send(self.report_alone(&p.actor, &p.idem, p.new).await);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Category, Source};
    use linli_core::time::now_micros;

    fn new_issue(community_id: &str, title: &str) -> NewIssue {
        NewIssue {
            community_id: community_id.to_owned(),
            compound_id: String::new(),
            building_id: String::new(),
            household_id: format!("household-of-{community_id}"),
            title: title.to_owned(),
            description: String::new(),
            category: Category::Drainage,
            three_most: None,
            location_text: String::new(),
            latitude: 0.0,
            longitude: 0.0,
            source: Source::ResidentReport,
            attachments: Vec::new(),
            reported_at: now_micros(),
            reporter_contact: None,
        }
    }

    /// A batch over several communities, one of its keys already held and
    /// one in it twice: each report is answered, the held key with its first
    /// issue, and every community's stream and audit chain come out whole.
    #[tokio::test]
    async fn a_batch_over_several_communities_is_written_whole() {
        linli_core::audit::use_key([7; 32]);
        let dir = std::env::temp_dir().join(format!("linli-batch-{}", linli_core::new_id()));
        let url = format!("sqlite://{}/issues.db", dir.display());
        let settings = crate::Settings::new(&url, "http://127.0.0.1:9").unwrap();
        let store = crate::open_store(&settings).await.unwrap();
        let actor = Actor::local("linli-test");
        let key = |k: &str| IdemKey {
            key: k.to_owned(),
            fingerprint: format!("fp-{k}"),
        };
        let held = store
            .report_alone(&actor, &key("k0"), new_issue("c1", "first"))
            .await
            .unwrap();

        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for (k, community) in [
            ("k0", "c1"),
            ("k1", "c1"),
            ("k2", "c2"),
            ("k3", "c3"),
            ("k2", "c2"),
            ("k4", "c2"),
        ] {
            let (reply, answer) = tokio::sync::oneshot::channel();
            batch.push(Pending {
                actor: actor.clone(),
                idem: key(k),
                new: new_issue(community, "again"),
                reply,
            });
            answers.push(answer);
        }
        store.write_batch(batch).await;
        let mut ids = Vec::new();
        for answer in answers {
            ids.push(answer.await.unwrap().unwrap().id);
        }
        assert_eq!(ids[0], held.id, "a held key answers with its first issue");
        assert_eq!(ids[2], ids[4], "a key twice in one batch makes one issue");
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 5);
        assert_eq!(store.reports.written_together(), (1, 4));

        for (community, issues) in [("c1", 2), ("c2", 2), ("c3", 1)] {
            let chain = linli_core::audit::verify(&store.db, community)
                .await
                .unwrap();
            assert!(
                chain.intact && chain.checked == issues,
                "{community}: {chain:?}"
            );
            let seqs: Vec<i64> = sqlx::query_scalar(
                "SELECT seq FROM issue_events WHERE community_id = $1 ORDER BY seq",
            )
            .bind(community)
            .fetch_all(&store.db.pool)
            .await
            .unwrap();
            assert_eq!(seqs, (1..=issues).collect::<Vec<i64>>(), "{community}");
        }
        store.db.pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
