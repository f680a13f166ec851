//! Demo data from the story linli is modelled on: 双泉社区 in 通羊镇, 通山县,
//! with the old compound 八角亭小区 (1,258 residents), the county discipline
//! commission (县纪委监委) registered there, its cadres paired with the
//! vulnerable households — among them 程大娘, 90, living alone, hard of
//! hearing and unsteady on her feet, looked after by 小阮 — weekly duty
//! check-ins, visits, and an account for each role. Every write is keyed, so
//! seeding again changes nothing.
use chrono::{Duration, NaiveDate};

use linli_core::time::now_micros;
use linli_core::{Actor, Role};

use crate::domain::{self, PairingRole, PlaceKind, RegistrationState, VisitKind, VisitOutcome};
use crate::store::{
    IdemKey, NewAccount, NewCadre, NewCheckIn, NewPairing, NewPlace, NewVisit, Store,
};

/// The residents of 八角亭小区 in the story.
pub const RESIDENTS: usize = 1258;
/// Demo accounts all use this password; change it before real use.
pub const DEMO_PASSWORD: &str = "linli-demo-2021";
/// The roster the demo imports; also the example for `linli-people import`.
pub const ROSTER_CSV: &str = include_str!("../examples/bajiaoting-roster.csv");

/// A small deterministic generator (xorshift), so the roster is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "宋", "孟", "许", "阮", "程", "舒", "乐", "夏", "焦", "成", "方",
];
const GIVEN_M: &[&str] = &[
    "建国", "志强", "国华", "德明", "少华", "文斌", "海涛", "明", "伟", "军", "勇", "浩然", "子轩",
    "宇航", "家豪",
];
const GIVEN_F: &[&str] = &[
    "秀英", "桂兰", "玉梅", "淑珍", "丽华", "红梅", "敏", "静", "芳", "婷", "雨涵", "欣怡", "梓涵",
    "思琪", "佳慧",
];

struct Person {
    name: String,
    male: bool,
    birth: NaiveDate,
    relation: &'static str,
    tags: Vec<&'static str>,
}

/// A person born in `first_year` or the `span - 1` years after, a man with `male_percent` chance.
fn person(
    rng: &mut Rng,
    surname: &str,
    male_percent: u64,
    first_year: i32,
    span: u64,
    relation: &'static str,
) -> Person {
    let male = rng.chance(male_percent);
    let birth_year = first_year + rng.below(span) as i32;
    let given = if male {
        rng.pick(GIVEN_M)
    } else {
        rng.pick(GIVEN_F)
    };
    let birth = NaiveDate::from_ymd_opt(
        birth_year,
        1 + rng.below(12) as u32,
        1 + rng.below(28) as u32,
    )
    .unwrap_or_default();
    Person {
        name: format!("{surname}{given}"),
        male,
        birth,
        relation,
        tags: Vec::new(),
    }
}

fn id_number(birth: NaiveDate, seq: u32, male: bool) -> String {
    // The 17th digit is odd for men and even for women.
    let order = (seq * 2 + u32::from(male)) % 1000;
    let first17 = format!("421224{}{order:03}", birth.format("%Y%m%d"));
    format!("{first17}{}", domain::id_check_char(&first17))
}

/// Generates the 八角亭小区 roster as CSV: realistic households summing to exactly 1,258 residents.
pub fn generate_roster() -> String {
    let mut rng = Rng(0x5eed_1258_2021_0122);
    let mut out = String::from(
        "household_ref,compound,building,address,name,gender,birth_date,relation,phone,id_number,tags\n",
    );
    let mut total = 0;
    let mut seq = 0u32;
    let mut n = 0;
    while total < RESIDENTS {
        n += 1;
        let building = 1 + (n - 1) / 40;
        let address = format!(
            "八角亭小区{building}栋{}单元{}0{}",
            1 + (n % 4),
            1 + (n % 6),
            1 + (n % 3)
        );
        let surname = rng.pick(SURNAMES);
        let mut members: Vec<Person> = Vec::new();
        if n == 1 {
            // 程大娘: 90, alone, hard of hearing, unsteady on her feet.
            let mut p = person(&mut rng, "程", 0, 1936, 1, "head");
            p.name = "程桂兰".into();
            p.birth = NaiveDate::from_ymd_opt(1936, 3, 8).unwrap_or_default();
            p.tags = vec!["living_alone", "hearing_impaired", "limited_mobility"];
            members.push(p);
        } else {
            match rng.below(100) {
                // An old person living alone.
                0..=9 => {
                    let mut p = person(&mut rng, surname, 35, 1936, 25, "head");
                    p.tags.push("living_alone");
                    if rng.chance(30) {
                        p.tags.push("chronic_illness");
                    }
                    if rng.chance(15) {
                        p.tags.push("hearing_impaired");
                    }
                    if rng.chance(10) {
                        p.tags.push("low_income");
                    }
                    members.push(p);
                }
                // An old couple.
                10..=29 => {
                    let year = 1938 + rng.below(20) as i32;
                    let mut a = person(&mut rng, surname, 100, year, 1, "head");
                    if rng.chance(15) {
                        a.tags.push("limited_mobility");
                    }
                    members.push(a);
                    let b_surname = rng.pick(SURNAMES);
                    members.push(person(&mut rng, b_surname, 0, year + 2, 1, "spouse"));
                }
                // Grandparents raising a grandchild whose parents work away (留守儿童).
                30..=37 => {
                    let year = 1950 + rng.below(12) as i32;
                    members.push(person(&mut rng, surname, 100, year, 1, "head"));
                    let b_surname = rng.pick(SURNAMES);
                    members.push(person(&mut rng, b_surname, 0, year + 1, 1, "spouse"));
                    let mut child = person(&mut rng, surname, 50, 2012, 8, "grandchild");
                    child.tags.push("child_left_behind");
                    members.push(child);
                }
                // A family with children, sometimes with a grandparent.
                _ => {
                    let year = 1970 + rng.below(25) as i32;
                    members.push(person(&mut rng, surname, 100, year, 1, "head"));
                    let b_surname = rng.pick(SURNAMES);
                    members.push(person(&mut rng, b_surname, 0, year + 1, 1, "spouse"));
                    for _ in 0..(1 + rng.below(2)) {
                        members.push(person(&mut rng, surname, 50, year + 24, 8, "child"));
                    }
                    if rng.chance(25) {
                        let mut g = person(&mut rng, surname, 40, 1935, 15, "parent");
                        if rng.chance(20) {
                            g.tags.push("disabled");
                        }
                        members.push(g);
                    }
                }
            }
        }
        members.truncate(RESIDENTS - total);
        for p in &members {
            seq += 1;
            let phone = if p.birth.year_ce().1 < 2008 {
                format!("1{}{:09}", 3 + rng.below(7), rng.below(1_000_000_000))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "BJT-{n:04},八角亭小区,{building}栋,{address},{},{},{},{},{phone},{},{}\n",
                p.name,
                if p.male { "男" } else { "女" },
                p.birth,
                p.relation,
                id_number(p.birth, seq, p.male),
                p.tags.join(";")
            ));
        }
        total += members.len();
    }
    out
}

