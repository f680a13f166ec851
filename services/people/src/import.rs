//! Roster import. Communities keep their rosters in spreadsheets; this reads
//! one saved as CSV (one row per resident, with a household reference that
//! groups rows into households), checks every row, and imports every
//! household whose rows are all good. A household with any bad row is not
//! imported at all, and the bad rows are reported by line number. Keys are
//! derived from the rows, so importing the same file again changes nothing.
//!
//! Columns (header required, any order): household_ref, compound, building,
//! address, name, gender, birth_date, relation, phone, id_number, tags.
//! gender: male/female or 男/女; relation: head, spouse, child, parent,
//! grandchild, sibling, other or 户主, 配偶, 子女, 父母, 孙子女, 兄弟姐妹, 其他;
//! tags: vulnerability tags separated by `;`.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use linli_core::time::now_micros;
use linli_core::{Actor, Error};

use crate::domain::{self, Gender, Relation, Tag};
use crate::store::{IdemKey, NewHousehold, NewPlace, NewResident, Store};

const COLUMNS: [&str; 11] = [
    "household_ref",
    "compound",
    "building",
    "address",
    "name",
    "gender",
    "birth_date",
    "relation",
    "phone",
    "id_number",
    "tags",
];

/// A row that passed every check.
#[derive(Debug, Clone)]
struct RosterRow {
    line: u64,
    household_ref: String,
    compound: String,
    building: String,
    address: String,
    resident: ResidentRow,
}

#[derive(Debug, Clone)]
struct ResidentRow {
    name: String,
    gender: Gender,
    birth_date: chrono::NaiveDate,
    relation: Relation,
    phone: Option<domain::Phone>,
    id_number: Option<domain::IdNumber>,
    tags: Vec<Tag>,
    /// The row's content, for telling a re-import from a changed row.
    fingerprint: String,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: usize,
    pub households_imported: usize,
    pub residents_imported: usize,
    /// Households (and their residents) that were there from an earlier import.
    pub households_unchanged: usize,
    pub residents_unchanged: usize,
    pub households_skipped: usize,
    /// `line N: field: problem`, in line order.
    pub problems: Vec<String>,
}

fn parse_gender(v: &str) -> Option<Gender> {
    match v.trim() {
        "男" => Some(Gender::Male),
        "女" => Some(Gender::Female),
        v => Gender::parse(&v.to_ascii_lowercase()),
    }
}

fn parse_relation(v: &str) -> Option<Relation> {
    match v.trim() {
        "户主" | "本人" => Some(Relation::Head),
        "配偶" | "妻" | "夫" => Some(Relation::Spouse),
        "子女" | "子" | "女" | "儿子" | "女儿" => Some(Relation::Child),
        "父母" | "父亲" | "母亲" => Some(Relation::Parent),
        "孙子女" | "孙子" | "孙女" => Some(Relation::Grandchild),
        "兄弟姐妹" => Some(Relation::Sibling),
        "其他" => Some(Relation::Other),
        v => Relation::parse(&v.to_ascii_lowercase()),
    }
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}

