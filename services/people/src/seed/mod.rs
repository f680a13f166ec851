//! Demo data from the story linli is modelled on: 双泉社区 in 通羊镇, 通山县,
//! with the old compound 八角亭小区 (1,258 residents), the county discipline
//! commission (县纪委监委) registered there, its cadres paired with the
//! vulnerable households — among them 程大娘, 90, living alone, hard of
//! hearing and unsteady on her feet, looked after by 小阮 — weekly duty
//! check-ins, visits, and an account for each role. Every write is keyed, so
//! seeding again changes nothing.
use chrono::Duration;

use linli_core::time::now_micros;
use linli_core::{Actor, Role};

use crate::domain::{self, PairingRole, PlaceKind, RegistrationState, VisitKind, VisitOutcome};
use crate::store::{
    IdemKey, NewAccount, NewCadre, NewCheckIn, NewPairing, NewPlace, NewVisit, Store,
};

mod county;
mod roster;
pub use county::county;
pub use roster::generate_roster;

/// The residents of 八角亭小区 in the story.
pub const RESIDENTS: usize = 1258;
/// Demo accounts all use this password; change it before real use.
pub const DEMO_PASSWORD: &str = "linli-demo-2021";

/// Whether the demo accounts may be used with the published password as they
/// are (`make run`, the tests), or must change it first (every other seeding:
/// a demo that anyone can reach must not open with a password in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoPasswords {
    MustChange,
    Keep,
}
/// The roster the demo imports; also the example for `linli-people import`.
pub const ROSTER_CSV: &str = include_str!("../../examples/bajiaoting-roster.csv");

fn key(parts: &str) -> IdemKey {
    IdemKey {
        key: format!("seed:{parts}"),
        fingerprint: format!("seed:{parts}"),
    }
}

/// The demo's cadres of 县纪委监委: (name, title).
const CADRES: &[(&str, &str)] = &[
    ("刘海元", "县纪委书记、监委主任"),
    ("阮晓峰", "干部"),
    ("宋成琳", "干部"),
    ("孟军", "干部"),
    ("乐志华", "纪检监察室主任"),
    ("夏雨", "干部"),
    ("焦德明", "干部"),
    ("方敏", "干部"),
    ("成少华", "干部"),
    ("舒静", "干部"),
    ("胡文斌", "干部"),
    ("郭丽华", "干部"),
];

pub async fn run(store: &Store, passwords: DemoPasswords) -> anyhow::Result<()> {
    let actor = Actor::local("seed");
    let county = county_place(store, &actor).await?;
    let (k, p) = place(
        "town",
        PlaceKind::Town,
        Some(&county.id),
        "通羊镇",
        "421224100",
    );
    let town = store.create_place(&actor, &k, p).await?;
    let (k, p) = place(
        "community",
        PlaceKind::Community,
        Some(&town.id),
        "双泉社区",
        "421224100005",
    );
    let community = store.create_place(&actor, &k, p).await?;
    let people = populate(store, &community, "", "通山县纪委监委").await?;

    // One account per role; see the README.
    let password_hash = crate::accounts::hash_password(DEMO_PASSWORD)?;
    let accounts = [
        ("admin", Role::Admin, None, None, None),
        ("supervisor", Role::Supervisor, None, None, None),
        (
            "wujing",
            Role::CommunityWorker,
            Some(community.id.clone()),
            None,
            None,
        ),
        (
            "ruanxf",
            Role::Cadre,
            Some(community.id.clone()),
            Some(people.paired_cadre.clone()),
            None,
        ),
        (
            "chengguilan",
            Role::Resident,
            Some(community.id.clone()),
            None,
            people.resident.clone(),
        ),
    ];
    for (username, role, community_id, cadre_id, resident_id) in accounts {
        let new = NewAccount {
            username: username.into(),
            password_hash: password_hash.clone(),
            role,
            community_id,
            cadre_id,
            resident_id,
            must_change_password: passwords == DemoPasswords::MustChange,
        };
        ensure_account(store, &actor, "", new).await?;
    }

    let summary = store.community_summary(&community.id).await?;
    println!(
        "demo data: {} ({}) — {} households, {} residents, {} vulnerable ({} intensive care), {} cadres registered, {} households paired",
        community.name,
        community.id,
        summary.households,
        summary.residents,
        summary.vulnerable_households,
        summary.intensive_care_households,
        summary.cadres_registered,
        summary.households_paired
    );
    Ok(())
}

