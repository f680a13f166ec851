//! The schema's path past one database: every table is either keyed by
//! community first (so Citus can distribute it by `community_id`, keeping a
//! community's rows, and the joins between them, on one node), or named below
//! as a reference or coordinator-local table with the reason. A new table
//! that is neither fails here. The mapping is written up in docs/SHARDING.md.
use std::path::{Path, PathBuf};

/// Tables that are not distributed, and why (docs/SHARDING.md has the same list).
const NOT_DISTRIBUTED: &[(&str, &str)] = &[
    (
        "idempotency_keys",
        "local: keyed by scope and key; see docs/SHARDING.md",
    ),
    (
        "places",
        "reference: the place tree, above and below community level",
    ),
    ("units", "reference: county-wide agencies"),
    (
        "cadres",
        "reference: a cadre serves several communities over time",
    ),
    (
        "accounts",
        "reference: logins, county roles have no community",
    ),
    (
        "ended_sessions",
        "reference: ended logins of accounts, read whole by every service",
    ),
    ("items", "reference: the county's item catalogue"),
    (
        "cadre_locks",
        "local: one row per cadre, across communities",
    ),
    (
        "refresh_tokens",
        "gateway: its own small database, not sharded",
    ),
    (
        "web_sessions",
        "gateway: its own small database, not sharded",
    ),
    (
        "open311_keys",
        "gateway: its own small database, not sharded",
    ),
];

struct Table {
    name: String,
    file: PathBuf,
    columns: Vec<String>,
    primary_key: Vec<String>,
}

fn migrations() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [
        "crates/linli-core/migrations",
        "services/people/migrations",
        "services/issues/migrations",
        "services/logistics/migrations",
        "services/gateway/migrations",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sql") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "migrations found: {files:?}");
    files
}

fn columns_of(list: &str) -> Vec<String> {
    list.split(',').map(|c| c.trim().to_owned()).collect()
}

fn tables(sql: &str, file: &Path) -> Vec<Table> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find("CREATE TABLE ") {
        rest = &rest[at + "CREATE TABLE ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let body = &rest[rest.find('(').unwrap() + 1..rest.find("\n);").unwrap()];
        let mut columns = Vec::new();
        let mut primary_key = Vec::new();
        for line in body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("--"))
        {
            if let Some(list) = line.strip_prefix("PRIMARY KEY (") {
                primary_key = columns_of(&list[..list.find(')').unwrap()]);
            } else {
                let column = line.split_whitespace().next().unwrap().to_owned();
                if line.contains("PRIMARY KEY") {
                    primary_key = vec![column.clone()];
                }
                columns.push(column);
            }
        }
        out.push(Table {
            name,
            file: file.to_owned(),
            columns,
            primary_key,
        });
    }
    out
}

/// Unique indexes: (table, columns).
fn unique_indexes(sql: &str) -> Vec<(String, Vec<String>)> {
    sql.lines()
        .filter_map(|l| l.trim().strip_prefix("CREATE UNIQUE INDEX "))
        .map(|l| {
            let on = &l[l.find(" ON ").unwrap() + 4..];
            let table = on[..on.find(' ').unwrap()].to_owned();
            let cols = &on[on.find('(').unwrap() + 1..on.find(')').unwrap()];
            (table, columns_of(cols))
        })
        .collect()
}

#[test]
fn every_table_is_distributed_by_community_or_named_as_reference() {
    let mut all = Vec::new();
    let mut unique = Vec::new();
    for file in migrations() {
        let sql = std::fs::read_to_string(&file).unwrap();
        all.extend(tables(&sql, &file));
        unique.extend(unique_indexes(&sql));
    }
    assert!(all.len() > 30, "found {} tables", all.len());
    let mut distributed = 0;
    for t in &all {
        if let Some((_, why)) = NOT_DISTRIBUTED.iter().find(|(n, _)| *n == t.name) {
            assert!(!why.is_empty());
            continue;
        }
        assert!(
            t.columns.iter().any(|c| c == "community_id"),
            "{} ({}) has no community_id: distribute it by community or list it in NOT_DISTRIBUTED",
            t.name,
            t.file.display()
        );
        assert_eq!(
            t.primary_key.first().map(String::as_str),
            Some("community_id"),
            "{} ({}): its primary key must lead with community_id for Citus",
            t.name,
            t.file.display()
        );
        for (table, cols) in unique.iter().filter(|(table, _)| *table == t.name) {
            assert!(
                cols.iter().any(|c| c == "community_id"),
                "a unique index on {table} {cols:?} must include community_id"
            );
        }
        distributed += 1;
    }
    assert!(distributed >= 25, "{distributed} distributed tables");
    // Every name listed is a real table, so the list cannot go stale.
    for (name, _) in NOT_DISTRIBUTED {
        assert!(
            all.iter().any(|t| t.name == *name),
            "{name} is listed but no longer exists"
        );
    }
}
