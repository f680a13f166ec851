//! Intake: residents' problems reported, looked up, listed and followed on their timeline.
mod together;

use std::collections::HashMap;
use together::Pending;
pub use together::Reports;

use tokio::sync::mpsc;

use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::db::Values;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{BindValue, PageRequest, fetch_page};
use linli_core::time::{now_micros, past_or_now};
use linli_core::validate::{
    optional_enum, parse_id, parse_name, parse_opt_id, parse_text, required_enum,
};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::issues::v1 as pb;

use crate::context::*;
use crate::domain::*;
use crate::store::*;

/// Where report keys are kept.
const ISSUE_SCOPE: &str = "issues.issue";

/// A reporter's contact details, each part checked; none when all are empty.
fn parse_contact(c: &pb::ReporterContact) -> Result<Option<Contact>> {
    let name = match c.name.trim() {
        "" => String::new(),
        name => parse_name("reporter_contact.name", name)?,
    };
    let phone = c.phone.trim().to_owned();
    if phone.chars().count() > 32
        || !phone
            .chars()
            .all(|ch| ch.is_ascii_digit() || matches!(ch, '+' | '-' | ' '))
    {
        return Err(Error::invalid(
            "reporter_contact.phone",
            "must be at most 32 digits, spaces, '+' or '-'",
        ));
    }
    let email = c.email.trim().to_owned();
    if email.chars().count() > 254
        || (!email.is_empty() && !email.contains('@'))
        || email
            .chars()
            .any(|ch| ch.is_control() || ch.is_whitespace())
    {
        return Err(Error::invalid(
            "reporter_contact.email",
            "must be an address such as name@example.cn, at most 254 characters",
        ));
    }
    if name.is_empty() && phone.is_empty() && email.is_empty() {
        return Ok(None);
    }
    Ok(Some(Contact { name, phone, email }))
}

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
        reporter_contact: r
            .reporter_contact
            .as_ref()
            .map(parse_contact)
            .transpose()?
            .flatten(),
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
    let mut issue = api.store.get(&id).await?;
    // Those who call the reporter back see how to reach them; others see it masked.
    if issue.reporter_contact.is_some() && actor.role.sees_personal_data() {
        issue.reporter_contact = api
            .store
            .record(&id)
            .await?
            .reporter_contact
            .as_ref()
            .map(Contact::to_proto);
    }
    Ok(Response::new(pb::GetIssueResponse { issue: Some(issue) }))
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
        reported_from: linli_core::time::optional("reported_from", r.reported_from.as_ref())?,
        reported_before: linli_core::time::optional("reported_before", r.reported_before.as_ref())?,
        newest_first: r.newest_first,
    };
    if let (Some(from), Some(before)) = (filter.reported_from, filter.reported_before)
        && from >= before
    {
        return Err(Error::invalid("reported_before", "must be after reported_from").into());
    }
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
    /// Writes a report: together with others waiting at the same moment when
    /// reports are batched ([`Reports`]), otherwise alone.
    pub async fn report(&self, actor: &Actor, idem: &IdemKey, new: NewIssue) -> Result<pb::Issue> {
        let Some(queue) = self.reports.queue(self, &new.community_id) else {
            return self.report_alone(actor, idem, new).await;
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = Pending {
            actor: actor.clone(),
            idem: idem.clone(),
            new,
            reply,
        };
        match queue.send(pending).await {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(Error::Unavailable(
                    "the report writer stopped; send the report again with the same key".into(),
                ))
            }),
            // The writers are gone (their runtime is ending): write it here.
            Err(mpsc::error::SendError(p)) => self.report_alone(actor, idem, p.new).await,
        }
    }

    /// One report in its own transaction: the key claimed (a retry gets the
    /// first issue back), the issue written, audited, committed.
    pub(crate) async fn report_alone(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewIssue,
    ) -> Result<pb::Issue> {
        let issue = idempotency::create(
            &(self, actor, &new),
            &self.db,
            actor,
            ISSUE_SCOPE,
            idem,
            |&(s, _, _), tx, existing| {
                Box::pin(async move {
                    let r = s.load(&mut *tx, existing).await?;
                    s.to_proto(&mut *tx, &r).await
                })
            },
            |&(s, actor, new), tx, id| {
                Box::pin(async move {
                    let (issue, change) =
                        s.write_new(&mut *tx, &[(actor, id, new)]).await?.remove(0);
                    Ok(Made::new(issue, change))
                })
            },
        )
        .await?;
        self.heads.written();
        Ok(issue)
    }

    /// New issues written under their ids, with the reporting household as
    /// each one's watcher and a `Reported` event on each timeline; each comes
    /// back with the change that describes it, for the audit trail.
    async fn write_new(
        &self,
        conn: &mut sqlx::AnyConnection,
        items: &[(&Actor, &str, &NewIssue)],
    ) -> Result<Vec<(pb::Issue, Change)>> {
        let mut rows = Values::default();
        for (_, id, new) in items {
            let response_due = self.policy.response_due(new.reported_at, new.three_most);
            let resolution_due =
                self.policy
                    .resolution_due(new.reported_at, new.category, new.three_most);
            rows.bind(new.community_id.clone())?
                .bind(id.to_string())?
                .bind(new.compound_id.clone())?
                .bind(new.building_id.clone())?
                .bind(new.household_id.clone())?
                .bind(new.title.clone())?
                .bind(new.description.clone())?
                .bind(new.category.as_str())?
                .bind(new.three_most.map_or("", ThreeMost::as_str))?
                .bind(new.location_text.clone())?
                .bind(new.latitude)?
                .bind(new.longitude)?
                .bind(new.source.as_str())?;
            // State, claim (cadre, unit, participants, claimed, first claimed).
            for v in ["'reported'", "''", "''", "''", "NULL", "NULL"] {
                rows.literal(v);
            }
            rows.bind(new.reported_at)?
                .bind(response_due)?
                .bind(resolution_due)?;
            // Responded, resolved, closed, rating; its comment, duplicate of,
            // reject reason; reopen count.
            for v in ["NULL", "NULL", "NULL", "NULL", "''", "''", "''", "0"] {
                rows.literal(v);
            }
            rows.bind(attachments_to_json(&new.attachments))?
                .bind(new.reported_at)?
                .literal("1")
                .bind(Contact::to_db(new.reporter_contact.as_ref()))?
                .row();
        }
        // Written and read back in one statement.
        let written = rows
            .fetch_all(&mut *conn, |piece| {
                format!(
                    "INSERT INTO issues ({ISSUE_INSERT_COLS}) VALUES {} RETURNING {ISSUE_COLS}",
                    piece.sql()
                )
            })
            .await?;
        let mut by_id = HashMap::new();
        for row in &written {
            let r = record_from_row(row)?;
            by_id.insert(r.id.clone(), r);
        }
        let records = items
            .iter()
            .map(|(_, id, _)| {
                by_id
                    .remove(*id)
                    .ok_or_else(|| Error::Internal(anyhow::anyhow!("issue {id} was not read back")))
            })
            .collect::<Result<Vec<IssueRecord>>>()?;
        let mut watchers = Values::default();
        for r in records.iter().filter(|r| !r.household_id.is_empty()) {
            watchers
                .bind(r.community_id.clone())?
                .bind(r.id.clone())?
                .bind(r.household_id.clone())?
                .row();
        }
        watchers
            .insert(
                &mut *conn,
                "INSERT INTO issue_watchers (community_id, issue_id, household_id)",
            )
            .await?;
        let events = items
            .iter()
            .zip(&records)
            .map(|((actor, _, new), r)| {
                let event = NewEvent {
                    issue: r,
                    at: new.reported_at,
                    kind: EventKind::Reported,
                    from: None,
                    to: Some(IssueState::Reported),
                    note: "",
                    attachments: &new.attachments,
                };
                (*actor, event)
            })
            .collect();
        append_events(&mut *conn, events).await?;
        Ok(records
            .into_iter()
            .map(|r| {
                let change = Change::created(
                    &r.community_id,
                    "issue.report",
                    "issue",
                    &r.id,
                    r.audit_json(),
                );
                // Its one watcher, if any, is the household that reported it.
                let watchers =
                    Vec::from_iter((!r.household_id.is_empty()).then(|| r.household_id.clone()));
                (r.to_proto(watchers), change)
            })
            .collect())
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
        // Only the filters asked for are written into the statement, rather
        // than each guarded by a parameter (`$1 = '' OR community_id = $1`),
        // so that the planner sees them: SQLite plans a statement once, and
        // a guarded column is one it cannot seek by its index. Open issues
        // are read from their own index (`issues_open`) this way too.
        let mut binds: Vec<BindValue> = Vec::new();
        let mut bind = |value: BindValue| {
            binds.push(value);
            format!("${}", binds.len())
        };
        let mut conditions: Vec<String> = Vec::new();
        for (column, value) in [
            ("community_id", filter.community_id.as_str()),
            ("state", filter.state.map_or("", IssueState::as_str)),
            ("category", filter.category.map_or("", Category::as_str)),
            (
                "three_most",
                filter.three_most.map_or("", ThreeMost::as_str),
            ),
            ("household_id", filter.reported_by.as_str()),
        ] {
            if !value.is_empty() {
                conditions.push(format!("{column} = {}", bind(value.into())));
            }
        }
        if !filter.claimant_id.is_empty() {
            let id = bind(filter.claimant_id.as_str().into());
            let among = bind(format!("%,{},%", filter.claimant_id).as_str().into());
            conditions.push(format!(
                "(claim_cadre_id = {id} OR claim_unit_id = {id} OR claim_participants LIKE {among})"
            ));
        }
        if !filter.title_contains.is_empty() {
            let title = bind(format!("%{}%", escaped.to_lowercase()).as_str().into());
            conditions.push(format!("LOWER(title) LIKE {title} ESCAPE '\\'"));
        }
        if !filter.household_id.is_empty() {
            // What a household may see: its own and those nobody reported.
            let own = bind(filter.household_id.as_str().into());
            conditions.push(format!("(household_id = {own} OR household_id = '')"));
        }
        if filter.open_only || filter.overdue_only {
            conditions.push(OPEN_SQL.to_owned());
        }
        if filter.overdue_only {
            let now = bind(now_micros().into());
            conditions.push(crate::deadlines::overdue_sql(&now));
        }
        if let Some(from) = filter.reported_from {
            let from = bind(from.into());
            conditions.push(format!("reported_at >= {from}"));
        }
        if let Some(before) = filter.reported_before {
            let before = bind(before.into());
            conditions.push(format!("reported_at < {before}"));
        }
        // Ids are time-ordered (UUIDv7): their order is the order reported.
        let (after, order, page) = if filter.newest_first {
            // The first page starts above every id.
            let start = PageRequest {
                after: Some(
                    page.after
                        .clone()
                        .unwrap_or_else(|| "ffffffff-ffff-ffff-ffff-ffffffffffff".into()),
                ),
                ..page.clone()
            };
            ("<", "DESC", start)
        } else {
            (">", "", page.clone())
        };
        conditions.push(format!("id {after} ${}", binds.len() + 1));
        let sql = format!(
            "SELECT {ISSUE_COLS} FROM issues WHERE {} ORDER BY id {order} LIMIT ${}",
            conditions.join(" AND "),
            binds.len() + 2
        );
        let (records, next) =
            fetch_page(&self.db, &sql, binds, &page, record_from_row, |r| &r.id).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str, phone: &str, email: &str) -> pb::ReporterContact {
        pb::ReporterContact {
            name: name.into(),
            phone: phone.into(),
            email: email.into(),
        }
    }

    #[test]
    fn a_contact_is_checked_part_by_part_and_empty_is_none() {
        assert_eq!(parse_contact(&contact(" ", "", "")).unwrap(), None);
        assert_eq!(
            parse_contact(&contact("张伟", "+86 139-1234-1001", "zw@example.cn")).unwrap(),
            Some(Contact {
                name: "张伟".into(),
                phone: "+86 139-1234-1001".into(),
                email: "zw@example.cn".into(),
            })
        );
        for (bad, field) in [
            (contact("张\n伟", "", ""), "reporter_contact.name"),
            (contact("", "call me", ""), "reporter_contact.phone"),
            (contact("", "", "no-at-sign"), "reporter_contact.email"),
        ] {
            let err = parse_contact(&bad).unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
