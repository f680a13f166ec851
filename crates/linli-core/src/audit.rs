//! The append-only audit trail: who changed what, when, before and after.
//!
//! Each community has its own hash chain (county-wide records use the empty
//! community id). A record's hash covers its content and the previous record's
//! hash, so editing or deleting a record breaks every later link, and
//! [`verify`] reports the first broken one. Chains are per community so that
//! communities never wait on each other and the table can be sharded by
//! community.
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use linli_proto::common::v1::{AuditEvent, AuditVerification};

use crate::page::PageRequest;
use crate::{Actor, Db, Error, Result};

/// One change, as a service describes it.
#[derive(Debug, Clone)]
pub struct Change {
    pub community_id: String,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Change {
    /// A record made: nothing before, `after` after.
    pub fn created(
        community_id: impl Into<String>,
        action: impl Into<String>,
        entity: impl Into<String>,
        entity_id: impl Into<String>,
        after: Value,
    ) -> Self {
        Change {
            community_id: community_id.into(),
            action: action.into(),
            entity: entity.into(),
            entity_id: entity_id.into(),
            before: None,
            after: Some(after),
        }
    }

    /// A record changed from `before` to `after`.
    pub fn updated(
        community_id: impl Into<String>,
        action: impl Into<String>,
        entity: impl Into<String>,
        entity_id: impl Into<String>,
        before: Value,
        after: Value,
    ) -> Self {
        Change {
            before: Some(before),
            ..Change::created(community_id, action, entity, entity_id, after)
        }
    }
}

/// The key the chains are sealed with, set once per process from the signing key.
static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// Seals this process's audit records with `key` (the first key set stays).
pub fn use_key(key: [u8; 32]) {
    if KEY.set(key).is_err() && KEY.get() != Some(&key) {
        tracing::warn!("a second audit key was offered and ignored: one process, one key");
    }
}

/// HMAC-SHA-256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Marks a record sealed with the key; records without it predate keying.
const KEYED: &str = "hmac-sha256:";

/// A record's seal: an HMAC of its fields and the seal before it.
fn seal(e: &AuditEvent) -> Result<String> {
    let key = KEY.get().ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "the audit key is not configured (it comes from the signing key)"
        ))
    })?;
    Ok(format!(
        "{KEYED}{}",
        hex::encode(hmac_sha256(key, canonical(e).as_bytes()))
    ))
}

fn link_hash(e: &AuditEvent) -> String {
    hex::encode(Sha256::digest(canonical(e)))
}

fn canonical(e: &AuditEvent) -> String {
    // A JSON array is an unambiguous encoding of the fields, whatever they contain.
    let canonical = serde_json::json!([
        e.community_id,
        e.seq,
        e.id,
        e.at.as_ref().map(|t| (t.seconds, t.nanos)),
        e.actor,
        e.action,
        e.entity,
        e.entity_id,
        e.before_json,
        e.after_json,
        e.prev_hash,
    ]);
    canonical.to_string()
}

/// Appends a change to its community's chain, inside the caller's transaction.
pub async fn record(conn: &mut AnyConnection, actor: &Actor, change: Change) -> Result<AuditEvent> {
    let mut events = record_all(conn, vec![(actor, change)]).await?;
    Ok(events.remove(0))
}

