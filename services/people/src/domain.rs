//! The people service's rules, as plain Rust: what a valid name, phone number,
//! ID number and birth date are; how members' vulnerability sets a household's
//! care level and visit cadence; how many may look after one household; how
//! registrations move; when a visit is overdue; which days make a duty week.
use chrono::{Datelike, FixedOffset, NaiveDate};

use linli_core::time::Micros;
use linli_core::{Error, Result};

use linli_core::text_enum;

pub use crate::care::*;
pub use linli_core::time::week_bounds;
pub use linli_core::validate::{
    MAX_NAME_CHARS, MAX_TEXT_CHARS, check_version, parse_id, parse_name, parse_opt_id, parse_text,
};

/// A checked phone number (digits only). The only way to make one is
/// [`parse_phone`], so the store never sees an unchecked number; the API and the
/// roster import check alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A checked resident identity card number (GB 11643-1999), upper case; made
/// only by [`parse_id_number`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl IdNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A mainland mobile number (11 digits starting 1[3-9]) or a landline with
/// area code (0 + 2–3 digits, then 7–8 digits). Spaces and dashes are
/// dropped; a leading +86 is accepted. Empty means none.
pub fn parse_phone(field: &str, value: &str) -> Result<Option<Phone>> {
    let mut digits: String = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if digits.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = digits.strip_prefix("+86") {
        digits = rest.to_owned();
    }
    let all_digits = digits.chars().all(|c| c.is_ascii_digit());
    let b = digits.as_bytes();
    let mobile = b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]);
    let landline = b.len() >= 10 && b.len() <= 12 && b[0] == b'0';
    if all_digits && (mobile || landline) {
        Ok(Some(Phone(digits)))
    } else {
        Err(Error::invalid(
            field,
            "must be an 11-digit mobile number or a landline with area code",
        ))
    }
}

/// A resident identity card number (GB 11643-1999): 17 digits and a check
/// character (a digit or X) that must match, with a real birth date inside.
/// Returns the number (upper case) and the birth date it encodes. Empty means none.
pub fn parse_id_number(field: &str, value: &str) -> Result<Option<(IdNumber, NaiveDate)>> {
    let v = value.trim().to_ascii_uppercase();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| Error::invalid(field, why.to_owned());
    let b = v.as_bytes();
    if b.len() != 18
        || !b[..17].iter().all(u8::is_ascii_digit)
        || !(b[17].is_ascii_digit() || b[17] == b'X')
    {
        return Err(bad(
            "must be 18 characters: 17 digits and a check digit or X",
        ));
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    if CHECK[(sum % 11) as usize] != b[17] {
        return Err(bad("has a wrong check digit"));
    }
    let birth = NaiveDate::parse_from_str(&v[6..14], "%Y%m%d")
        .map_err(|_| bad("does not contain a valid birth date"))?;
    Ok(Some((IdNumber(v), birth)))
}

/// The check character for the first 17 digits of an ID number; for demo data and tests.
pub fn id_check_char(first17: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

/// A birth date as YYYY-MM-DD, not in the future and not before 1900.
pub fn parse_birth_date(field: &str, value: &str, today: NaiveDate) -> Result<NaiveDate> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::required(field));
    }
    let d = NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, "must be a date as YYYY-MM-DD"))?;
    if d > today {
        return Err(Error::invalid(field, "is in the future"));
    }
    if d.year() < 1900 {
        return Err(Error::invalid(field, "is before 1900"));
    }
    Ok(d)
}

