//! Reading the prediction log back (for drift windows and feedback joins).

use futures::TryStreamExt;
use kiln_data::plain::{PlainColumn, PlainTable};
use kiln_store::ArtifactStore;

use super::PredLogError;
use super::layout;

/// Every logged row of `deployment` whose `time` is in `[from_ms, to_ms)` (ms since the
/// epoch), from every file of the hours the range touches, sorted by time, request id and
/// row. Files with different columns (another version's signature, raw rows beside tensors)
/// are stacked with the union of their columns, null where a file lacks one. An empty range
/// or a deployment with no log gives an empty table.
pub async fn read_predictions(
    store: &ArtifactStore,
    deployment: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<PlainTable, PredLogError> {
    if to_ms <= from_ms {
        return Ok(PlainTable::default());
    }
    let first_hour = layout::hour_of_ms(from_ms);
    let last_hour = layout::hour_of_ms(to_ms - 1);
    let (first_day, last_day) = (first_hour.div_euclid(24), last_hour.div_euclid(24));
    let (from_us, to_us) = (from_ms.saturating_mul(1_000), to_ms.saturating_mul(1_000));
    let mut tables = vec![];
    let base = layout::deployment_dir(deployment);
    for date in store.list(&base).await? {
        let Some(day) = last_part(&date.path).and_then(layout::parse_date_dir) else {
            continue;
        };
        if !date.is_dir || day < first_day || day > last_day {
            continue;
        }
        for hour in store.list(&date.path).await? {
            let Some(h) = last_part(&hour.path).and_then(layout::parse_hour_dir) else {
                continue;
            };
            let abs = day * 24 + h;
            if !hour.is_dir || abs < first_hour || abs > last_hour {
                continue;
            }
            for file in store.list(&hour.path).await? {
                if file.is_dir || !file.path.ends_with(".parquet") {
                    continue;
                }
                let (_, stream) = store.get_stream(&file.path).await?;
                let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
                let table = kiln_data::plain::from_parquet_bytes(&chunks.concat())
                    .map_err(|e| PredLogError::Write(format!("{}: {e}", file.path)))?;
                let keep = in_range(&table, from_us, to_us);
                if !keep.is_empty() {
                    tables.push(table.take(&keep));
                }
            }
        }
    }
    let all = PlainTable::concat(tables)?;
    Ok(sorted(all))
}

fn last_part(path: &str) -> Option<&str> {
    path.trim_end_matches('/').rsplit('/').next()
}

/// Rows whose `time` is in `[from_us, to_us)`.
fn in_range(t: &PlainTable, from_us: i64, to_us: i64) -> Vec<usize> {
    match t.column("time") {
        Some(PlainColumn::Timestamp(v)) => v
            .iter()
            .enumerate()
            .filter(|(_, x)| x.is_some_and(|x| x >= from_us && x < to_us))
            .map(|(i, _)| i)
            .collect(),
        _ => vec![],
    }
}

/// Sorted by (time, request_id, row).
fn sorted(t: PlainTable) -> PlainTable {
    let n = t.height();
    let (
        Some(PlainColumn::Timestamp(time)),
        Some(PlainColumn::Str(id)),
        Some(PlainColumn::I64(row)),
    ) = (t.column("time"), t.column("request_id"), t.column("row"))
    else {
        return t;
    };
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| (time[a], &id[a], row[a]).cmp(&(time[b], &id[b], row[b])));
    t.take(&idx)
}