/// Appends changes to their communities' chains, inside the caller's
/// transaction, in the order given within each community; the records come
/// back in the order of `changes`. The heads of all the chains are moved on
/// in one statement and sealed in one, and the records written in one, so a
/// batch of creates costs three statements (four on PostgreSQL, which locks
/// the heads first when there are several), not three a change.
///
/// Taking a head's row lock orders concurrent writers to one chain
/// ([`crate::db::advance_heads`]).
pub async fn record_all(
    conn: &mut AnyConnection,
    changes: Vec<(&Actor, Change)>,
) -> Result<Vec<AuditEvent>> {
    let mut by_community = std::collections::BTreeMap::<String, Vec<usize>>::new();
    for (i, (_, change)) in changes.iter().enumerate() {
        by_community
            .entry(change.community_id.clone())
            .or_default()
            .push(i);
    }
    // Whole microseconds, so the stored time hashes the same when read back.
    let at = crate::time::now_micros();
    let json = |v: &Option<Value>| v.as_ref().map(Value::to_string).unwrap_or_default();
    let mut events: Vec<Option<AuditEvent>> = vec![None; changes.len()];
    let counts = by_community
        .iter()
        .map(|(community, indexes)| (community.as_str(), indexes.len() as i64))
        .collect();
    let heads = crate::db::advance_heads(
        conn,
        "audit_heads",
        "seq, hash",
        "INSERT INTO audit_heads (community_id, seq, hash) VALUES ($1, 0, '') ON CONFLICT (community_id) DO NOTHING",
        &counts,
    )
    .await?;
    // Each chain's new last hash, to seal its head with.
    let mut sealed = crate::db::Values::default();
    for (community, indexes) in &by_community {
        let head = &heads[community];
        let last: i64 = head.try_get("seq")?;
        // The hash the first new record links to: the head's as it stood.
        let mut prev_hash: String = head.try_get("hash")?;
        for (seq, &i) in (last - indexes.len() as i64 + 1..).zip(indexes) {
            let (actor, change) = &changes[i];
            let mut event = AuditEvent {
                id: crate::new_id(),
                community_id: community.clone(),
                seq,
                at: Some(crate::time::to_timestamp(at)),
                actor: actor.id.clone(),
                action: change.action.clone(),
                entity: change.entity.clone(),
                entity_id: change.entity_id.clone(),
                before_json: json(&change.before),
                after_json: json(&change.after),
                prev_hash,
                hash: String::new(),
            };
            event.hash = seal(&event)?;
            prev_hash = event.hash.clone();
            events[i] = Some(event);
        }
        sealed.bind(community.clone())?.bind(prev_hash)?.row();
    }
    crate::db::update_heads(conn, "audit_heads", "hash = d.h", &["c", "h"], sealed, "").await?;
    let events: Vec<AuditEvent> = events.into_iter().flatten().collect();
    let mut rows = crate::db::Values::default();
    for e in &events {
        rows.bind(e.community_id.clone())?
            .bind(e.seq)?
            .bind(e.id.clone())?
            .bind(at)?
            .bind(e.actor.clone())?
            .bind(e.action.clone())?
            .bind(e.entity.clone())?
            .bind(e.entity_id.clone())?
            .bind(e.before_json.clone())?
            .bind(e.after_json.clone())?
            .bind(e.prev_hash.clone())?
            .bind(e.hash.clone())?
            .row();
    }
    rows.insert(conn, &format!("INSERT INTO audit_events ({COLUMNS})"))
        .await?;
    Ok(events)
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        seq: row.try_get("seq")?,
        at: Some(crate::time::to_timestamp(row.try_get("at")?)),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        entity: row.try_get("entity")?,
        entity_id: row.try_get("entity_id")?,
        before_json: row.try_get("before_json")?,
        after_json: row.try_get("after_json")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

const COLUMNS: &str = "community_id, seq, id, at, actor, action, entity, entity_id, before_json, after_json, prev_hash, hash";

/// `ListAuditEvents` as every service serves it: ids checked, then [`list`].
pub async fn list_request(
    db: &Db,
    actor: &Actor,
    community_id: &str,
    entity_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<AuditEvent>, String)> {
    let community =
        crate::validate::parse_opt_id("community_id", community_id)?.unwrap_or_default();
    let entity = crate::validate::parse_opt_id("entity_id", entity_id)?.unwrap_or_default();
    // Another community's trail, or the county-wide one for a caller limited to communities, is not there.
    actor.check_community_id(&community)?;
    list(db, &community, &entity, page_size, page_token).await
}

/// `VerifyAuditTrail` as every service serves it: the id checked, then [`verify`].
pub async fn verify_request(
    db: &Db,
    actor: &Actor,
    community_id: &str,
) -> Result<AuditVerification> {
    let community =
        crate::validate::parse_opt_id("community_id", community_id)?.unwrap_or_default();
    actor.check_community_id(&community)?;
    verify(db, &community).await
}

/// Lists a community's audit events in chain order, optionally about one record.
/// The page token is the last sequence number seen.
pub async fn list(
    db: &Db,
    community_id: &str,
    entity_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<AuditEvent>, String)> {
    let page = PageRequest::parse(page_size, "")?;
    let after: i64 = match page_token {
        "" => 0,
        t => t
            .parse()
            .map_err(|_| Error::invalid("page_token", "is not a token this service issued"))?,
    };
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_events WHERE community_id = $1 AND ($2 = '' OR entity_id = $2) AND seq > $3 \
         ORDER BY seq LIMIT $4"
    ))
    .bind(community_id)
    .bind(entity_id)
    .bind(after)
    .bind(page.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    let mut events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>>>()?;
    let next = if events.len() as i64 > page.size {
        events.truncate(page.size as usize);
        events.last().map(|e| e.seq.to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((events, next))
}

/// A community's events after `after_seq` about records of the given kinds, in
/// chain order: the change feed a watch streams.
pub async fn events_after(
    db: &Db,
    community_id: &str,
    after_seq: i64,
    entities: &[&str],
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    let placeholders: Vec<String> = (0..entities.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events WHERE community_id = $1 AND seq > $2 AND entity IN ({}) \
         ORDER BY seq LIMIT $3",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(community_id)
        .bind(after_seq)
        .bind(limit);
    for e in entities {
        q = q.bind(*e);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(event_from_row).collect()
}

/// The position of a community's newest audit record (0 for none): where a
/// watch that wants only what happens from now on starts.
pub async fn head_seq(db: &Db, community_id: &str) -> Result<i64> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM audit_heads WHERE community_id = $1")
            .bind(community_id)
            .fetch_optional(&db.pool)
            .await?;
    Ok(seq.unwrap_or(0))
}

/// Walks a community's chain from the start and reports the first broken link.
pub async fn verify(db: &Db, community_id: &str) -> Result<AuditVerification> {
    let mut result = AuditVerification {
        community_id: community_id.to_owned(),
        intact: true,
        ..Default::default()
    };
    let mut prev_hash = String::new();
    let mut sealed_before = false;
    let mut expected_seq = 1;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE community_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000"
        ))
        .bind(community_id)
        .bind(after)
        .fetch_all(&db.pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = event_from_row(row)?;
            after = event.seq;
            result.checked += 1;
            let keyed = event.hash.starts_with(KEYED);
            let problem = if event.seq != expected_seq {
                Some(format!("record {expected_seq} is missing"))
            } else if event.prev_hash != prev_hash {
                Some("does not link to the record before it".to_owned())
            } else if !keyed && sealed_before {
                // Records before keying are covered by the first sealed one, which
                // seals their last hash; an unsealed record after it is a forgery.
                Some("is not sealed with the audit key, though records before it are".to_owned())
            } else if keyed && seal(&event)? != event.hash {
                Some("its content does not match its seal".to_owned())
            } else if !keyed && link_hash(&event) != event.hash {
                Some("its content does not match its hash".to_owned())
            } else {
                None
            };
            sealed_before |= keyed;
            if let Some(problem) = problem {
                result.intact = false;
                result.first_broken_seq = expected_seq.min(event.seq);
                result.problem = problem;
                return Ok(result);
            }
            prev_hash = event.hash;
            expected_seq += 1;
        }
    }
    // A chain cut off at the end is caught by the head, which remembers the last hash.
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE community_id = $1")
            .bind(community_id)
            .fetch_optional(&db.pool)
            .await?;
    if let Some((seq, hash)) = head
        && (seq != expected_seq - 1 || hash != prev_hash)
    {
        result.intact = false;
        result.first_broken_seq = expected_seq;
        result.problem = format!(
            "the chain ends at record {} but its head says {seq}",
            expected_seq - 1
        );
    }
    Ok(result)
}

