//! The issues service's rules, as plain Rust: the state machine, what each
//! move does to an issue, deadlines by category and 三最 mark, and the
//! statistics (rates, percentiles, a ranking fair to small samples).

use linli_core::text_enum;

pub use crate::deadlines::*;
pub use crate::statistics::{percentile, wilson_lower_bound};
use linli_core::time::Micros;
use linli_core::{Error, Result};

text_enum!(IssueState: linli_proto::issues::v1::IssueState {
    Reported = "reported",
    Acknowledged = "acknowledged",
    Claimed = "claimed",
    InProgress = "in_progress",
    Resolved = "resolved",
    Verified = "verified",
    Reopened = "reopened",
    Rejected = "rejected",
    Duplicate = "duplicate",
    ClosedUnconfirmed = "closed_unconfirmed",
});

text_enum!(Category: linli_proto::issues::v1::Category {
    Road = "road",
    Drainage = "drainage",
    Sanitation = "sanitation",
    PublicSafety = "public_safety",
    HousingRepair = "housing_repair",
    Epidemic = "epidemic",
    Livelihood = "livelihood",
    Other = "other",
});

text_enum!(ThreeMost: linli_proto::issues::v1::ThreeMost { MostWorrying = "most_worrying", MostVexing = "most_vexing", MostDistressing = "most_distressing" });

text_enum!(Source: linli_proto::issues::v1::Source {
    ResidentReport = "resident_report",
    FoundOnVisit = "found_on_visit",
    CommunityCollection = "community_collection",
    Hotline = "hotline",
    Inspection = "inspection",
    CivicApp = "civic_app",
});

text_enum!(PhotoPhase: linli_proto::issues::v1::PhotoPhase { Before = "before", After = "after" });

text_enum!(EventKind: linli_proto::issues::v1::EventKind {
    Reported = "reported",
    Acknowledged = "acknowledged",
    Claimed = "claimed",
    Unclaimed = "unclaimed",
    Reassigned = "reassigned",
    Started = "started",
    Resolved = "resolved",
    Confirmed = "confirmed",
    Reopened = "reopened",
    Rejected = "rejected",
    MarkedDuplicate = "marked_duplicate",
    SupervisionNote = "supervision_note",
    Escalated = "escalated",
    AutoClosed = "auto_closed",
    WatcherJoined = "watcher_joined",
});

text_enum!(DeadlineKind: linli_proto::issues::v1::DeadlineKind { Response = "response", Resolution = "resolution" });

/// [`IssueState::is_open`] in SQL, word for word as the partial index
/// `issues_open` is defined (so the planner sees that the index serves it).
pub const OPEN_SQL: &str =
    "state IN ('reported', 'acknowledged', 'claimed', 'in_progress', 'reopened')";
/// [`IssueState::is_resolved`] in SQL.
pub const RESOLVED_SQL: &str = "state IN ('resolved', 'verified', 'closed_unconfirmed')";

impl IssueState {
    /// Still waiting for someone to act.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            IssueState::Reported
                | IssueState::Acknowledged
                | IssueState::Claimed
                | IssueState::InProgress
                | IssueState::Reopened
        )
    }
    /// Counted as resolved by the resolution rate.
    pub fn is_resolved(self) -> bool {
        matches!(
            self,
            IssueState::Resolved | IssueState::Verified | IssueState::ClosedUnconfirmed
        )
    }
    /// Not a real issue to be worked on: excluded from the rates.
    pub fn is_dismissed(self) -> bool {
        matches!(self, IssueState::Rejected | IssueState::Duplicate)
    }
}

/// Who took an issue on: a cadre (with their unit), or a unit with participants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claimant {
    pub cadre_id: Option<String>,
    pub unit_id: String,
    pub participants: Vec<String>,
}

impl Claimant {
    /// Every cadre whose registration must be checked.
    pub fn cadres(&self) -> Vec<&str> {
        self.cadre_id
            .iter()
            .map(String::as_str)
            .chain(self.participants.iter().map(String::as_str))
            .collect()
    }
}

/// The most cadres one claim may name (集体出动 of a whole unit is tens, not thousands).
pub const MAX_PARTICIPANTS: usize = 200;

