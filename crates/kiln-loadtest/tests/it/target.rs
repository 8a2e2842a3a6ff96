//! Preparing a target: metadata, a given body, and refusals that stop the run early.

use std::time::Duration;

use kiln_loadtest::{LoadtestError, Mode, Options, Protocol, Target};

use crate::open_loop::{open_loop, spec};
use crate::server::{Behavior, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_body_is_sent_as_is_and_its_rows_read() {
    let server = start(Behavior::default()).await;
    let http = kiln_loadtest::client(Duration::from_secs(5), 4).unwrap();
    let mut s = spec(&server.url);
    s.body = Some(
        br#"{"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4], "data": [1,2,3,4,5,6,7,8]}]}"#
            .to_vec(),
    );
    let t = Target::prepare(&http, &s).await.unwrap();
    assert_eq!((t.rows, t.body_kind), (2, "file"));
    t.probe(&http).await.unwrap();
    assert_eq!(t.send(&http, 7).await, kiln_loadtest::Outcome::Ok);
    // --rows overrides what the body says.
    s.rows = Some(5);
    assert_eq!(Target::prepare(&http, &s).await.unwrap().rows, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_stop_the_run_with_the_servers_message() {
    let server = start(Behavior::default()).await;
    let run = |target| async {
        kiln_loadtest::run(&Options {
            target,
            mode: Mode::OpenLoop(open_loop(10.0, 100)),
            timeout: Duration::from_secs(5),
            slo: None,
        })
        .await
    };
    // An unknown model: the metadata answers 404.
    let mut s = spec(&server.url);
    s.model = Some("nope".into());
    let e = run(s).await.unwrap_err();
    assert!(
        matches!(e, LoadtestError::Refused { status: 404, .. }),
        "{e}"
    );
    // A body the server refuses: the probe's 400 and the server's reason.
    let mut s = spec(&server.url);
    s.body = Some(br#"{"inputs": [{"name": "Z", "shape": [1, 4]}]}"#.to_vec());
    let e = run(s).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("wrong input"), "{e}");
    // Nothing listening.
    let e = run(spec("http://127.0.0.1:9")).await.unwrap_err();
    assert!(matches!(e, LoadtestError::Http { .. }), "{e}");
    // OIP without a model, and --binary with /invocations.
    let mut s = spec(&server.url);
    s.model = None;
    assert!(run(s).await.unwrap_err().to_string().contains("--model"));
    let mut s = spec(&server.url);
    s.protocol = Protocol::Invocations;
    s.binary = true;
    assert!(run(s).await.unwrap_err().to_string().contains("--binary"));
}