pub fn age_on(birth: NaiveDate, day: NaiveDate) -> i32 {
    let mut age = day.year() - birth.year();
    if (day.month(), day.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age.max(0)
}

pub use linli_core::mask::mask_phone;

/// 421224193501011234 → 421224********1234 (region kept, birth date hidden).
pub fn mask_id_number(id: &str) -> String {
    if id.len() != 18 {
        return "*".repeat(id.len());
    }
    format!("{}********{}", &id[..6], &id[14..])
}

text_enum!(
    /// Vulnerability tags, stored by these names.
    Tag: linli_proto::people::v1::VulnerabilityTag {
        LivingAlone = "living_alone",
        Elderly = "elderly",
        HearingImpaired = "hearing_impaired",
        LimitedMobility = "limited_mobility",
        Disabled = "disabled",
        ChronicIllness = "chronic_illness",
        LowIncome = "low_income",
        ChildLeftBehind = "child_left_behind",
    }
);

text_enum!(PlaceKind: linli_proto::people::v1::PlaceKind { County = "county", Town = "town", Community = "community", Compound = "compound", Building = "building" });
text_enum!(Gender: linli_proto::people::v1::Gender { Male = "male", Female = "female" });
text_enum!(Relation: linli_proto::people::v1::Relation {
    Head = "head",
    Spouse = "spouse",
    Child = "child",
    Parent = "parent",
    Grandchild = "grandchild",
    Sibling = "sibling",
    Other = "other",
});
text_enum!(RegistrationState: linli_proto::people::v1::RegistrationState { Requested = "requested", Active = "active", Ended = "ended" });
text_enum!(PairingRole: linli_proto::people::v1::PairingRole { Cadre = "cadre", CommunityWorker = "community_worker", MedicalWorker = "medical_worker" });
text_enum!(VisitKind: linli_proto::people::v1::VisitKind { HomeVisit = "home_visit", PhoneCall = "phone_call", Delivery = "delivery", Other = "other" });
text_enum!(VisitOutcome: linli_proto::people::v1::VisitOutcome { Ok = "ok", NotHome = "not_home", NeedsHelp = "needs_help", Referred = "referred" });

text_enum!(
    /// Ordered: a higher level means closer care.
    CareLevel: linli_proto::people::v1::CareLevel { None = "none", Watch = "watch", Priority = "priority", Intensive = "intensive" }
);

impl PlaceKind {
    /// The kind a place of this kind must sit under; `None` for a county, which is the top.
    pub fn parent_kind(self) -> Option<PlaceKind> {
        match self {
            PlaceKind::County => None,
            PlaceKind::Town => Some(PlaceKind::County),
            PlaceKind::Community => Some(PlaceKind::Town),
            PlaceKind::Compound => Some(PlaceKind::Community),
            PlaceKind::Building => Some(PlaceKind::Compound),
        }
    }
}

/// Tags as given in a request: each known, none repeated. `field` names the list (e.g. `tags`).
pub fn parse_tags(field: &str, tags: impl IntoIterator<Item = Option<Tag>>) -> Result<Vec<Tag>> {
    let mut out: Vec<Tag> = Vec::new();
    for (i, tag) in tags.into_iter().enumerate() {
        let tag = tag.ok_or_else(|| {
            Error::invalid(format!("{field}[{i}]"), "is not a known vulnerability tag")
        })?;
        if out.contains(&tag) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("repeats {}", tag.as_str()),
            ));
        }
        out.push(tag);
    }
    out.sort();
    Ok(out)
}

/// Tags as stored: `,living_alone,elderly,` (the commas let SQL match one tag with LIKE).
pub fn tags_to_db(tags: &[Tag]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    format!(
        ",{},",
        tags.iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(",")
    )
}

pub fn tags_from_db(s: &str) -> Vec<Tag> {
    s.split(',').filter_map(Tag::parse).collect()
}

/// 三包一: at most three people look after one household.
pub const MAX_CARERS: usize = 3;

/// Someone already looking after a household.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carer {
    pub role: PairingRole,
    pub cadre_id: Option<String>,
    pub name: String,
}

/// Whether `new` may join the household's team.
pub fn check_can_pair(team: &[Carer], new: &Carer) -> Result<()> {
    if team.len() >= MAX_CARERS {
        return Err(Error::FailedPrecondition(format!(
            "this household already has {} people looking after it, the most allowed (三包一); end a pairing first",
            team.len()
        )));
    }
    let same_person = team.iter().any(|c| match (&c.cadre_id, &new.cadre_id) {
        (Some(a), Some(b)) => a == b,
        (None, None) => c.role == new.role && c.name == new.name,
        _ => false,
    });
    if same_person {
        return Err(Error::AlreadyExists(format!(
            "{} is already paired with this household",
            new.name
        )));
    }
    Ok(())
}

