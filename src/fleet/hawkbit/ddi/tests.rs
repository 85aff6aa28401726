use super::*;

const GOOSEBIT_FIRST: &str = r#"{"config":{"polling":{"sleep":"00:00:10"}},"_links":{"configData":{"href":"http://127.0.0.1:1/DEFAULT/controller/v1/d/configData"}}}"#;

#[test]
fn polls_as_goosebit_and_hawkbit_answer_them() {
    let p = parse_poll(GOOSEBIT_FIRST.as_bytes()).unwrap();
    assert_eq!(p.sleep, Duration::from_secs(10));
    assert!(p.config_data.unwrap().ends_with("/configData"));
    assert_eq!((p.deployment, p.cancel), (None, None));
    let p = parse_poll(
        br#"{"config":{"polling":{"sleep":"12:00:00"}},"_links":{"deploymentBase":{"href":"https://h/T/controller/v1/d/deploymentBase/3?c=-2"},"cancelAction":{"href":"https://h/T/controller/v1/d/cancelAction/4"}}}"#,
    )
    .unwrap();
    assert_eq!(p.sleep, Duration::from_secs(12 * 3600));
    assert!(p.deployment.unwrap().ends_with("deploymentBase/3?c=-2"));
    assert!(p.cancel.unwrap().ends_with("cancelAction/4"));
    // No interval, or a silly one: the default; never below a second.
    assert_eq!(parse_poll(b"{}").unwrap().sleep, DEFAULT_SLEEP);
    let p = parse_poll(br#"{"config":{"polling":{"sleep":"00:00:00"}}}"#).unwrap();
    assert_eq!(p.sleep, MIN_SLEEP);
    for bad in [&b"[]"[..], b"nope", b""] {
        assert!(parse_poll(bad).is_err());
    }
}

#[test]
fn sleeps() {
    assert_eq!(parse_sleep("00:05:00"), Some(Duration::from_secs(300)));
    assert_eq!(parse_sleep("1:00:01"), Some(Duration::from_secs(3601)));
    for bad in [
        "",
        "00:60:00",
        "00:00",
        "a:b:c",
        "00:00:00:00",
        "-1:00:00",
        "100:00:00",
    ] {
        assert_eq!(parse_sleep(bad), None, "{bad}");
    }
}

const GOOSEBIT_DEPLOYMENT: &str = r#"{"id": "1",
 "deployment": {"download": "forced", "update": "forced",
   "chunks": [{"part": "os", "version": "1.0.0", "name": "r1.swu",
     "artifacts": [{"filename": "r1.swu",
                    "hashes": {"sha1": "92395DBF50DF0D49B494713C69FAF3DA631F6BB7"},
                    "size": 1024,
                    "_links": {"download": {"href": "http://127.0.0.1:1/DEFAULT/controller/v1/d/download"}}}]}]}}"#;

#[test]
fn a_goosebit_deployment_is_checked_by_its_sha1() {
    let d = parse_deployment(GOOSEBIT_DEPLOYMENT.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(d.id, "1");
    assert_eq!((d.download, d.update), (Handling::Forced, Handling::Forced));
    assert!(d.window_open);
    assert_eq!(d.version, "1.0.0");
    assert_eq!(
        d.artifact.hash,
        Hash::Sha1("92395dbf50df0d49b494713c69faf3da631f6bb7".into())
    );
    assert_eq!(d.artifact.size, 1024);
    assert!(d.artifact.href.ends_with("/download"));
    assert_eq!(parse_deployment(b"null").unwrap(), None);
}

#[test]
fn a_hawkbit_deployment_prefers_sha256_and_the_https_link() {
    let body = r#"{"id":"8","deployment":{"download":"attempt","update":"skip","maintenanceWindow":"unavailable",
      "chunks":[{"part":"bApp","version":"2.0","name":"rel","artifacts":[
        {"filename":"notes.txt","hashes":{"sha1":"0000000000000000000000000000000000000000"},"size":3,
         "_links":{"download":{"href":"https://h/notes"}}},
        {"filename":"rel.swu","hashes":{"sha1":"1111111111111111111111111111111111111111","md5":"x",
          "sha256":"2222222222222222222222222222222222222222222222222222222222222222"},"size":9,
         "_links":{"download-http":{"href":"http://h/rel"},"download":{"href":"https://h/rel"},"md5sum":{"href":"https://h/md5"}}}]}]},
      "actionHistory":{"status":"RUNNING","messages":[]}}"#;
    let d = parse_deployment(body.as_bytes()).unwrap().unwrap();
    assert_eq!((d.download, d.update), (Handling::Attempt, Handling::Skip));
    assert!(!d.window_open);
    assert_eq!(d.artifact.filename, "rel.swu");
    assert_eq!(d.artifact.hash, Hash::Sha256("2".repeat(64)));
    assert_eq!(d.artifact.href, "https://h/rel");
}