use chrono::Datelike;

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

pub async fn run(store: &Store) -> anyhow::Result<()> {
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

/// The towns of 通山县, which the benchmark county's communities are spread over.
const TOWNS: &[&str] = &[
    "通羊镇",
    "南林桥镇",
    "黄沙铺镇",
    "厦铺镇",
    "九宫山镇",
    "闯王镇",
    "洪港镇",
    "大畈镇",
    "大路乡",
    "杨芳林乡",
    "燕厦乡",
    "慈口乡",
];

/// A benchmark county: `communities` communities spread over 通山县's towns,
/// each populated like 双泉社区 (the same roster, its own cadres, pairings,
/// duty and visits) with three accounts — worker `w001`, cadre `c001`,
/// resident `r001`, numbered by community — all with the demo password. It
/// writes through the same store as the API (every write keyed and audited),
/// `jobs` communities at a time; running it again changes nothing.
pub async fn county(store: &Store, communities: usize, jobs: usize) -> anyhow::Result<()> {
    let actor = Actor::local("seed");
    let county = county_place(store, &actor).await?;
    let mut towns = Vec::new();
    for (t, name) in TOWNS.iter().enumerate() {
        let (k, p) = place(
            &format!("bench:town:{t}"),
            PlaceKind::Town,
            Some(&county.id),
            name,
            &format!("421224{:03}", 101 + t),
        );
        towns.push(store.create_place(&actor, &k, p).await?);
    }
    let password_hash = crate::accounts::hash_password(DEMO_PASSWORD)?;
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let (towns, done) = (&towns, &done);
    let one = |i: usize| {
        let (actor, town, hash, done) = (
            actor.clone(),
            &towns[i % towns.len()],
            password_hash.clone(),
            done,
        );
        async move {
            let n = i / towns.len() + 1;
            let (k, p) = place(
                &format!("bench:community:{i}"),
                PlaceKind::Community,
                Some(&town.id),
                &format!("{}第{n}社区", town.name),
                &format!("{}{:03}", town.code, 200 + n),
            );
            let community = store.create_place(&actor, &k, p).await?;
            let prefix = format!("bench:{i}:");
            let people = populate(
                store,
                &community,
                &prefix,
                &format!("{}联系单位", community.name),
            )
            .await?;
            let number = i + 1;
            for (username, role, cadre_id, resident_id) in [
                (format!("w{number:03}"), Role::CommunityWorker, None, None),
                (
                    format!("c{number:03}"),
                    Role::Cadre,
                    Some(people.paired_cadre.clone()),
                    None,
                ),
                (
                    format!("r{number:03}"),
                    Role::Resident,
                    None,
                    people.resident.clone(),
                ),
            ] {
                let new = NewAccount {
                    username,
                    password_hash: hash.clone(),
                    role,
                    community_id: Some(community.id.clone()),
                    cadre_id,
                    resident_id,
                };
                ensure_account(store, &actor, &prefix, new).await?;
            }
            let so_far = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if so_far.is_multiple_of(10) || so_far == communities {
                eprintln!(
                    "county: {so_far}/{communities} communities ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            anyhow::Ok(())
        }
    };
    use futures_util::StreamExt;
    let mut runs =
        futures_util::stream::iter((0..communities).map(one)).buffer_unordered(jobs.max(1));
    while let Some(done) = runs.next().await {
        done?;
    }
    println!(
        "benchmark county: {communities} communities of {RESIDENTS} residents each, accounts w001…/c001…/r001… (password {DEMO_PASSWORD})"
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
    if store.account_for_login(&new.username).await?.is_none() {
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
