//! Intake: residents' problems reported, looked up, listed and followed on their timeline.
use std::collections::HashMap;

use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{now_micros, past_or_now};
use linli_core::validate::{
    optional_enum, parse_id, parse_name, parse_opt_id, parse_text, required_enum,
};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::issues::v1 as pb;

use crate::api::*;
use crate::domain::*;
use crate::store::*;

/// Where report keys are kept.
const ISSUE_SCOPE: &str = "issues.issue";

pub(crate) async fn report_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ReportIssueRequest>,
) -> Resp<pb::ReportIssueResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let source = required_enum("source", r.source, Source::from_proto)?;
    let location = r.location.unwrap_or_default();
    if !(-90.0..=90.0).contains(&location.latitude) || location.latitude.is_nan() {
        return Err(Error::invalid("location.latitude", "must be between -90 and 90").into());
    }
    if !(-180.0..=180.0).contains(&location.longitude) || location.longitude.is_nan() {
        return Err(Error::invalid("location.longitude", "must be between -180 and 180").into());
    }
    let household_id = parse_opt_id("household_id", &r.household_id)?;
    let community_id = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community_id)?;
    if actor.role == Role::Resident && household_id.as_deref() != actor.household.as_deref() {
        return Err(Error::invalid("household_id", "must be your own household").into());
    }
    if source == Source::ResidentReport && household_id.is_none() {
        return Err(Error::invalid("household_id", "is required for a resident's report").into());
    }
    let title = parse_name("title", &r.title)?;
    let new = NewIssue {
        community_id,
        compound_id: parse_opt_id("compound_id", &r.compound_id)?.unwrap_or_default(),
        building_id: parse_opt_id("building_id", &r.building_id)?.unwrap_or_default(),
        household_id: household_id.clone().unwrap_or_default(),
        title,
        description: parse_text("description", &r.description, 2000)?,
        category: required_enum("category", r.category, Category::from_proto)?,
        three_most: optional_enum("three_most", r.three_most, ThreeMost::from_proto)?,
        location_text: parse_text("location.text", &location.text, 200)?,
        latitude: location.latitude,
        longitude: location.longitude,
        source,
        attachments: parse_attachments(&r.attachments)?,
        reported_at: past_or_now("reported_at", r.reported_at.as_ref())?,
    };
    // A retry gets the issue it made without asking people again. When the
    // checks below would not ask people anyway, the create's own claim of the
    // key finds the issue, and this read is spared.
    if !api
        .people
        .confirmed(&new.community_id, household_id.as_deref())
        && let Some(id) = idempotency::replayed(&api.store.db, ISSUE_SCOPE, &idem).await?
    {
        return Ok(Response::new(pb::ReportIssueResponse {
            issue: Some(api.store.get(&id).await?),
        }));
    }
    // Both asked at once (each answered from memory if people confirmed it lately).
    let (community, household) =
        tokio::join!(api.people.community(actor, &new.community_id), async {
            match &household_id {
                Some(h) => api.people.household_community(actor, h).await.map(Some),
                None => Ok(None),
            }
        });
    community?;
    if household?.is_some_and(|c| c != new.community_id) {
        return Err(Error::invalid("household_id", "is not in this community").into());
    }
    let issue = api.store.report(actor, &idem, new).await?;
    Ok(Response::new(pb::ReportIssueResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn get_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::GetIssueRequest>,
) -> Resp<pb::GetIssueResponse> {
    let id = parse_id("issue_id", &req.get_ref().issue_id)?;
    api.issue_in_reach(actor, &id).await?;
    Ok(Response::new(pb::GetIssueResponse {
        issue: Some(api.store.get(&id).await?),
    }))
}

pub(crate) async fn list_issues(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ListIssuesRequest>,
) -> Resp<pb::ListIssuesResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let filter = IssueFilter {
        community_id: actor.community_filter("community_id", &r.community_id)?,
        state: optional_enum("state", r.state, IssueState::from_proto)?,
        category: optional_enum("category", r.category, Category::from_proto)?,
        three_most: optional_enum("three_most", r.three_most, ThreeMost::from_proto)?,
        claimant_id: parse_opt_id("claimant_id", &r.claimant_id)?.unwrap_or_default(),
        overdue_only: r.overdue_only,
        open_only: r.open_only,
        title_contains: parse_text("title_contains", &r.title_contains, 100)?,
        household_id: match actor.role {
            Role::Resident => actor.household.clone().unwrap_or_else(|| "-".into()),
            _ => String::new(),
        },
        reported_by: parse_opt_id("household_id", &r.household_id)?.unwrap_or_default(),
    };
    let (issues, next_page_token) = api.store.list(&filter, &page).await?;
    Ok(Response::new(pb::ListIssuesResponse {
        issues,
        next_page_token,
    }))
}