#[test]
fn deployments_holdfast_cannot_take_are_refused_with_the_reason() {
    for (body, want) in [
        (
            r#"{"id":"1","deployment":{"download":"forced","update":"forced","chunks":[]}}"#,
            "one .swu artifact per deployment; this one has 0 of 0",
        ),
        (
            r#"{"id":"1","deployment":{"download":"forced","update":"forced","chunks":[{"version":"1","artifacts":[{"filename":"a.swu","hashes":{"md5":"x"},"_links":{"download":{"href":"h"}}}]}]}}"#,
            "no sha256 or sha1 hash",
        ),
        (
            r#"{"id":"1","deployment":{"download":"forced","update":"forced","chunks":[{"version":"1","artifacts":[{"filename":"a.swu","hashes":{"sha1":"1111111111111111111111111111111111111111"},"_links":{}}]}]}}"#,
            "no download link",
        ),
        (
            r#"{"id":"1","deployment":{"download":"sometimes","update":"forced"}}"#,
            "unknown variant",
        ),
    ] {
        let e = parse_deployment(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
}

/// The server's text in an error (an artifact name, a value serde quotes
/// raw) reaches the log and `holdfast status` escaped and cut.
#[test]
fn the_servers_text_in_an_error_is_shown_escaped() {
    let forged = "a\\nERROR holdfastd: FORGED\\u001b[31m";
    let long = "x".repeat(100_000);
    for body in [
        format!(
            r#"{{"id":"1","deployment":{{"download":"forced","update":"forced","chunks":[{{"version":"1","artifacts":[{{"filename":"{forged}.swu","hashes":{{}},"_links":{{}}}}]}}]}}}}"#
        ),
        format!(r#"{{"id":"1","deployment":{{"download":"{forged}","update":"forced"}}}}"#),
        format!(r#"{{"id":"1","deployment":{{"download":"{long}","update":"forced"}}}}"#),
    ] {
        let e = parse_deployment(body.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
        assert!(e.len() < 600, "{} bytes", e.len());
    }
    let e = parse_deployment(
        format!(r#"{{"id":"1","deployment":{{"download":"{forged}","update":"forced"}}}}"#)
            .as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a\\nERROR holdfastd: FORGED\\u{1b}[31m"), "{e}");
}

#[test]
fn cancel_and_feedback_bodies() {
    assert_eq!(
        parse_cancel(br#"{"id":"11","cancelAction":{"stopId":"10"}}"#).unwrap(),
        ("11".into(), "10".into())
    );
    assert!(parse_cancel(b"{}").is_err());
    let f: Value = serde_json::from_slice(&feedback(
        Execution::Proceeding,
        Finished::None,
        Some((40, 100)),
        &["downloading 40%".into()],
    ))
    .unwrap();
    assert_eq!(
        f,
        json!({"status": {"execution": "proceeding", "result": {"finished": "none",
            "progress": {"cnt": 40, "of": 100}}, "details": ["downloading 40%"]}})
    );
    let f: Value = serde_json::from_slice(&feedback(
        Execution::Closed,
        Finished::Failure,
        None,
        &["rolled back".into()],
    ))
    .unwrap();
    assert_eq!(f["status"]["result"], json!({"finished": "failure"}));
    let c: Value = serde_json::from_slice(&config_data(&[("hw_boardname", "rpi4")])).unwrap();
    assert_eq!(
        c,
        json!({"mode": "merge", "data": {"hw_boardname": "rpi4"}})
    );
}

#[test]
fn polls_spread_and_back_off_within_bounds() {
    let s = Duration::from_secs(100);
    assert_eq!(next_poll(s, 0), Duration::from_secs(90));
    assert_eq!(next_poll(s, 500), s);
    assert!(next_poll(s, 999) < Duration::from_secs(110));
    assert_eq!(backoff(0, s), Duration::from_secs(5));
    assert_eq!(backoff(3, s), Duration::from_secs(40));
    assert_eq!(backoff(30, s), Duration::from_secs(600));
    assert_eq!(
        backoff(30, Duration::from_secs(3600)),
        Duration::from_secs(3600)
    );
}
