//! `metrics/get-history-bulk-interval`: one metric's history for many runs, sampled to at
//! most `max_results` steps per run, as MLflow's UI asks for it when plotting.

use std::collections::BTreeSet;

use kiln_core::entities::Metric;
use sqlx::Row;

use crate::Store;
use crate::error::{Result, StoreError};
use crate::runs::{load_info, loaded_value};

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
            let rows = sqlx::query(
                "SELECT value, is_nan, timestamp, step FROM metrics WHERE run_id = $1 AND key = $2 \
                 AND step >= $3 AND step <= $4 ORDER BY step, timestamp, value",
            )
            .bind(run_id.as_str())
            .bind(key)
            .bind(start_step.unwrap_or(i64::MIN))
            .bind(end_step.unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await?;
            let mut steps: Vec<i64> = Vec::with_capacity(rows.len());
            for row in &rows {
                let step: i64 = row.try_get(3)?;
                if steps.last() != Some(&step) {
                    steps.push(step);
                }
            }
            let keep = sample_steps(&steps, max as usize);
            for row in &rows {
                let step: i64 = row.try_get(3)?;
                if keep.contains(&step) {
                    out.push(Metric {
                        key: key.to_string(),
                        value: loaded_value(row.try_get(0)?, row.try_get(1)?),
                        timestamp: row.try_get(2)?,
                        step,
                        model_id: None,
                        dataset_name: None,
                        dataset_digest: None,
                        run_id: Some(run_id.clone()),
                    });
                }
            }
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
