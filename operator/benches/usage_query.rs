//! Usage-query latency for one month at 1,000,000 ledger rows on PostgreSQL, through the
//! rollups (what `GET /api/v1/usage`, `tollgate usage` and the dashboard run), against the
//! same questions asked of the raw ledger in the same run as the baseline.
//!
//! `cargo bench -p tollgate-operator --bench usage_query` (PostgreSQL from
//! `TOLLGATE_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres; a
//! scratch database is created and dropped). `USAGE_BENCH_ROWS` changes the row count.

use std::time::{Duration, Instant};

use tollgate_dataplane::store::Store;
use tollgate_operator::store::sql::{DAY_MS, GroupBy, SqlStore, UsageFilter};
use tollgate_testkit::ScratchDb;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (p50, p95, max) =
        (percentile(&samples, 0.5), percentile(&samples, 0.95), samples.last().copied().unwrap_or_default());
    println!(
        "{name:<44} n={:<4} p50 {:>8.2} ms  p95 {:>8.2} ms  max {:>8.2} ms",
        samples.len(),
        ms(p50),
        ms(p95),
        ms(max)
    );
    p95
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: i64 = std::env::var("USAGE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let db = ScratchDb::postgres("tollgate_usage_bench").await; // dropped on return, error or not
    let store = db.connect().await;
    let Store::Postgres(pool) = store.clone() else { return Err("not PostgreSQL".into()) };

    // One month of traffic: 200 developers in 10 teams, 10 models, one request every
    // 30 days / rows; 2% errors.
    let month_start: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    let spacing = (30 * DAY_MS) / rows;
    let t = Instant::now();
    sqlx::query(
        "INSERT INTO virtual_keys (id, key_hash, display_prefix, name, principal_kind, principal_name, role, team, allowed_models, created_at_ms) \
         SELECT 'k' || g, decode(md5('k' || g), 'hex'), 'tg-bench', 'k', 'developer', 'dev' || g, 'developer', 'team-' || (g % 10), '[]', 0 \
         FROM generate_series(0, 199) g",
    )
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO usage_records (request_id, ts_ms, key_id, principal_kind, principal_name, endpoint, model, provider, ip_token, \
         stream, input_tokens, output_tokens, cached_input_tokens, latency_ms, status, error_class, cost_micros) \
         SELECT 'r' || g, $1 + g * $2, 'k' || (g % 200), 'developer', 'dev' || (g % 200), 'chat.completions', 'model-' || (g % 10), \
         'openai', 'default/main', false, 100 + g % 50, 20 + g % 30, 0, 100, CASE WHEN g % 50 = 0 THEN 500 ELSE 200 END, NULL, 150 + g % 100 \
         FROM generate_series(0, $3 - 1) g",
    )
    .bind(month_start)
    .bind(spacing)
    .bind(rows)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    println!("ledger: {rows} rows over 30 days loaded in {:.1} s", t.elapsed().as_secs_f64());

    let sql = SqlStore::new(store.clone());
    let t = Instant::now();
    let hours = sql.rollup("hour", month_start, month_start + 31 * DAY_MS).await?;
    let days = sql.rollup("day", month_start, month_start + 31 * DAY_MS).await?;
    sqlx::query("ANALYZE usage_rollups").execute(&pool).await?;
    println!(
        "rollups: {hours} hourly + {days} daily groups built in {:.1} s (full month, first run)",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    sql.rollup("hour", month_start + 29 * DAY_MS, month_start + 30 * DAY_MS).await?;
    println!(
        "rollups: one day of hours recomputed in {:.0} ms (the scheduler's incremental run)",
        ms(t.elapsed())
    );

    let month =
        UsageFilter { from_ms: month_start, to_ms: month_start + 30 * DAY_MS, ..UsageFilter::default() };
    let one_dev = UsageFilter { principals: vec![("developer".into(), "dev7".into())], ..month.clone() };
    let one_team = UsageFilter { teams: vec!["team-3".into()], ..month.clone() };
    let queries: [(&str, &UsageFilter, Option<GroupBy>); 7] = [
        ("month total", &month, None),
        ("month by model", &month, Some(GroupBy::Model)),
        ("month by principal", &month, Some(GroupBy::Principal)),
        ("month by team", &month, Some(GroupBy::Team)),
        ("month by day", &month, Some(GroupBy::Day)),
        ("one developer by day (a developer's view)", &one_dev, Some(GroupBy::Day)),
        ("one team by model (a superuser's view)", &one_team, Some(GroupBy::Model)),
    ];
    println!("\nvia the rollups:");
    let mut all = Vec::new();
    for (name, filter, by) in queries {
        let mut samples = Vec::new();
        for _ in 0..40 {
            let t = Instant::now();
            let groups = sql.usage(filter, by).await?;
            samples.push(t.elapsed());
            assert!(!groups.is_empty());
        }
        all.extend(samples.iter().copied());
        report(name, samples);
    }
    let p95 = report("ALL rollup queries", all);

    println!("\nbaseline, the same questions of the raw ledger:");
    let raw = "SELECT model, COUNT(*), CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cost_micros) AS BIGINT) FROM usage_records \
               WHERE ts_ms >= $1 AND ts_ms < $2 GROUP BY model";
    let mut raw_samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        sqlx::query(raw).bind(month.from_ms).bind(month.to_ms).fetch_all(&pool).await?;
        raw_samples.push(t.elapsed());
    }
    let raw_p95 = report("month by model (raw ledger)", raw_samples);
    let dev_raw = "SELECT ts_ms / 86400000, COUNT(*), CAST(SUM(cost_micros) AS BIGINT) FROM usage_records \
                   WHERE principal_name = $3 AND ts_ms >= $1 AND ts_ms < $2 GROUP BY 1";
    let mut dev_samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        sqlx::query(dev_raw).bind(month.from_ms).bind(month.to_ms).bind("dev7").fetch_all(&pool).await?;
        dev_samples.push(t.elapsed());
    }
    report("one developer by day (raw ledger)", dev_samples);
    println!(
        "\nrollup p95 {:.2} ms (target <= 50 ms): {}; raw-ledger month-by-model p95 is {:.0}x the rollups' p95",
        ms(p95),
        if p95 <= Duration::from_millis(50) { "MET" } else { "MISSED" },
        raw_p95.as_secs_f64() / p95.as_secs_f64().max(1e-9)
    );

    pool.close().await;
    Ok(())
}