fn place(
    k: &str,
    kind: PlaceKind,
    parent: Option<&str>,
    name: &str,
    code: &str,
) -> (IdemKey, NewPlace) {
    (
        key(&format!("place:{k}")),
        NewPlace {
            kind,
            parent_id: parent.map(str::to_owned),
            name: name.into(),
            code: code.into(),
        },
    )
}

async fn county_place(
    store: &Store,
    actor: &Actor,
) -> anyhow::Result<linli_proto::people::v1::Place> {
    let (k, p) = place("county", PlaceKind::County, None, "通山县", "421224");
    Ok(store.create_place(actor, &k, p).await?)
}

async fn ensure_account(
    store: &Store,
    actor: &Actor,
    prefix: &str,
    new: NewAccount,
) -> anyhow::Result<()> {
    // A disabled account (a resident who moved out) is still there: not made again.
    if !store.username_taken(&new.username).await? {
        let k = key(&format!("{prefix}account:{}", new.username));
        store.create_account(actor, &k, new).await?;
    }
    Ok(())
}

/// Who a populated community's accounts are tied to.
struct Populated {
    /// The cadre paired with the roster's first household (小阮 in 双泉社区).
    paired_cadre: String,
    /// The first resident of the roster's first household (程大娘).
    resident: Option<String>,
}