pub(crate) async fn get_timeline(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::GetTimelineRequest>,
) -> Resp<pb::GetTimelineResponse> {
    let id = parse_id("issue_id", &req.get_ref().issue_id)?;
    api.issue_in_reach(actor, &id).await?;
    Ok(Response::new(pb::GetTimelineResponse {
        events: api.store.timeline(&id).await?,
    }))
}

impl Store {
    pub async fn report(&self, actor: &Actor, idem: &IdemKey, new: NewIssue) -> Result<pb::Issue> {
        let issue = idempotency::create(
            &(self, actor),
            &self.db,
            actor,
            ISSUE_SCOPE,
            idem,
            |&(s, _), tx, existing| {
                Box::pin(async move {
                    let r = s.load(&mut *tx, existing).await?;
                    s.to_proto(&mut *tx, &r).await
                })
            },
            |&(s, actor), tx, id| {
                Box::pin(async move {
                let response_due = s.policy.response_due(new.reported_at, new.three_most);
                let resolution_due =
                    s.policy
                        .resolution_due(new.reported_at, new.category, new.three_most);
                // Written and read back in one statement.
                let row = sqlx::query(&format!(
                    "INSERT INTO issues ({ISSUE_INSERT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'reported', '', '', '', NULL, NULL, \
                     $14, $15, $16, NULL, NULL, NULL, NULL, '', '', '', 0, $17, $14, 1) RETURNING {ISSUE_COLS}"
                ))
                .bind(&new.community_id)
                .bind(id)
                .bind(&new.compound_id)
                .bind(&new.building_id)
                .bind(&new.household_id)
                .bind(&new.title)
                .bind(&new.description)
                .bind(new.category.as_str())
                .bind(new.three_most.map_or("", ThreeMost::as_str))
                .bind(&new.location_text)
                .bind(new.latitude)
                .bind(new.longitude)
                .bind(new.source.as_str())
                .bind(new.reported_at)
                .bind(response_due)
                .bind(resolution_due)
                .bind(attachments_to_json(&new.attachments))
                .fetch_one(&mut *tx)
                .await?;
                let r = record_from_row(&row)?;
                if !new.household_id.is_empty() {
                    sqlx::query("INSERT INTO issue_watchers (community_id, issue_id, household_id) VALUES ($1, $2, $3)")
                        .bind(&new.community_id)
                        .bind(id)
                        .bind(&new.household_id)
                        .execute(&mut *tx)
                        .await?;
                }
                append_event(
                    &mut *tx,
                    actor,
                    NewEvent {
                        issue: &r,
                        at: new.reported_at,
                        kind: EventKind::Reported,
                        from: None,
                        to: Some(IssueState::Reported),
                        note: "",
                        attachments: &new.attachments,
                    },
                )
                .await?;
                    let change = Change::created(
                        &r.community_id,
                        "issue.report",
                        "issue",
                        id,
                        r.audit_json(),
                    );
                    // Its one watcher, if any, is the household that reported it.
                    let watchers = Vec::from_iter(
                        (!new.household_id.is_empty()).then(|| new.household_id.clone()),
                    );
                    Ok(Made::new(r.to_proto(watchers), change))
                })
            },
        )
        .await?;
        self.heads.written();
        Ok(issue)
    }

