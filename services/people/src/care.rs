//! The care policy: how members' vulnerability sets a household's care level
//! and the cadence of visits it is owed. Configurable under `[care_policy]`.
use serde::Deserialize;

use crate::domain::{CareLevel, Tag};

/// What the care policy looks at for one resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    pub age: Option<i32>,
    pub tags: Vec<Tag>,
}

impl MemberFacts {
    /// A resident's facts from their stored birth date and tags, on `day`:
    /// what [`crate::store::resident_from_row`] and
    /// [`crate::Store::member_facts`] make of them, without the rest of the row.
    pub fn of(birth_date: &str, tags: &str, day: chrono::NaiveDate) -> MemberFacts {
        let age = chrono::NaiveDate::parse_from_str(birth_date, "%Y-%m-%d")
            .ok()
            .map(|b| crate::domain::age_on(b, day));
        let stored = MemberFacts {
            age: Some(age.unwrap_or(0)),
            tags: crate::domain::tags_from_db(tags),
        };
        MemberFacts {
            age,
            tags: stored.effective_tags(),
        }
    }

    /// The resident's tags plus `elderly` when they are 80 or over, so nobody
    /// has to remember to tag a birthday.
    pub fn effective_tags(&self) -> Vec<Tag> {
        let mut tags = self.tags.clone();
        if self.age.is_some_and(|a| a >= ELDERLY_AGE) && !tags.contains(&Tag::Elderly) {
            tags.push(Tag::Elderly);
        }
        tags
    }
}

pub const ELDERLY_AGE: i32 = 80;

/// A household's care as the policy decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Care {
    pub level: CareLevel,
    /// Required days between visits; 0 when none.
    pub every_days: i32,
    pub reason: String,
}

impl Care {
    pub fn none() -> Care {
        Care {
            level: CareLevel::None,
            every_days: 0,
            reason: String::new(),
        }
    }
    pub fn is_vulnerable(&self) -> bool {
        self.level > CareLevel::None
    }
}

/// One rule: a household gets `level` and a visit every `every_days` days if
/// any one member has all of `all_tags`, at least one of `any_tags` (when
/// given) and is at least `min_age` (when given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CareRule {
    pub name: String,
    pub level: CareLevel,
    pub every_days: i32,
    #[serde(default)]
    pub all_tags: Vec<Tag>,
    #[serde(default)]
    pub any_tags: Vec<Tag>,
    #[serde(default)]
    pub min_age: Option<i32>,
}

impl CareRule {
    fn matches(&self, m: &MemberFacts) -> bool {
        let tags = m.effective_tags();
        self.all_tags.iter().all(|t| tags.contains(t))
            && (self.any_tags.is_empty() || self.any_tags.iter().any(|t| tags.contains(t)))
            && self
                .min_age
                .is_none_or(|min| m.age.is_some_and(|a| a >= min))
    }
}

/// The care policy: configurable in the settings file under `[care_policy]`
/// as a list of `[[care_policy.rules]]`. A household takes the closest care
/// any rule gives it (the highest level, then the shortest cadence).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarePolicy {
    pub rules: Vec<CareRule>,
}

impl Default for CarePolicy {
    fn default() -> Self {
        use Tag::*;
        let rule = |name: &str, level, every_days, all_tags: &[Tag], any_tags: &[Tag]| CareRule {
            name: name.into(),
            level,
            every_days,
            all_tags: all_tags.to_vec(),
            any_tags: any_tags.to_vec(),
            min_age: None,
        };
        CarePolicy {
            rules: vec![
                rule(
                    "living alone and aged 80 or over",
                    CareLevel::Intensive,
                    7,
                    &[LivingAlone, Elderly],
                    &[],
                ),
                rule(
                    "living alone with a disability or illness",
                    CareLevel::Intensive,
                    7,
                    &[LivingAlone],
                    &[HearingImpaired, LimitedMobility, Disabled, ChronicIllness],
                ),
                rule("aged 80 or over", CareLevel::Priority, 14, &[Elderly], &[]),
                rule(
                    "disabled or of limited mobility",
                    CareLevel::Priority,
                    14,
                    &[],
                    &[Disabled, LimitedMobility],
                ),
                rule(
                    "other vulnerability",
                    CareLevel::Watch,
                    30,
                    &[],
                    &[
                        LivingAlone,
                        HearingImpaired,
                        ChronicIllness,
                        LowIncome,
                        ChildLeftBehind,
                    ],
                ),
            ],
        }
    }
}

impl CarePolicy {
    pub fn validate(&self) -> anyhow::Result<()> {
        for r in &self.rules {
            if r.level > CareLevel::None && !(1..=366).contains(&r.every_days) {
                anyhow::bail!(
                    "care_policy rule {:?}: every_days must be between 1 and 366",
                    r.name
                );
            }
        }
        Ok(())
    }

    pub fn evaluate(&self, members: &[MemberFacts]) -> Care {
        self.rules
            .iter()
            .filter(|r| members.iter().any(|m| r.matches(m)))
            .max_by_key(|r| (r.level, std::cmp::Reverse(r.every_days)))
            .map(|r| Care {
                level: r.level,
                every_days: r.every_days,
                reason: r.name.clone(),
            })
            .unwrap_or_else(Care::none)
    }
}