/// The two audit RPCs every service serves, as handler functions over the
/// service's own `pb` messages (which must be in scope as `pb`, with `Request`,
/// `Response`, `Resp` and `Actor`): the caller kept to their communities' trails.
#[macro_export]
macro_rules! audit_handlers {
    ($api:ty) => {
        pub(crate) async fn list_audit_events(
            api: &$api,
            actor: &Actor,
            req: Request<pb::ListAuditEventsRequest>,
        ) -> Resp<pb::ListAuditEventsResponse> {
            let r = req.into_inner();
            let (events, next_page_token) = $crate::audit::list_request(
                &api.store.db,
                actor,
                &r.community_id,
                &r.entity_id,
                r.page_size,
                &r.page_token,
            )
            .await?;
            Ok(Response::new(pb::ListAuditEventsResponse {
                events,
                next_page_token,
            }))
        }

        pub(crate) async fn verify_audit_trail(
            api: &$api,
            actor: &Actor,
            req: Request<pb::VerifyAuditTrailRequest>,
        ) -> Resp<pb::VerifyAuditTrailResponse> {
            let verification =
                $crate::audit::verify_request(&api.store.db, actor, &req.get_ref().community_id)
                    .await?;
            Ok(Response::new(pb::VerifyAuditTrailResponse {
                verification: Some(verification),
            }))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Someone who can write to the database rewrites a record and recomputes
    /// every later link, as they could with an unkeyed chain: verification
    /// still finds the record, since they cannot make the seals.
    #[tokio::test]
    async fn a_rewritten_and_resealed_chain_is_caught_without_the_key() {
        use_key([7; 32]);
        let dir = std::env::temp_dir().join(format!("linli-audit-{}", crate::new_id()));
        let db = Db::connect(&format!("sqlite://{}/a.db", dir.display()))
            .await
            .unwrap();
        db.migrate(crate::db::CORE_MIGRATIONS).await.unwrap();
        let actor = Actor::local("test");
        for i in 0..3 {
            let mut tx = db.begin_write().await.unwrap();
            let change = Change::created(
                "c",
                "thing.create",
                "thing",
                format!("t{i}"),
                json!({"n": i}),
            );
            record(&mut tx, &actor, change).await.unwrap();
            tx.commit().await.unwrap();
        }
        assert!(verify(&db, "c").await.unwrap().intact);

        for forged_with in ["no key", "another key"] {
            // Rewrite record 2, then re-link 2 and 3 and the head the way an unkeyed chain allows.
            let mut events = list(&db, "c", "", 10, "").await.unwrap().0;
            events[1].after_json = r#"{"n":100}"#.into();
            for i in 1..3 {
                events[i].prev_hash = events[i - 1].hash.clone();
                events[i].hash = match forged_with {
                    "no key" => link_hash(&events[i]),
                    _ => format!(
                        "{KEYED}{}",
                        hex::encode(hmac_sha256(&[9; 32], canonical(&events[i]).as_bytes()))
                    ),
                };
                sqlx::query("UPDATE audit_events SET after_json = $3, prev_hash = $4, hash = $5 WHERE community_id = $1 AND seq = $2")
                    .bind("c")
                    .bind(events[i].seq)
                    .bind(&events[i].after_json)
                    .bind(&events[i].prev_hash)
                    .bind(&events[i].hash)
                    .execute(&db.writer)
                    .await
                    .unwrap();
            }
            sqlx::query("UPDATE audit_heads SET hash = $2 WHERE community_id = $1")
                .bind("c")
                .bind(&events[2].hash)
                .execute(&db.writer)
                .await
                .unwrap();
            let v = verify(&db, "c").await.unwrap();
            assert!(!v.intact, "{forged_with}: {v:?}");
            assert_eq!(v.first_broken_seq, 2, "{forged_with}: {v:?}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
