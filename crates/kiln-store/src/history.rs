//! Metric history: `metrics/get-history` (one run, paged) and
//! `metrics/get-history-bulk-interval` (many runs, sampled to at most `max_results` steps
//! per run, as MLflow's UI asks for it when plotting).
//!
//! A history can hold tens of thousands of points. Rather than stream one database row per
//! point (each crossing from the database thread to the async side), the page is packed
//! into one text value by the database (`group_concat` / `string_agg`) and split here.
//! Values travel as 17-significant-digit text, which round-trips every double exactly.

use std::collections::BTreeSet;

use kiln_core::entities::Metric;
use sqlx::AnyConnection;

use crate::db::Backend;
use crate::error::{Result, StoreError};
use crate::runs::{load_info, loaded_value};
use crate::{Store, page};

/// One point of a packed history: (step, timestamp, value).
type Point = (i64, i64, f64);

/// Reads `key`'s points of `run_id` with steps in `[from, to]`, in MLflow's order
/// (timestamp, step, value), `limit` points after skipping `offset`.
async fn fetch_points(
    conn: &mut AnyConnection,
    backend: Backend,
    run_id: &str,
    key: &str,
    (from, to): (i64, i64),
    (limit, offset): (i64, i64),
) -> Result<Vec<Point>> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT group_concat(step || ' ' || timestamp || ' ' || printf('%!.17g', value) \
             || ' ' || is_nan, ';') FROM (SELECT step, timestamp, value, is_nan FROM metrics \
             WHERE run_id = $1 AND key = $2 AND step >= $3 AND step <= $4 \
             ORDER BY timestamp, step, value LIMIT $5 OFFSET $6)"
        }
        Backend::Postgres => {
            "SELECT string_agg(step || ' ' || timestamp || ' ' || value::text || ' ' || is_nan, \
             ';' ORDER BY timestamp, step, value) FROM (SELECT step, timestamp, value, is_nan \
             FROM metrics WHERE run_id = $1 AND key = $2 AND step >= $3 AND step <= $4 \
             ORDER BY timestamp, step, value LIMIT $5 OFFSET $6) q"
        }
    };
    let packed: Option<String> = sqlx::query_scalar(sql)
        .bind(run_id)
        .bind(key)
        .bind(from)
        .bind(to)
        .bind(limit)
        .bind(offset)
        .fetch_one(&mut *conn)
        .await?;
    let Some(packed) = packed else {
        return Ok(Vec::new());
    };
    let corrupt = || StoreError::Config(format!("unreadable metric history of run {run_id}"));
    let mut out = Vec::with_capacity(packed.len() / 24);
    for point in packed.split(';') {
        let mut parts = point.split(' ');
        let mut next = || parts.next().ok_or_else(corrupt);
        let step: i64 = next()?.parse().map_err(|_| corrupt())?;
        let timestamp: i64 = next()?.parse().map_err(|_| corrupt())?;
        let value: f64 = next()?.parse().map_err(|_| corrupt())?;
        let is_nan: i64 = next()?.parse().map_err(|_| corrupt())?;
        out.push((step, timestamp, loaded_value(value, is_nan)));
    }
    Ok(out)
}

fn metric(key: &str, (step, timestamp, value): Point, run_id: Option<&str>) -> Metric {
    Metric {
        key: key.to_string(),
        value,
        timestamp,
        step,
        model_id: None,
        dataset_name: None,
        dataset_digest: None,
        run_id: run_id.map(str::to_string),
    }
}

/// Most runs one bulk request may name, and the largest sample per run (MLflow's limits).
pub const MAX_RUNS_PER_BULK_REQUEST: usize = 100;
pub const MAX_BULK_RESULTS: i64 = 1000;
pub const DEFAULT_BULK_RESULTS: i64 = 320;