/// Registration moves: requested → active → ended, or requested → ended.
pub fn check_registration_move(from: RegistrationState, to: RegistrationState) -> Result<()> {
    use RegistrationState::*;
    match (from, to) {
        (Requested, Active) | (Requested, Ended) | (Active, Ended) => Ok(()),
        _ => Err(Error::FailedPrecondition(format!(
            "a registration that is {} cannot become {}",
            from.as_str(),
            to.as_str()
        ))),
    }
}

/// The local calendar day of `at`, for counting distinct days present.
pub fn local_day(at: Micros, offset: FixedOffset) -> NaiveDate {
    linli_core::time::to_datetime(at)
        .with_timezone(&offset)
        .date_naive()
}

/// Where one vulnerable household stands on its visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitStatus {
    pub due_at: Micros,
    pub overdue_micros: i64,
}

/// A household is due a visit `every_days` after its last visit that reached
/// someone, or after it came under care if it was never visited.
pub fn visit_status(
    care: &Care,
    care_since: Micros,
    last_visit: Option<Micros>,
    as_of: Micros,
) -> VisitStatus {
    let from = last_visit.unwrap_or(care_since);
    let due_at = from + i64::from(care.every_days) * 86_400_000_000;
    VisitStatus {
        due_at,
        overdue_micros: (as_of - due_at).max(0),
    }
}

/// Only visits that reached someone count towards the cadence.
pub fn visit_counts(outcome: VisitOutcome) -> bool {
    outcome != VisitOutcome::NotHome
}

/// Usernames: 3–32 of a–z, 0–9, `_`, `.`, `-`.
pub fn parse_username(field: &str, v: &str) -> Result<String> {
    let v = v.trim();
    if !(3..=32).contains(&v.len())
        || !v
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
    {
        return Err(Error::invalid(
            field,
            "must be 3 to 32 characters of a-z, 0-9, _ . -",
        ));
    }
    Ok(v.to_owned())
}

/// Which records an account must be linked to: every role but admin and
/// supervisor acts in one community; a cadre's account is a cadre's, a
/// resident's a resident's.
pub fn check_account_links(
    role: linli_core::Role,
    community: bool,
    cadre: bool,
    resident: bool,
) -> Result<()> {
    use linli_core::Role::*;
    match role {
        CommunityWorker | Cadre | Resident if !community => Err(Error::invalid(
            "community_id",
            format!("is required for the {role} role"),
        )),
        Cadre if !cadre => Err(Error::invalid("cadre_id", "is required for the cadre role")),
        Resident if !resident => Err(Error::invalid(
            "resident_id",
            "is required for the resident role",
        )),
        _ => Ok(()),
    }
}

/// Who may make which accounts: an admin any; a community worker the cadres'
/// and residents' of their community; nobody a role at or above their own otherwise.
pub fn check_account_grant(granter: linli_core::Role, role: linli_core::Role) -> Result<()> {
    use linli_core::Role::*;
    match (granter, role) {
        (Admin, _) | (CommunityWorker, Cadre | Resident) => Ok(()),
        _ => Err(Error::PermissionDenied(format!(
            "the {granter} role may not make {role} accounts"
        ))),
    }
}