fn parse_row(
    get: &dyn Fn(&str) -> String,
    line: u64,
    today: chrono::NaiveDate,
) -> Result<RosterRow, Error> {
    let household_ref = domain::parse_name("household_ref", &get("household_ref"))?;
    let compound = domain::parse_text("compound", &get("compound"), domain::MAX_NAME_CHARS)?;
    let building = domain::parse_text("building", &get("building"), domain::MAX_NAME_CHARS)?;
    if !building.is_empty() && compound.is_empty() {
        return Err(Error::invalid(
            "compound",
            "is required when building is given",
        ));
    }
    let address = domain::parse_name("address", &get("address"))?;
    let name = domain::parse_name("name", &get("name"))?;
    let gender = parse_gender(&get("gender"))
        .ok_or_else(|| Error::invalid("gender", "must be male/female or 男/女"))?;
    let birth_date = domain::parse_birth_date("birth_date", &get("birth_date"), today)?;
    let relation = parse_relation(&get("relation"))
        .ok_or_else(|| Error::invalid("relation", "is not a known relation"))?;
    let phone = domain::parse_phone("phone", &get("phone"))?;
    let id_number = domain::parse_id_number("id_number", &get("id_number"))?;
    if let Some((_, encoded)) = &id_number
        && *encoded != birth_date
    {
        return Err(Error::invalid(
            "birth_date",
            "does not match the birth date in id_number",
        ));
    }
    let tags_text = get("tags");
    let tags = domain::parse_tags(
        "tags",
        tags_text
            .split([';', '；', '|'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Tag::parse),
    )?;
    let fingerprint = digest(&[
        &name,
        gender.as_str(),
        &birth_date.to_string(),
        relation.as_str(),
        phone.as_ref().map_or("", domain::Phone::as_str),
        id_number.as_ref().map_or("", |(n, _)| n.as_str()),
        &domain::tags_to_db(&tags),
    ]);
    Ok(RosterRow {
        line,
        household_ref,
        compound,
        building,
        address,
        resident: ResidentRow {
            name,
            gender,
            birth_date,
            relation,
            phone,
            id_number: id_number.map(|(n, _)| n),
            tags,
            fingerprint,
        },
    })
}

/// Imports a roster into `community_id`. With `dry_run`, only checks it.
pub async fn import_roster(
    store: &Store,
    actor: &Actor,
    community_id: &str,
    input: impl Read,
    dry_run: bool,
    progress: bool,
) -> anyhow::Result<ImportReport> {
    let community = store.community(community_id).await?;
    let today = store.local_date(now_micros());
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let headers = reader.headers()?.clone();
    let index: HashMap<&str, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim_start_matches('\u{feff}'), i))
        .collect();
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !index.contains_key(c))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the header row lacks the column(s) {}; expected {}",
            missing.join(", "),
            COLUMNS.join(",")
        );
    }

    let mut report = ImportReport::default();
    let mut households: BTreeMap<String, Vec<RosterRow>> = BTreeMap::new();
    let mut bad_households: HashSet<String> = HashSet::new();
    // Problems found while checking, by line, reported in line order.
    let mut checks: Vec<(u64, String)> = Vec::new();
    let mut seen_ids: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                checks.push((line, format!("line {line}: {e}")));
                continue;
            }
        };
        report.rows += 1;
        let line = record.position().map_or(0, |p| p.line());
        let get = |c: &str| record.get(index[c]).unwrap_or_default().to_owned();
        match parse_row(&get, line, today) {
            Ok(row) => {
                if let Some(id) = &row.resident.id_number
                    && let Some(first) = seen_ids.insert(id.as_str().to_owned(), line)
                {
                    checks.push((
                        line,
                        format!("line {line}: id_number: repeats the one on line {first}"),
                    ));
                    bad_households.insert(row.household_ref.clone());
                }
                households
                    .entry(row.household_ref.clone())
                    .or_default()
                    .push(row);
            }
            Err(e) => {
                checks.push((line, format!("line {line}: {e}")));
                let household_ref = get("household_ref");
                bad_households.insert(household_ref.trim().to_owned());
            }
        }
    }
    // One household, one place: its rows must agree on where it is.
    for (household_ref, rows) in &households {
        let first = &rows[0];
        for r in &rows[1..] {
            if (&r.compound, &r.building, &r.address)
                != (&first.compound, &first.building, &first.address)
            {
                checks.push((r.line, format!("line {}: address: differs from line {} of the same household {household_ref}", r.line, first.line)));
                bad_households.insert(household_ref.clone());
            }
        }
    }
    checks.sort_by_key(|(line, _)| *line);
    report.problems.extend(checks.into_iter().map(|(_, p)| p));
    report.households_skipped = bad_households.len();
    if dry_run {
        return Ok(report);
    }

    let bar = if progress {
        ProgressBar::new(households.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} households {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = now_micros();
    let mut places: HashMap<(String, String), String> = HashMap::new();
    let key = |parts: &[&str]| {
        format!(
            "import:{}",
            digest(&[&[community.id.as_str()], parts].concat())
        )
    };
    for (household_ref, rows) in &households {
        bar.inc(1);
        if bad_households.contains(household_ref) {
            continue;
        }
        let first = &rows[0];
        let mut compound_id = None;
        let mut building_id = None;
        if !first.compound.is_empty() {
            let id = find_or_create_place(
                store,
                actor,
                &mut places,
                &key,
                &community.id,
                domain::PlaceKind::Compound,
                &first.compound,
            )
            .await?;
            if !first.building.is_empty() {
                building_id = Some(
                    find_or_create_place(
                        store,
                        actor,
                        &mut places,
                        &key,
                        &id,
                        domain::PlaceKind::Building,
                        &first.building,
                    )
                    .await?,
                );
            }
            compound_id = Some(id);
        }
        let idem = IdemKey {
            key: key(&["household", household_ref]),
            fingerprint: digest(&[&first.compound, &first.building, &first.address]),
        };
        let new = NewHousehold {
            community_id: community.id.clone(),
            compound_id,
            building_id,
            address: first.address.clone(),
            external_ref: household_ref.clone(),
        };
        let household = match store.create_household(actor, &idem, new).await {
            Ok(h) => h,
            Err(e) => {
                report.problems.push(format!("line {}: {e}", first.line));
                report.households_skipped += 1;
                continue;
            }
        };
        let existed = household
            .created_at
            .as_ref()
            .is_some_and(|t| linli_core::time::micros(t) < started);
        let mut added = 0;
        for row in rows {
            let r = &row.resident;
            let who = r.id_number.as_ref().map_or_else(
                || format!("{}|{}", r.name, r.birth_date),
                |n| n.as_str().to_owned(),
            );
            let idem = IdemKey {
                key: key(&["resident", household_ref, &who]),
                fingerprint: r.fingerprint.clone(),
            };
            let new = NewResident {
                household_id: household.id.clone(),
                name: r.name.clone(),
                gender: r.gender,
                birth_date: r.birth_date,
                phone: r.phone.clone(),
                id_number: r.id_number.clone(),
                relation: r.relation,
                tags: r.tags.clone(),
            };
            match store.add_resident(actor, &idem, new).await {
                Ok(res) => {
                    if store
                        .resident_created_at(&res.id)
                        .await
                        .is_ok_and(|at| at < started)
                    {
                        report.residents_unchanged += 1;
                    } else {
                        added += 1;
                    }
                }
                Err(Error::InvalidArgument { field, .. }) if field == "idempotency_key" => {
                    report.problems.push(format!("line {}: differs from the row imported before; change it in linli, not the roster", row.line));
                }
                Err(e) => report.problems.push(format!("line {}: {e}", row.line)),
            }
        }
        report.residents_imported += added;
        if existed && added == 0 {
            report.households_unchanged += 1;
        } else if !existed {
            report.households_imported += 1;
        }
    }
    bar.finish_and_clear();
    Ok(report)
}

async fn find_or_create_place(
    store: &Store,
    actor: &Actor,
    cache: &mut HashMap<(String, String), String>,
    key: &impl Fn(&[&str]) -> String,
    parent_id: &str,
    kind: domain::PlaceKind,
    name: &str,
) -> anyhow::Result<String> {
    if let Some(id) = cache.get(&(parent_id.to_owned(), name.to_owned())) {
        return Ok(id.clone());
    }
    let idem = IdemKey {
        key: key(&[kind.as_str(), parent_id, name]),
        fingerprint: digest(&[parent_id, name]),
    };
    let new = NewPlace {
        kind,
        parent_id: Some(parent_id.to_owned()),
        name: name.to_owned(),
        code: String::new(),
    };
    let place = store.create_place(actor, &idem, new).await?;
    cache.insert((parent_id.to_owned(), name.to_owned()), place.id.clone());
    Ok(place.id)
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} rows: {} households ({} residents) imported, {} households ({} residents) already there, {} households skipped",
            self.rows,
            self.households_imported,
            self.residents_imported,
            self.households_unchanged,
            self.residents_unchanged,
            self.households_skipped
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// The `import` command: exits 0 when every row was good, 1 when some were not.
pub async fn run(
    store: &Store,
    community: &str,
    file: &Path,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let community = store.find_community(community).await?;
    let input = std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let actor = Actor::local("import");
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = import_roster(store, &actor, &community.id, input, dry_run, progress).await?;
    if dry_run {
        println!("dry run, nothing written");
    }
    print!("{report}");
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
