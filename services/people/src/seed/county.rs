//! The benchmark county: many communities populated like 双泉社区.
use super::*;

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
                    // Benchmark accounts, of a county clearly not real.
                    must_change_password: false,
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