    pub async fn list(
        &self,
        filter: &IssueFilter,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Issue>, String)> {
        let escaped = filter
            .title_contains
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let title = if escaped.is_empty() {
            String::new()
        } else {
            format!("%{}%", escaped.to_lowercase())
        };
        let claimant = if filter.claimant_id.is_empty() {
            String::new()
        } else {
            format!("%,{},%", filter.claimant_id)
        };
        let now = now_micros();
        // Written out rather than guarded by a parameter, so that the planner
        // can read open issues from their own index (`issues_open`) instead of
        // walking a community's whole history for the first page.
        let open = if filter.open_only {
            format!("$12 = 1 AND {OPEN_SQL}")
        } else {
            "$12 = 0".to_owned()
        };
        let sql = format!(
            "SELECT {ISSUE_COLS} FROM issues WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR category = $3) \
             AND ($4 = '' OR three_most = $4) AND ($5 = '' OR claim_cadre_id = $5 OR claim_unit_id = $5 OR claim_participants LIKE $6) \
             AND ($7 = 0 OR (state = 'reported' AND response_due_at < $8) OR ({OPEN_SQL} AND resolution_due_at < $8)) \
             AND ($9 = '' OR LOWER(title) LIKE $9 ESCAPE '\\') AND ($10 = '' OR household_id = $10 OR household_id = '') AND ($11 = '' OR household_id = $11) \
             AND {open} AND id > $13 ORDER BY id LIMIT $14"
        );
        let binds = vec![
            filter.community_id.as_str().into(),
            filter.state.map_or("", IssueState::as_str).into(),
            filter.category.map_or("", Category::as_str).into(),
            filter.three_most.map_or("", ThreeMost::as_str).into(),
            filter.claimant_id.as_str().into(),
            claimant.as_str().into(),
            i64::from(filter.overdue_only).into(),
            now.into(),
            title.as_str().into(),
            filter.household_id.as_str().into(),
            filter.reported_by.as_str().into(),
            i64::from(filter.open_only).into(),
        ];
        let (records, next) =
            fetch_page(&self.db, &sql, binds, page, record_from_row, |r| &r.id).await?;
        Ok((self.with_watchers(&records).await?, next))
    }

    /// Issues as sent, with their watchers read in one query for the whole list.
    pub(crate) async fn with_watchers(&self, records: &[IssueRecord]) -> Result<Vec<pb::Issue>> {
        let mut watchers: HashMap<String, Vec<String>> = HashMap::new();
        // Asked community by community, so the table's key (community, issue, household)
        // finds them: by issue alone the database reads every community's watchers.
        let mut by_community: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for r in records {
            by_community.entry(&r.community_id).or_default().push(&r.id);
        }
        for (community, ids) in by_community {
            // Bounded batches keep the IN list well within both databases' placeholder limits.
            for chunk in ids.chunks(500) {
                let placeholders = (2..=chunk.len() + 1)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT issue_id, household_id FROM issue_watchers WHERE community_id = $1 AND issue_id IN ({placeholders}) ORDER BY household_id"
                );
                let mut q = sqlx::query_as::<_, (String, String)>(&sql).bind(community);
                for id in chunk {
                    q = q.bind(*id);
                }
                for (issue, household) in q.fetch_all(&self.db.pool).await? {
                    watchers.entry(issue).or_default().push(household);
                }
            }
        }
        Ok(records
            .iter()
            .map(|r| r.to_proto(watchers.remove(&r.id).unwrap_or_default()))
            .collect())
    }

    pub async fn timeline(&self, issue_id: &str) -> Result<Vec<pb::IssueEvent>> {
        let mut conn = self.db.pool.acquire().await?;
        let issue = self.load(&mut conn, issue_id).await?;
        let rows = sqlx::query(&format!("SELECT {EVENT_COLS} FROM issue_events WHERE community_id = $1 AND issue_id = $2 ORDER BY seq"))
            .bind(&issue.community_id)
            .bind(issue_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}