/// A claim as requested: exactly one of a cadre (alone) or a unit with at
/// least one participating cadre, none repeated. The cadre's unit is filled
/// in later, from the people service.
pub fn parse_claimant(cadre_id: &str, unit_id: &str, participants: &[String]) -> Result<Claimant> {
    let cadre_id = linli_core::validate::parse_opt_id("cadre_id", cadre_id)?;
    let unit_id = linli_core::validate::parse_opt_id("unit_id", unit_id)?;
    if participants.len() > MAX_PARTICIPANTS {
        return Err(Error::invalid(
            "participant_cadre_ids",
            format!("lists at most {MAX_PARTICIPANTS} cadres"),
        ));
    }
    let mut ids: Vec<String> = Vec::with_capacity(participants.len());
    let mut seen = std::collections::HashSet::with_capacity(participants.len());
    for (i, p) in participants.iter().enumerate() {
        let field = format!("participant_cadre_ids[{i}]");
        let id = linli_core::validate::parse_id(&field, p)?;
        if !seen.insert(id.clone()) {
            return Err(Error::invalid(field, "repeats a participant"));
        }
        ids.push(id);
    }
    match (cadre_id, unit_id) {
        (Some(_), None) if !ids.is_empty() => Err(Error::invalid(
            "participant_cadre_ids",
            "are only for a unit's claim",
        )),
        (Some(cadre), None) => Ok(Claimant {
            cadre_id: Some(cadre),
            unit_id: String::new(),
            participants: vec![],
        }),
        (None, Some(_)) if ids.is_empty() => Err(Error::invalid(
            "participant_cadre_ids",
            "a unit's claim needs at least one participating cadre",
        )),
        (None, Some(unit)) => Ok(Claimant {
            cadre_id: None,
            unit_id: unit,
            participants: ids,
        }),
        (Some(_), Some(_)) => Err(Error::invalid(
            "unit_id",
            "set cadre_id or unit_id, not both",
        )),
        (None, None) => Err(Error::invalid(
            "cadre_id",
            "set cadre_id, or unit_id with participants",
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub url: String,
    pub sha256: String,
    pub mime_type: String,
    pub phase: PhotoPhase,
}

/// The parts of an issue the state machine changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub state: IssueState,
    pub claim: Option<Claimant>,
    pub claimed_at: Option<Micros>,
    pub first_claimed_at: Option<Micros>,
    pub responded_at: Option<Micros>,
    pub resolved_at: Option<Micros>,
    pub closed_at: Option<Micros>,
    pub resolution_due_at: Micros,
    pub rating: Option<i32>,
    pub rating_comment: String,
    pub duplicate_of: String,
    pub reject_reason: String,
    pub reopen_count: i32,
    pub attachments: Vec<Attachment>,
}

/// A move, with what it carries.
#[derive(Debug, Clone)]
pub enum Action {
    Acknowledge,
    Claim(Claimant),
    Unclaim,
    Reassign(Claimant),
    Start,
    Resolve(Vec<Attachment>),
    Confirm {
        rating: i32,
        comment: String,
    },
    /// Back to work, with the new resolution deadline.
    Reopen {
        resolution_due_at: Micros,
    },
    Reject {
        reason: String,
    },
    MarkDuplicate {
        original: String,
    },
    AutoClose,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Claim(_) => "claim",
            Action::Unclaim => "unclaim",
            Action::Reassign(_) => "reassign",
            Action::Start => "start work on",
            Action::Resolve(_) => "resolve",
            Action::Confirm { .. } => "confirm",
            Action::Reopen { .. } => "reopen",
            Action::Reject { .. } => "reject",
            Action::MarkDuplicate { .. } => "mark as duplicate",
            Action::AutoClose => "auto-close",
        }
    }

    /// The states this move may start from, and the state it ends in (`None`: unchanged).
    pub fn rule(&self) -> (&'static [IssueState], Option<IssueState>, EventKind) {
        use IssueState::*;
        match self {
            Action::Acknowledge => (&[Reported], Some(Acknowledged), EventKind::Acknowledged),
            // A claim straight from the report (主动认领) acknowledges it first; see `lifecycle`.
            Action::Claim(_) => (&[Acknowledged], Some(Claimed), EventKind::Claimed),
            Action::Unclaim => (
                &[Claimed, InProgress],
                Some(Acknowledged),
                EventKind::Unclaimed,
            ),
            Action::Reassign(_) => (
                &[Claimed, InProgress, Reopened],
                None,
                EventKind::Reassigned,
            ),
            Action::Start => (&[Claimed, Reopened], Some(InProgress), EventKind::Started),
            Action::Resolve(_) => (&[InProgress], Some(Resolved), EventKind::Resolved),
            Action::Confirm { .. } => (&[Resolved], Some(Verified), EventKind::Confirmed),
            Action::Reopen { .. } => (&[Resolved], Some(Reopened), EventKind::Reopened),
            Action::Reject { .. } => (
                &[Reported, Acknowledged],
                Some(Rejected),
                EventKind::Rejected,
            ),
            Action::MarkDuplicate { .. } => (
                &[Reported, Acknowledged],
                Some(Duplicate),
                EventKind::MarkedDuplicate,
            ),
            Action::AutoClose => (&[Resolved], Some(ClosedUnconfirmed), EventKind::AutoClosed),
        }
    }
}

