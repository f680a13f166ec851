//! Heads: the per-community counters that number each community's stream
//! of events and its audit chain, moved on by the writers that append to them
//! (`linli_core::db::advance_heads`), on SQLite and on PostgreSQL.

/// Each community's seq as a writer saw it.
type Seqs = Vec<(String, i64)>;

/// Heads move on by their counts, one or several at once, a missing one
/// is made, and writers moving the same heads at once lose no step and
/// never deadlock.
async fn heads_move_together(backend: linli_core::testing::Backend) {
    use sqlx::Row;
    use std::collections::BTreeMap;
    let test_db = linli_core::testing::TestDb::new(backend).await;
    let db = linli_core::Db::connect(&test_db.url).await.unwrap();
    sqlx::query("CREATE TABLE heads (community_id TEXT PRIMARY KEY, seq BIGINT NOT NULL)")
        .execute(&db.writer)
        .await
        .unwrap();
    sqlx::query("INSERT INTO heads (community_id, seq) VALUES ('a', 5)")
        .execute(&db.writer)
        .await
        .unwrap();
    const NEW: &str = "INSERT INTO heads (community_id, seq) VALUES ($1, 0) ON CONFLICT (community_id) DO NOTHING";
    let advance = |counts: Vec<(&'static str, i64)>| {
        let db = db.clone();
        async move {
            let counts: BTreeMap<&str, i64> = counts.into_iter().collect();
            let mut tx = db.begin_write().await?;
            let heads =
                linli_core::db::advance_heads(&mut tx, "heads", "seq", NEW, &counts).await?;
            tx.commit().await?;
            let mut seqs: Vec<(String, i64)> = heads
                .iter()
                .map(|(c, row)| (c.clone(), row.try_get::<i64, _>("seq").unwrap()))
                .collect();
            seqs.sort();
            linli_core::Result::Ok(seqs)
        }
    };
    let seqs = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    };
    assert_eq!(
        advance(vec![("a", 2), ("b", 3)]).await.unwrap(),
        seqs(&[("a", 7), ("b", 3)])
    );
    assert_eq!(advance(vec![("b", 1)]).await.unwrap(), seqs(&[("b", 4)]));
    assert_eq!(advance(vec![("c", 1)]).await.unwrap(), seqs(&[("c", 1)]));
    let writers: Vec<tokio::task::JoinHandle<linli_core::Result<Seqs>>> = (0..8)
        .map(|i| {
            let counts = if i % 2 == 0 {
                vec![("c", 1), ("a", 1), ("b", 1)]
            } else {
                vec![("b", 2), ("a", 2)]
            };
            tokio::spawn(advance(counts))
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    let all: Vec<(String, i64)> =
        sqlx::query_as("SELECT community_id, seq FROM heads ORDER BY community_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        all,
        seqs(&[("a", 7 + 4 + 8), ("b", 4 + 4 + 8), ("c", 1 + 4)])
    );
    db.pool.close().await;
    db.writer.close().await;
}

linli_core::backend_tests!(heads_move_together);