pub fn check_password(field: &str, v: &str) -> Result<()> {
    let n = v.chars().count();
    if n < 8 {
        return Err(Error::invalid(field, "must be at least 8 characters"));
    }
    if n > 128 {
        return Err(Error::invalid(field, "must be at most 128 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn enums_cross_the_wire_both_ways() {
        linli_core::assert_enums_round_trip!(
            Tag,
            PlaceKind,
            Gender,
            Relation,
            RegistrationState,
            PairingRole,
            VisitKind,
            VisitOutcome,
            CareLevel
        );
    }

    fn member(age: i32, tags: &[Tag]) -> MemberFacts {
        MemberFacts {
            age: Some(age),
            tags: tags.to_vec(),
        }
    }

    #[test]
    fn a_resident_over_80_living_alone_is_visited_weekly() {
        let p = CarePolicy::default();
        let care = p.evaluate(&[member(
            90,
            &[Tag::LivingAlone, Tag::HearingImpaired, Tag::LimitedMobility],
        )]);
        assert_eq!((care.level, care.every_days), (CareLevel::Intensive, 7));
        // 80 derives `elderly` without the tag being set.
        assert_eq!(
            p.evaluate(&[member(80, &[Tag::LivingAlone])]).level,
            CareLevel::Intensive
        );
        assert_eq!(
            p.evaluate(&[member(79, &[Tag::LivingAlone])]).level,
            CareLevel::Watch
        );
    }

    #[test]
    fn the_closest_care_any_member_needs_wins() {
        let p = CarePolicy::default();
        let care = p.evaluate(&[
            member(40, &[]),
            member(85, &[]),
            member(12, &[Tag::ChildLeftBehind]),
        ]);
        assert_eq!((care.level, care.every_days), (CareLevel::Priority, 14));
        assert_eq!(care.reason, "aged 80 or over");
        assert_eq!(
            p.evaluate(&[member(40, &[]), member(38, &[])]),
            Care::none()
        );
        assert_eq!(p.evaluate(&[]), Care::none());
    }

    #[test]
    fn the_policy_is_configurable() {
        let p: CarePolicy = toml::from_str(
            "[[rules]]\nname = \"low income\"\nlevel = \"priority\"\nevery_days = 10\nany_tags = [\"low_income\"]\n",
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.evaluate(&[member(30, &[Tag::LowIncome])]).every_days, 10);
        let bad: CarePolicy =
            toml::from_str("[[rules]]\nname = \"x\"\nlevel = \"watch\"\nevery_days = 0\n").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_fourth_carer_is_refused() {
        let carer = |role, cadre: Option<&str>, name: &str| Carer {
            role,
            cadre_id: cadre.map(str::to_owned),
            name: name.to_owned(),
        };
        let mut team = vec![carer(PairingRole::Cadre, Some("c1"), "阮")];
        assert!(matches!(
            check_can_pair(&team, &carer(PairingRole::Cadre, Some("c1"), "阮")),
            Err(Error::AlreadyExists(_))
        ));
        team.push(carer(PairingRole::CommunityWorker, None, "吴晶"));
        team.push(carer(PairingRole::MedicalWorker, None, "李医生"));
        let err = check_can_pair(&team, &carer(PairingRole::Cadre, Some("c2"), "王")).unwrap_err();
        assert!(
            matches!(err, Error::FailedPrecondition(ref m) if m.contains("三包一")),
            "{err}"
        );
    }

    #[test]
    fn accounts_are_linked_to_what_their_role_acts_for() {
        use linli_core::Role;
        assert!(check_account_links(Role::Admin, false, false, false).is_ok());
        assert!(check_account_links(Role::Supervisor, false, false, false).is_ok());
        let field = |r: Result<()>| match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(check_account_links(
                Role::CommunityWorker,
                false,
                false,
                false
            )),
            "community_id"
        );
        assert_eq!(
            field(check_account_links(Role::Cadre, true, false, false)),
            "cadre_id"
        );
        assert_eq!(
            field(check_account_links(Role::Resident, true, false, false)),
            "resident_id"
        );
        assert!(check_account_links(Role::Resident, true, false, true).is_ok());
    }

    #[test]
    fn registrations_only_move_forward() {
        use RegistrationState::*;
        assert!(check_registration_move(Requested, Active).is_ok());
        assert!(check_registration_move(Active, Ended).is_ok());
        assert!(check_registration_move(Ended, Active).is_err());
        assert!(check_registration_move(Active, Active).is_err());
        assert!(matches!(
            check_version("expected_version", 2, 3),
            Err(Error::Aborted(_))
        ));
        assert!(matches!(
            check_version("expected_version", 0, 3),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn id_numbers_are_checked() {
        let first17 = "42122419310115002";
        let id = format!("{first17}{}", id_check_char(first17));
        let (parsed, birth) = parse_id_number("id_number", &id).unwrap().unwrap();
        assert_eq!(parsed.as_str(), id);
        assert_eq!(birth, NaiveDate::from_ymd_opt(1931, 1, 15).unwrap());
        let wrong_check = format!("{first17}{}", if id.ends_with('0') { '1' } else { '0' });
        assert!(parse_id_number("id_number", &wrong_check).is_err());
        assert!(parse_id_number("id_number", "4212241931011500").is_err());
        assert!(parse_id_number("id_number", "").unwrap().is_none());
        assert_eq!(mask_id_number(&id), format!("421224********{}", &id[14..]));
    }

    #[test]
    fn phones_are_normalised_and_masked() {
        assert_eq!(
            parse_phone("phone", "138 1234-5678")
                .unwrap()
                .as_ref()
                .map(Phone::as_str),
            Some("13812345678")
        );
        assert_eq!(
            parse_phone("phone", "+8613812345678")
                .unwrap()
                .as_ref()
                .map(Phone::as_str),
            Some("13812345678")
        );
        assert_eq!(
            parse_phone("phone", "0715-2345678")
                .unwrap()
                .as_ref()
                .map(Phone::as_str),
            Some("07152345678")
        );
        for bad in ["12345", "23812345678", "1381234567a"] {
            assert!(parse_phone("phone", bad).is_err(), "{bad}");
        }
        assert_eq!(mask_phone("13812345678"), "138****5678");
    }

    #[test]
    fn birth_dates_and_ages() {
        let today = NaiveDate::from_ymd_opt(2021, 1, 22).unwrap();
        assert!(parse_birth_date("birth_date", "2030-01-01", today).is_err());
        assert!(parse_birth_date("birth_date", "1931-02-30", today).is_err());
        let b = parse_birth_date("birth_date", "1931-01-23", today).unwrap();
        assert_eq!(age_on(b, today), 89);
        assert_eq!(age_on(b, today + Duration::days(1)), 90);
    }

    #[test]
    fn tags_must_be_known_and_not_repeated() {
        let err =
            parse_tags("tags", [Some(Tag::Elderly), Some(Tag::LivingAlone), None]).unwrap_err();
        assert!(err.to_string().starts_with("tags[2]:"), "{err}");
        let err = parse_tags(
            "tags",
            [
                Tag::LivingAlone,
                Tag::Elderly,
                Tag::Disabled,
                Tag::LowIncome,
                Tag::Elderly,
            ]
            .map(Some),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("tags[4]: repeats elderly"),
            "{err}"
        );
        let tags = parse_tags("tags", [Some(Tag::LowIncome), Some(Tag::LivingAlone)]).unwrap();
        assert_eq!(tags_from_db(&tags_to_db(&tags)), tags);
    }

    #[test]
    fn weeks_run_monday_to_monday_in_local_time() {
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        // 2020-11-25 was a Wednesday; 10:00 in UTC+8.
        let at = cst
            .with_ymd_and_hms(2020, 11, 25, 10, 0, 0)
            .unwrap()
            .timestamp_micros();
        let (start, end) = week_bounds(at, cst);
        assert_eq!(
            start,
            cst.with_ymd_and_hms(2020, 11, 23, 0, 0, 0)
                .unwrap()
                .timestamp_micros()
        );
        assert_eq!(end - start, 7 * 86_400_000_000);
        // Sunday 23:30 local is still the same week even though it is Sunday 15:30 UTC.
        let sunday = cst
            .with_ymd_and_hms(2020, 11, 29, 23, 30, 0)
            .unwrap()
            .timestamp_micros();
        assert_eq!(week_bounds(sunday, cst).0, start);
    }

    #[test]
    fn overdue_counts_from_the_last_visit_that_reached_someone() {
        let day = 86_400_000_000;
        let care = Care {
            level: CareLevel::Intensive,
            every_days: 7,
            reason: String::new(),
        };
        let s = visit_status(&care, 0, Some(10 * day), 20 * day);
        assert_eq!((s.due_at, s.overdue_micros), (17 * day, 3 * day));
        let never = visit_status(&care, 0, None, 3 * day);
        assert_eq!((never.due_at, never.overdue_micros), (7 * day, 0));
        assert!(!visit_counts(VisitOutcome::NotHome));
        assert!(visit_counts(VisitOutcome::NeedsHelp));
    }
}