/// Applies a move at time `at`, or says why it is not allowed from the issue's state.
pub fn apply(issue: &mut Issue, action: Action, at: Micros) -> Result<EventKind> {
    let (from, to, event) = action.rule();
    if !from.contains(&issue.state) {
        return Err(Error::FailedPrecondition(format!(
            "cannot {} an issue that is {}",
            action.name(),
            issue.state.as_str().replace('_', " ")
        )));
    }
    match action {
        Action::Acknowledge => {
            issue.responded_at.get_or_insert(at);
        }
        Action::Claim(claimant) => {
            issue.claim = Some(claimant);
            issue.claimed_at = Some(at);
            issue.first_claimed_at.get_or_insert(at);
            issue.responded_at.get_or_insert(at);
        }
        Action::Unclaim => {
            issue.claim = None;
            issue.claimed_at = None;
        }
        Action::Reassign(claimant) => {
            issue.claim = Some(claimant);
            issue.claimed_at = Some(at);
        }
        Action::Start => {}
        Action::Resolve(attachments) => {
            issue.resolved_at = Some(at);
            issue.attachments.extend(attachments);
        }
        Action::Confirm { rating, comment } => {
            issue.rating = Some(rating);
            issue.rating_comment = comment;
            issue.closed_at = Some(at);
        }
        Action::Reopen { resolution_due_at } => {
            issue.reopen_count += 1;
            issue.resolved_at = None;
            issue.resolution_due_at = resolution_due_at;
        }
        Action::Reject { reason } => {
            issue.reject_reason = reason;
            issue.closed_at = Some(at);
        }
        Action::MarkDuplicate { original } => {
            issue.duplicate_of = original;
            issue.closed_at = Some(at);
        }
        Action::AutoClose => {
            issue.closed_at = Some(at);
        }
    }
    if let Some(to) = to {
        issue.state = to;
    }
    Ok(event)
}

/// A 1–5 rating.
pub fn parse_rating(field: &str, rating: i32) -> Result<i32> {
    if (1..=5).contains(&rating) {
        Ok(rating)
    } else {
        Err(Error::invalid(field, "must be from 1 to 5"))
    }
}

