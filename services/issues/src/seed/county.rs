//! The benchmark county's issues: written in batches straight into the tables.
use super::*;

/// A benchmark county's year of issues (clearly not real data), written
/// straight into the tables in batches for speed — 100,000 issues through the
/// API would take most of an hour — with the same rows, timelines and
/// deadlines the API would write: each issue walked through the state machine
/// ([`domain::apply`]), its events numbered on the community's stream, one
/// audit record per batch (`issue.seed_county`, with the count). Every
/// community the people service knows gets `per_community` issues spread over
/// the last 365 days; the last two weeks' are at every stage, the older ones
/// closed. Running it again tops each community up to `per_community`. The
/// deadlines the seeded issues missed are escalated at the end, as the
/// service's sweep would have done.
pub async fn county(
    store: &Store,
    people: &People,
    actor: &Actor,
    per_community: usize,
    jobs: usize,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let communities = people.communities(actor).await?;
    let started = std::time::Instant::now();
    let total = communities.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let done = &done;
    let mut runs = futures_util::stream::iter(communities.into_iter().enumerate().map(
        |(i, community)| async move {
            let written =
                county_community(store, people, actor, &community, i, per_community).await?;
            let so_far = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if so_far.is_multiple_of(10) || so_far == total {
                eprintln!(
                    "county issues: {so_far}/{total} communities ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            anyhow::Ok(written)
        },
    ))
    .buffer_unordered(jobs.max(1));
    let mut written = 0;
    while let Some(n) = runs.next().await {
        written += n?;
    }
    // Written in bulk, faster than autovacuum notices: the planner is told
    // the tables' new sizes now, as it would learn them over a year of use,
    // and on PostgreSQL the pages are vacuumed (marked all-visible, so that
    // counts can be read from an index alone) as autovacuum would have.
    for table in ["issues", "issue_events", "issue_watchers"] {
        let sql = match store.db.backend {
            linli_core::db::Backend::Postgres => format!("VACUUM (ANALYZE) {table}"),
            linli_core::db::Backend::Sqlite => format!("ANALYZE {table}"),
        };
        // VACUUM cannot run in a transaction: each statement on its own.
        sqlx::Executor::execute(&store.db.writer, sql.as_str()).await?;
    }
    // The deadlines the seeded issues have missed are escalated now, as the
    // service's sweep would have done as each one passed. Left to the first
    // sweep after seeding, thousands are escalated at once (each an event on
    // its community's stream) under whatever is being measured then.
    let sweep = store
        .run_supervision(linli_core::time::now_micros())
        .await?;
    println!(
        "benchmark county: {written} issues written, {per_community} per community in {total} communities; \
         {} missed deadlines escalated, {} resolutions closed unconfirmed ({:.1} s)",
        sweep.escalated,
        sweep.auto_closed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Issues written per transaction.
const BATCH: usize = 200;

async fn county_community(
    store: &Store,
    people: &People,
    actor: &Actor,
    community: &ppb::Place,
    index: usize,
    per_community: usize,
) -> anyhow::Result<usize> {
    let (have,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM issues WHERE community_id = $1")
        .bind(&community.id)
        .fetch_one(&store.db.pool)
        .await?;
    let have = usize::try_from(have).unwrap_or(0);
    if have >= per_community {
        return Ok(0);
    }
    let households = people.household_list(actor, &community.id, 0).await?;
    let cadres = people.cadres(actor, &community.id).await?;
    if households.is_empty() || cadres.is_empty() {
        // A community without a roster or cadres (e.g. one made by hand) gets none.
        return Ok(0);
    }
    let now = now_micros();
    let mut n = have;
    while n < per_community {
        let end = (n + BATCH).min(per_community);
        let issues: Vec<(IssueRecord, Vec<Step>)> = (n..end)
            .map(|k| walk(store, community, index, k, &households, &cadres, now))
            .collect();
        write_batch(store, actor, &community.id, &issues).await?;
        n = end;
    }
    Ok(per_community - have)
}

/// One event of a seeded issue's timeline.
struct Step {
    at: i64,
    kind: crate::domain::EventKind,
    from: Option<IssueState>,
    to: Option<IssueState>,
    note: String,
}

/// Issue `k` of a benchmark community, walked as far as its plan and the clock allow.
fn walk(
    store: &Store,
    community: &ppb::Place,
    index: usize,
    k: usize,
    households: &[ppb::Household],
    cadres: &[ppb::Cadre],
    now: i64,
) -> (IssueRecord, Vec<Step>) {
    use crate::domain::{self, EventKind};
    // A fixed scatter of the year over the issues (Knuth's multiplicative hash).
    let mix = (k as u64 ^ ((index as u64) << 32)).wrapping_mul(2_654_435_761) % 1_000_003;
    let days_ago = (mix % 365) as i64;
    let reported_at = now - days_ago * DAY - ((mix / 365) % 20) as i64 * HOUR - HOUR;
    let (title, category) = TITLES[k % TITLES.len()];
    let three_most = [
        None,
        None,
        Some(ThreeMost::MostWorrying),
        None,
        Some(ThreeMost::MostDistressing),
        Some(ThreeMost::MostVexing),
    ][k % 6];
    // Older issues are done with; the last two weeks' are at every stage.
    let (target, claim_days, fix_days, rating) = if days_ago < 14 {
        plan(k)
    } else if k % 20 == 18 {
        (IssueState::Rejected, 0, 0, 0)
    } else {
        (
            IssueState::Verified,
            (k % 3) as i64,
            2 + (k % 9) as i64,
            [5, 5, 4, 5, 3, 4, 5][k % 7],
        )
    };
    let household = &households[(k * 7) % households.len()];
    let cadre = &cadres[k % cadres.len()];
    let resolution_due = store
        .policy
        .resolution_due(reported_at, category, three_most);
    let mut issue = domain::Issue {
        state: IssueState::Reported,
        claim: None,
        claimed_at: None,
        first_claimed_at: None,
        responded_at: None,
        resolved_at: None,
        closed_at: None,
        resolution_due_at: resolution_due,
        rating: None,
        rating_comment: String::new(),
        duplicate_of: String::new(),
        reject_reason: String::new(),
        reopen_count: 0,
        attachments: vec![],
    };
    let mut steps = vec![Step {
        at: reported_at,
        kind: EventKind::Reported,
        from: None,
        to: Some(IssueState::Reported),
        note: String::new(),
    }];
    let mut actions: Vec<(Action, i64)> = Vec::new();
    if target == IssueState::Rejected {
        let reason = "不属于社区管辖，已转交市政".to_owned();
        actions.push((Action::Reject { reason }, reported_at + 5 * HOUR));
    } else if target != IssueState::Reported {
        actions.push((Action::Acknowledge, reported_at + 3 * HOUR));
        let claimant = Claimant {
            cadre_id: Some(cadre.id.clone()),
            unit_id: cadre.unit_id.clone(),
            participants: vec![],
        };
        let claimed = reported_at + claim_days * DAY + 4 * HOUR;
        let fixed = reported_at + fix_days.max(claim_days + 1) * DAY;
        let steps_to = [
            (IssueState::Claimed, Action::Claim(claimant), claimed),
            (IssueState::InProgress, Action::Start, claimed + 2 * HOUR),
            (IssueState::Resolved, Action::Resolve(vec![]), fixed),
            (
                IssueState::Verified,
                Action::Confirm {
                    rating,
                    comment: String::new(),
                },
                fixed + DAY,
            ),
        ];
        let reach = match target {
            IssueState::Acknowledged => 0,
            IssueState::Claimed => 1,
            IssueState::InProgress => 2,
            IssueState::Resolved => 3,
            _ => 4,
        };
        actions.extend(steps_to.into_iter().take(reach).map(|(_, a, at)| (a, at)));
    }
    let mut last = reported_at;
    let mut version = 1;
    for (action, at) in actions {
        // Moves still in the future have not happened yet.
        if at > now {
            break;
        }
        let from = issue.state;
        let note = match &action {
            Action::Reject { reason } => reason.clone(),
            _ => String::new(),
        };
        let Ok(kind) = domain::apply(&mut issue, action, at) else {
            break;
        };
        steps.push(Step {
            at,
            kind,
            from: Some(from),
            to: (issue.state != from).then_some(issue.state),
            note,
        });
        last = at;
        version += 1;
    }
    let record = IssueRecord {
        community_id: community.id.clone(),
        id: linli_core::new_id(),
        compound_id: household.compound_id.clone(),
        building_id: household.building_id.clone(),
        household_id: household.id.clone(),
        title: title.into(),
        description: String::new(),
        category,
        three_most,
        location_text: household.address.clone(),
        latitude: 0.0,
        longitude: 0.0,
        source: if k % 4 == 3 {
            Source::FoundOnVisit
        } else {
            Source::ResidentReport
        },
        reported_at,
        response_due_at: store.policy.response_due(reported_at, three_most),
        last_event_at: last,
        version,
        reporter_contact: None,
        original_resolution_due_at: resolution_due,
        domain: issue,
    };
    (record, steps)
}

async fn write_batch(
    store: &Store,
    actor: &Actor,
    community_id: &str,
    issues: &[(IssueRecord, Vec<Step>)],
) -> anyhow::Result<()> {
    use crate::store::{
        Contact, EVENT_COLS, ISSUE_INSERT_COLS, attachments_to_json, count_resolved,
        participants_to_db,
    };
    use linli_core::db::Values;
    use sqlx::Row;
    let mut tx = store.db.begin_write().await?;
    let events: i64 = issues.iter().map(|(_, s)| s.len() as i64).sum();
    let heads = linli_core::db::advance_heads(
        &mut tx,
        "event_heads",
        "seq",
        "INSERT INTO event_heads (community_id, seq) VALUES ($1, 0) ON CONFLICT (community_id) DO NOTHING",
        &[(community_id, events)].into(),
    )
    .await?;
    let last_seq: i64 = heads[community_id].try_get("seq")?;
    let mut seq = last_seq - events;

    // Issues, with their first resolution deadline once they have moved.
    let mut rows = Values::default();
    for (r, _) in issues {
        let d = &r.domain;
        let claim = d.claim.clone().unwrap_or_default();
        let moved = r.version > 1;
        rows.bind(r.community_id.clone())?
            .bind(r.id.clone())?
            .bind(r.compound_id.clone())?
            .bind(r.building_id.clone())?
            .bind(r.household_id.clone())?
            .bind(r.title.clone())?
            .bind(r.description.clone())?
            .bind(r.category.as_str())?
            .bind(r.three_most.map_or("", ThreeMost::as_str))?
            .bind(r.location_text.clone())?
            .bind(r.latitude)?
            .bind(r.longitude)?
            .bind(r.source.as_str())?
            .bind(d.state.as_str())?
            .bind(claim.cadre_id.clone().unwrap_or_default())?
            .bind(claim.unit_id.clone())?
            .bind(participants_to_db(&claim.participants))?
            .bind(d.claimed_at)?
            .bind(d.first_claimed_at)?
            .bind(r.reported_at)?
            .bind(r.response_due_at)?
            .bind(d.resolution_due_at)?
            .bind(d.responded_at)?
            .bind(d.resolved_at)?
            .bind(d.closed_at)?
            .bind(d.rating.map(i64::from))?
            .bind(d.rating_comment.clone())?
            .bind(d.duplicate_of.clone())?
            .bind(d.reject_reason.clone())?
            .bind(i64::from(d.reopen_count))?
            .bind(attachments_to_json(&d.attachments))?
            .bind(r.last_event_at)?
            .bind(r.version)?
            .bind(Contact::to_db(r.reporter_contact.as_ref()))?
            .bind(moved.then_some(r.original_resolution_due_at))?
            .row();
    }
    rows.insert(
        &mut tx,
        &format!("INSERT INTO issues ({ISSUE_INSERT_COLS}, first_resolution_due_at)"),
    )
    .await?;
    let resolved = issues
        .iter()
        .filter(|(r, _)| r.domain.state.is_resolved())
        .count();
    count_resolved(&mut tx, community_id, resolved as i64).await?;

    // Watchers and events, in slices that keep under every backend's limit of parameters.
    let mut watchers = Values::default();
    for (r, _) in issues {
        watchers
            .bind(r.community_id.clone())?
            .bind(r.id.clone())?
            .bind(r.household_id.clone())?
            .row();
    }
    watchers
        .insert(
            &mut tx,
            "INSERT INTO issue_watchers (community_id, issue_id, household_id)",
        )
        .await?;
    let all: Vec<(&IssueRecord, &Step)> = issues
        .iter()
        .flat_map(|(r, steps)| steps.iter().map(move |s| (r, s)))
        .collect();
    for slice in all.chunks(500) {
        let mut rows = Values::default();
        for (r, s) in slice {
            seq += 1;
            rows.bind(r.community_id.clone())?
                .bind(seq)?
                .bind(linli_core::new_id())?
                .bind(r.id.clone())?
                .bind(s.at)?
                .bind(actor.id.clone())?
                .bind(s.kind.as_str())?
                .bind(s.from.map_or("", IssueState::as_str))?
                .bind(s.to.map_or("", IssueState::as_str))?
                .bind(s.note.clone())?
                .bind("[]")?
                .row();
        }
        rows.insert(&mut tx, &format!("INSERT INTO issue_events ({EVENT_COLS})"))
            .await?;
    }
    let change = linli_core::audit::Change::created(
        community_id,
        "issue.seed_county",
        "community",
        community_id,
        serde_json::json!({
            "issues": issues.len(),
            "events": events,
            "first_id": issues.first().map(|(r, _)| r.id.clone()),
            "last_id": issues.last().map(|(r, _)| r.id.clone()),
        }),
    );
    linli_core::audit::record(&mut tx, actor, change).await?;
    tx.commit().await?;
    Ok(())
}