/// Imports the roster into `community` and gives it a unit of twelve cadres,
/// registered there and paired with its vulnerable households, four weeks of
/// duty and a round of visits. `prefix` keeps each community's keys apart
/// (empty for the demo community, whose keys predate it).
async fn populate(
    store: &Store,
    community: &linli_proto::people::v1::Place,
    prefix: &str,
    unit_name: &str,
) -> anyhow::Result<Populated> {
    let actor = Actor::local("seed");
    let key = |k: &str| key(&format!("{prefix}{k}"));
    let importer = Actor::local("seed");
    let report = crate::import::import_roster(
        store,
        &importer,
        &community.id,
        ROSTER_CSV.as_bytes(),
        false,
        false,
    )
    .await?;
    if !report.problems.is_empty() {
        anyhow::bail!("the demo roster did not import cleanly:\n{report}");
    }

    let unit = store.create_unit(&actor, &key("unit"), unit_name).await?;
    let mut cadres = Vec::new();
    for (i, (name, title)) in CADRES.iter().enumerate() {
        let new = NewCadre {
            unit_id: unit.id.clone(),
            name: (*name).into(),
            phone: crate::domain::parse_phone("phone", &cadre_phone(prefix, i))?,
            title: (*title).into(),
        };
        let cadre = store
            .create_cadre(&actor, &key(&format!("cadre:{i}")), new)
            .await?;
        let reg = store
            .request_registration(
                &actor,
                &key(&format!("registration:{i}")),
                &cadre.id,
                &community.id,
            )
            .await?;
        if reg.state == RegistrationState::Requested.to_proto() {
            // Approved as of five weeks ago, as ApproveRegistration with active_from does,
            // so the four weeks of duty below come after it.
            let five_weeks_ago = now_micros() - 35 * 86_400_000_000;
            store
                .move_registration(
                    &actor,
                    &reg.id,
                    reg.version,
                    RegistrationState::Active,
                    "",
                    five_weeks_ago,
                )
                .await?;
        }
        cadres.push(cadre);
    }

    // Vulnerable households, closest care first; 程大娘's is the first of the roster.
    let mut vulnerable = Vec::new();
    let mut page = linli_core::page::PageRequest::parse(500, "")?;
    loop {
        let (batch, next) = store
            .list_households(&community.id, "", Some(domain::CareLevel::Watch), &page)
            .await?;
        vulnerable.extend(batch);
        if next.is_empty() {
            break;
        }
        page = linli_core::page::PageRequest::parse(500, &next)?;
    }
    vulnerable.sort_by_key(|h| (std::cmp::Reverse(h.care_level), h.external_ref.clone()));
    let cheng = vulnerable
        .iter()
        .find(|h| h.external_ref == "BJT-0001")
        .cloned();
    let ruan = &cadres[1];
    for (i, h) in vulnerable.iter().enumerate() {
        // 小阮 looks after 程大娘; the other cadres share the rest in turn.
        let cadre = if h.external_ref == "BJT-0001" {
            ruan
        } else {
            &cadres[2 + i % (cadres.len() - 2)]
        };
        let new = NewPairing {
            household_id: h.id.clone(),
            role: PairingRole::Cadre,
            cadre_id: Some(cadre.id.clone()),
            member_name: None,
            member_phone: None,
        };
        store
            .pair_household(
                &actor,
                &key(&format!("pairing:{}:cadre", h.external_ref)),
                new,
            )
            .await?;
    }
    if let Some(cheng) = &cheng {
        for (role, name, phone) in [
            (PairingRole::CommunityWorker, "吴晶", "13971500001"),
            (PairingRole::MedicalWorker, "李医生", "13971500002"),
        ] {
            let new = NewPairing {
                household_id: cheng.id.clone(),
                role,
                cadre_id: None,
                member_name: Some(name.into()),
                member_phone: crate::domain::parse_phone("member_phone", phone)?,
            };
            store
                .pair_household(
                    &actor,
                    &key(&format!("pairing:BJT-0001:{}", role.as_str())),
                    new,
                )
                .await?;
        }
    }

    // Duty: the last four weeks, each cadre once a week, a few missing a week.
    let now = now_micros();
    let day = 86_400_000_000i64;
    let today = store.local_date(now);
    for week in 0..4i64 {
        let (week_start, _) = domain::week_bounds(now - week * 7 * day, store.utc_offset());
        for (i, cadre) in cadres.iter().enumerate() {
            if (i as i64 + week) % 5 == 4 {
                continue;
            }
            let at =
                (week_start + (i as i64 % 5) * day + 9 * 3_600_000_000).min(now - 3_600_000_000);
            let activity = [
                "入户走访",
                "清理卫生死角",
                "卡点值守",
                "收集三最问题",
                "政策宣讲",
            ][(i + week as usize) % 5];
            let new = NewCheckIn {
                cadre_id: cadre.id.clone(),
                community_id: community.id.clone(),
                at,
                activity: activity.into(),
            };
            store
                .check_in(
                    &actor,
                    &key(&format!(
                        "check_in:{i}:{}",
                        today - Duration::days(7 * week)
                    )),
                    new,
                )
                .await?;
        }
    }

    // Visits: most vulnerable households recently, some left overdue so the compliance report has work to show.
    for (i, h) in vulnerable.iter().enumerate() {
        // About one in seven is past due; the rest were visited within their cadence.
        let every = i64::from(h.visit_every_days.max(1));
        let days_ago = match i {
            _ if h.external_ref == "BJT-0001" => 3,
            _ if i % 7 == 0 => every + 1 + (i as i64 % 9),
            _ => i as i64 % every,
        };
        let cadre = if h.external_ref == "BJT-0001" {
            ruan
        } else {
            &cadres[2 + i % (cadres.len() - 2)]
        };
        let outcome = if i % 11 == 5 {
            VisitOutcome::NotHome
        } else {
            VisitOutcome::Ok
        };
        let new = NewVisit {
            household_id: h.id.clone(),
            cadre_id: cadre.id.clone(),
            at: now - days_ago * day,
            kind: if i % 4 == 3 {
                VisitKind::PhoneCall
            } else {
                VisitKind::HomeVisit
            },
            outcome,
            note: if h.external_ref == "BJT-0001" {
                "敲门要耐心，大娘耳背；送去青菜和鸡蛋".into()
            } else {
                String::new()
            },
        };
        store
            .log_visit(
                &actor,
                &key(&format!(
                    "visit:{}:{}",
                    h.external_ref,
                    today - Duration::days(days_ago)
                )),
                new,
            )
            .await?;
    }

    let resident = match &cheng {
        Some(h) => store
            .household_profile(&h.id)
            .await?
            .residents
            .first()
            .map(|r| r.id.clone()),
        None => None,
    };
    Ok(Populated {
        paired_cadre: ruan.id.clone(),
        resident,
    })
}

/// The demo's cadres keep their numbers; each benchmark community's get their own.
fn cadre_phone(prefix: &str, i: usize) -> String {
    let community: u32 = prefix
        .trim_start_matches("bench:")
        .trim_end_matches(':')
        .parse()
        .map_or(0, |n: u32| n + 1);
    if community == 0 {
        format!("1397150{:04}", 1000 + i)
    } else {
        format!("138{community:04}{i:04}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_roster_is_the_generated_one() {
        let generated = generate_roster();
        if std::env::var_os("LINLI_WRITE_EXAMPLES").is_some() {
            std::fs::write(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/examples/bajiaoting-roster.csv"
                ),
                &generated,
            )
            .unwrap();
        }
        assert_eq!(
            ROSTER_CSV, generated,
            "regenerate with LINLI_WRITE_EXAMPLES=1 cargo test -p linli-people seed"
        );
        assert_eq!(generated.lines().count() - 1, RESIDENTS);
    }
}