/// Validates photo metadata: a URL or a SHA-256, a mime type like `image/jpeg`, a phase.
pub fn parse_attachment(
    field: &str,
    url: &str,
    sha256: &str,
    mime_type: &str,
    phase: Option<PhotoPhase>,
) -> Result<Attachment> {
    let url = url.trim();
    let sha256 = sha256.trim().to_ascii_lowercase();
    if url.is_empty() && sha256.is_empty() {
        return Err(Error::invalid(format!("{field}.url"), "set url or sha256"));
    }
    if !url.is_empty()
        && (url.len() > 2000 || !(url.starts_with("https://") || url.starts_with("http://")))
    {
        return Err(Error::invalid(
            format!("{field}.url"),
            "must be an http(s) URL of at most 2000 characters",
        ));
    }
    if !sha256.is_empty() && (sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(Error::invalid(
            format!("{field}.sha256"),
            "must be 64 hex digits",
        ));
    }
    let mime = mime_type.trim().to_ascii_lowercase();
    let valid_mime = mime.split_once('/').is_some_and(|(t, s)| {
        !t.is_empty()
            && !s.is_empty()
            && mime.len() <= 100
            && mime
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/.+-".contains(c))
    });
    if !valid_mime {
        return Err(Error::invalid(
            format!("{field}.mime_type"),
            "must be a media type such as image/jpeg",
        ));
    }
    let phase =
        phase.ok_or_else(|| Error::invalid(format!("{field}.phase"), "must be before or after"))?;
    Ok(Attachment {
        url: url.to_owned(),
        sha256,
        mime_type: mime,
        phase,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_state_lists_are_the_rust_ones() {
        let listed = |sql: &str, s: IssueState| sql.contains(&format!("'{}'", s.as_str()));
        for &s in IssueState::ALL {
            assert_eq!(listed(OPEN_SQL, s), s.is_open(), "{s:?} in OPEN_SQL");
            assert_eq!(
                listed(RESOLVED_SQL, s),
                s.is_resolved(),
                "{s:?} in RESOLVED_SQL"
            );
        }
        // The partial index is defined on the same words, or the planner would not use it.
        let index = include_str!("../migrations/0005_counts.sql");
        assert!(index.contains(&format!("WHERE {OPEN_SQL};")));
    }

    #[test]
    fn enums_cross_the_wire_both_ways() {
        linli_core::assert_enums_round_trip!(
            IssueState,
            Category,
            ThreeMost,
            Source,
            PhotoPhase,
            EventKind,
            DeadlineKind
        );
    }
    use IssueState::*;

    fn issue(state: IssueState) -> Issue {
        Issue {
            state,
            claim: None,
            claimed_at: None,
            first_claimed_at: None,
            responded_at: None,
            resolved_at: None,
            closed_at: None,
            resolution_due_at: 0,
            rating: None,
            rating_comment: String::new(),
            duplicate_of: String::new(),
            reject_reason: String::new(),
            reopen_count: 0,
            attachments: vec![],
        }
    }

    fn every_action() -> Vec<Action> {
        let claimant = Claimant {
            cadre_id: Some("c".into()),
            unit_id: "u".into(),
            participants: vec![],
        };
        vec![
            Action::Acknowledge,
            Action::Claim(claimant.clone()),
            Action::Unclaim,
            Action::Reassign(claimant),
            Action::Start,
            Action::Resolve(vec![]),
            Action::Confirm {
                rating: 5,
                comment: String::new(),
            },
            Action::Reopen {
                resolution_due_at: 0,
            },
            Action::Reject { reason: "x".into() },
            Action::MarkDuplicate {
                original: "o".into(),
            },
            Action::AutoClose,
        ]
    }

    #[test]
    fn every_move_from_every_state_is_legal_exactly_as_the_table_says() {
        // (state, action index) pairs that are legal; everything else is refused.
        let legal: &[(IssueState, usize, IssueState)] = &[
            (Reported, 0, Acknowledged),
            (Acknowledged, 1, Claimed),
            (Claimed, 2, Acknowledged),
            (InProgress, 2, Acknowledged),
            (Claimed, 3, Claimed),
            (InProgress, 3, InProgress),
            (Reopened, 3, Reopened),
            (Claimed, 4, InProgress),
            (Reopened, 4, InProgress),
            (InProgress, 5, Resolved),
            (Resolved, 6, Verified),
            (Resolved, 7, Reopened),
            (Reported, 8, Rejected),
            (Acknowledged, 8, Rejected),
            (Reported, 9, Duplicate),
            (Acknowledged, 9, Duplicate),
            (Resolved, 10, ClosedUnconfirmed),
        ];
        let mut checked = 0;
        for state in IssueState::ALL {
            for (i, action) in every_action().into_iter().enumerate() {
                let mut it = issue(*state);
                let expected = legal
                    .iter()
                    .find(|(s, a, _)| s == state && *a == i)
                    .map(|(_, _, to)| *to);
                match (apply(&mut it, action, 10), expected) {
                    (Ok(_), Some(to)) => assert_eq!(it.state, to),
                    (Err(Error::FailedPrecondition(_)), None) => {
                        assert_eq!(it.state, *state, "a refused move changes nothing")
                    }
                    (got, want) => panic!("{state:?} action {i}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 10 * 11);
    }

    #[test]
    fn a_claim_is_a_cadre_or_a_unit_with_participants() {
        let (c, u, p) = (
            "01a21b2d-93f9-7631-b9b9-c19294c582e1",
            "01a21b2d-93f9-7631-b9b9-c19294c582e2",
            "01a21b2d-93f9-7631-b9b9-c19294c582e3".to_owned(),
        );
        let field = |r: Result<Claimant>| match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            parse_claimant(c, "", &[]).unwrap().cadre_id.as_deref(),
            Some(c)
        );
        assert_eq!(
            parse_claimant("", u, std::slice::from_ref(&p))
                .unwrap()
                .participants,
            vec![p.clone()]
        );
        assert_eq!(field(parse_claimant(c, u, &[])), "unit_id");
        assert_eq!(field(parse_claimant("", "", &[])), "cadre_id");
        assert_eq!(field(parse_claimant("", u, &[])), "participant_cadre_ids");
        let crowd: Vec<String> = (0..=MAX_PARTICIPANTS)
            .map(|_| linli_core::new_id())
            .collect();
        assert_eq!(
            field(parse_claimant("", u, &crowd)),
            "participant_cadre_ids"
        );
        assert_eq!(
            field(parse_claimant(c, "", std::slice::from_ref(&p))),
            "participant_cadre_ids"
        );
        assert_eq!(
            field(parse_claimant("", u, &[p.clone(), p])),
            "participant_cadre_ids[1]"
        );
    }

    #[test]
    fn claims_record_the_first_response_and_reopening_resets_the_deadline() {
        let mut it = issue(Acknowledged);
        it.responded_at = Some(5);
        apply(&mut it, Action::Claim(Claimant::default()), 10).unwrap();
        assert_eq!(
            (it.responded_at, it.first_claimed_at, it.claimed_at),
            (Some(5), Some(10), Some(10))
        );
        apply(&mut it, Action::Unclaim, 11).unwrap();
        assert_eq!((it.claim.clone(), it.first_claimed_at), (None, Some(10)));
        let mut done = issue(Resolved);
        done.resolved_at = Some(20);
        apply(
            &mut done,
            Action::Reopen {
                resolution_due_at: 99,
            },
            21,
        )
        .unwrap();
        assert_eq!(
            (done.reopen_count, done.resolved_at, done.resolution_due_at),
            (1, None, 99)
        );
    }

    #[test]
    fn wilson_keeps_one_lucky_issue_off_the_top() {
        let lucky = wilson_lower_bound(1, 1);
        let steady = wilson_lower_bound(45, 50);
        assert!(lucky < 0.25, "{lucky}");
        assert!(steady > 0.78 && steady < 0.9, "{steady}");
        assert!(steady > lucky);
        assert_eq!(wilson_lower_bound(0, 0), 0.0);
        assert!(wilson_lower_bound(0, 10) < 1e-12);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&s, 0.5), Some(5));
        assert_eq!(percentile(&s, 0.9), Some(9));
        assert_eq!(percentile(&[7], 0.9), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn attachments_need_a_place_a_type_and_a_phase() {
        let ok = parse_attachment(
            "attachments[0]",
            "https://img.example/a.jpg",
            "",
            "image/jpeg",
            Some(PhotoPhase::Before),
        )
        .unwrap();
        assert_eq!(ok.phase, PhotoPhase::Before);
        let err = parse_attachment(
            "attachments[0]",
            "",
            "",
            "image/jpeg",
            Some(PhotoPhase::Before),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("attachments[0].url:"));
        assert!(parse_attachment("a", "", "abc", "image/jpeg", Some(PhotoPhase::After)).is_err());
        assert!(
            parse_attachment("a", "ftp://x", "", "image/jpeg", Some(PhotoPhase::After)).is_err()
        );
        assert!(parse_attachment("a", "https://x", "", "jpeg", Some(PhotoPhase::After)).is_err());
        assert!(parse_attachment("a", "https://x", "", "image/png", None).is_err());
        assert!(
            parse_rating("rating", 0).is_err()
                && parse_rating("rating", 6).is_err()
                && parse_rating("rating", 5).is_ok()
        );
    }
}
