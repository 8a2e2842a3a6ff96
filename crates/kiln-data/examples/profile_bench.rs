// TEMPORARY: timing of profile() on a synthetic 3M-row frame; removed before hand-off.
use polars::prelude::*;
use std::time::Instant;

fn main() {
    let n = 3_000_000usize;
    let mut s = 0x1234_5678u64;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let airports: Vec<String> = (0..100).map(|i| format!("A{i:02}")).collect();
    let mut day = Vec::with_capacity(n);
    let mut delay = Vec::with_capacity(n);
    let mut dist = Vec::with_capacity(n);
    let mut origin = Vec::with_capacity(n);
    let mut dest = Vec::with_capacity(n);
    for _ in 0..n {
        let r = next();
        day.push(15706 + (r % 365) as i32);
        delay.push(if r % 97 == 0 {
            None
        } else {
            Some(((r >> 20) % 20000) as f64 / 10.0 - 50.0)
        });
        dist.push(100 + ((r >> 8) % 4900) as i64);
        origin.push(airports[((r >> 40) % 100) as usize].as_str());
        dest.push(airports[((r >> 48) % 100) as usize].as_str());
    }
    let df =
        df!("day" => day, "delay" => delay, "distance" => dist, "origin" => origin, "dest" => dest)
            .unwrap()
            .lazy()
            .with_column(col("day").cast(DataType::Date))
            .collect()
            .unwrap();
    let sorted = SortOptions::default().with_multithreaded(true);
    let tries: Vec<(&str, Vec<Expr>)> = vec![
        (
            "sort day",
            vec![
                col("day")
                    .cast(DataType::Int32)
                    .drop_nulls()
                    .sort(sorted)
                    .implode(true),
            ],
        ),
        (
            "sort delay",
            vec![
                col("delay")
                    .drop_nans()
                    .drop_nulls()
                    .sort(sorted)
                    .implode(true),
            ],
        ),
        (
            "sort dist",
            vec![col("distance").drop_nulls().sort(sorted).implode(true)],
        ),
        (
            "vc origin",
            vec![
                col("origin")
                    .alias("v")
                    .drop_nulls()
                    .value_counts(false, true, "n", false)
                    .implode(true),
            ],
        ),
        (
            "vc dist",
            vec![
                col("distance")
                    .alias("v")
                    .drop_nulls()
                    .value_counts(false, true, "n", false)
                    .implode(true),
            ],
        ),
        (
            "vc delay",
            vec![
                col("delay")
                    .alias("v")
                    .drop_nulls()
                    .value_counts(false, true, "n", false)
                    .implode(true),
            ],
        ),
        (
            "moments",
            vec![
                col("delay").drop_nans().mean(),
                col("delay").drop_nans().std(1),
                col("distance").cast(DataType::Float64).mean(),
                col("distance").cast(DataType::Float64).std(1),
            ],
        ),
        (
            "nulls",
            vec![
                col("delay").null_count(),
                col("origin").null_count(),
                col("delay").is_nan().sum(),
            ],
        ),
    ];
    for (name, e) in tries {
        let t = Instant::now();
        let _ = df.clone().lazy().select(e).collect().unwrap();
        println!("{name}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
    let t = Instant::now();
    let mut v: Vec<i64> = df
        .column("distance")
        .unwrap()
        .i64()
        .unwrap()
        .cont_slice()
        .unwrap()
        .to_vec();
    v.sort_unstable();
    println!("rust sort dist: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    for _ in 0..2 {
        let t = Instant::now();
        let p = kiln_data::profile::profile(&df).unwrap();
        let el = t.elapsed();
        let json = serde_json::to_string(&p).unwrap();
        println!(
            "profile: {:.1} ms, json {} bytes",
            el.as_secs_f64() * 1e3,
            json.len()
        );
    }
    let p = kiln_data::profile::profile(&df).unwrap();
    let t = Instant::now();
    let _ = kiln_data::profile::profile_against(&df, &p).unwrap();
    println!("profile_against: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
}