/// Picks at most `max` steps spread evenly over `steps` (sorted), always keeping the first
/// and the last.
pub(crate) fn sample_steps(steps: &[i64], max: usize) -> BTreeSet<i64> {
    if steps.len() <= max {
        return steps.iter().copied().collect();
    }
    if max == 1 {
        return steps.first().copied().into_iter().collect();
    }
    let n = steps.len();
    (0..max)
        .map(|i| steps[(i * (n - 1) + (max - 1) / 2) / (max - 1)])
        .collect()
}

impl Store {
    /// A page of one metric's history, in MLflow's order: timestamp, then step, then value.
    /// Without `max_results` the whole history is returned, as MLflow's handler does.
    pub async fn get_metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<(Vec<Metric>, Option<String>)> {
        let mut conn = self.db.pool.acquire().await?;
        load_info(&mut conn, run_id).await?;
        let offset = page::decode(page_token)?;
        let limit = match max_results {
            Some(_) => page::max_results(max_results, 25_000, 25_000)?,
            None => i64::MAX / 2,
        };
        let points = fetch_points(
            &mut conn,
            self.db.backend,
            run_id,
            key,
            (i64::MIN, i64::MAX),
            (limit.saturating_add(1), offset),
        )
        .await?;
        let mut out: Vec<Metric> = points.into_iter().map(|p| metric(key, p, None)).collect();
        let next = if out.len() as i64 > limit {
            out.truncate(limit as usize);
            Some(page::encode(offset + limit))
        } else {
            None
        };
        Ok((out, next))
    }

    pub async fn get_metric_history_bulk_interval(
        &self,
        run_ids: &[String],
        key: &str,
        start_step: Option<i64>,
        end_step: Option<i64>,
        max_results: Option<i64>,
    ) -> Result<Vec<Metric>> {
        if run_ids.is_empty() {
            return Err(StoreError::invalid(
                "Missing value for required parameter 'run_ids'.",
            ));
        }
        if run_ids.len() > MAX_RUNS_PER_BULK_REQUEST {
            return Err(StoreError::invalid(format!(
                "GetMetricHistoryBulkInterval request must specify at most \
                 {MAX_RUNS_PER_BULK_REQUEST} run_ids. Received {} run_ids.",
                run_ids.len()
            )));
        }
        let max = max_results.unwrap_or(DEFAULT_BULK_RESULTS);
        if !(1..=MAX_BULK_RESULTS).contains(&max) {
            return Err(StoreError::invalid(format!(
                "Invalid value {max} for parameter 'max_results' supplied: it must be between 1 \
                 and {MAX_BULK_RESULTS}"
            )));
        }
        if let (Some(s), Some(e)) = (start_step, end_step)
            && s > e
        {
            return Err(StoreError::invalid(format!(
                "end_step ({e}) must be greater than or equal to start_step ({s})"
            )));
        }
        let mut conn = self.db.pool.acquire().await?;
        let mut out = Vec::new();
        for run_id in run_ids {
            load_info(&mut conn, run_id).await?;
            let mut points = fetch_points(
                &mut conn,
                self.db.backend,
                run_id,
                key,
                (start_step.unwrap_or(i64::MIN), end_step.unwrap_or(i64::MAX)),
                (i64::MAX / 2, 0),
            )
            .await?;
            points.sort_by_key(|p| (p.0, p.1));
            let mut steps: Vec<i64> = points.iter().map(|p| p.0).collect();
            steps.dedup();
            let keep = sample_steps(&steps, max as usize);
            out.extend(
                points
                    .into_iter()
                    .filter(|p| keep.contains(&p.0))
                    .map(|p| metric(key, p, Some(run_id))),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_the_ends_and_the_budget() {
        let steps: Vec<i64> = (0..1000).collect();
        let s = sample_steps(&steps, 10);
        assert_eq!(s.len(), 10);
        assert!(s.contains(&0) && s.contains(&999));
        assert_eq!(sample_steps(&steps[..5], 10).len(), 5);
        assert_eq!(sample_steps(&steps, 1).len(), 1);
    }
}
