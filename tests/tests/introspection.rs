//! `query-qmp-schema` and `query-commands` replies are byte-identical to
//! QSD 10.0.2's: against the golden files, and live against the installed
//! qemu-storage-daemon.

use qsd_blackbox_tests::{root, Daemon, Impl};

fn reply(which: Impl, line: &str) -> String {
    let d = Daemon::start(which);
    let mut q = d.qmp();
    q.send_line(line);
    q.read_line()
}

#[test]
fn query_qmp_schema_matches_golden_file() {
    let golden =
        std::fs::read_to_string(root().join("tests/golden/qsd-10.0.2/query-qmp-schema.reply"))
            .unwrap();
    let ours = reply(Impl::Ours, r#"{"execute":"query-qmp-schema","id":1}"#);
    assert!(
        ours == golden,
        "query-qmp-schema reply differs from the golden file"
    );
}

#[test]
fn query_qmp_schema_matches_live_qsd() {
    let line = r#"{"execute":"query-qmp-schema","id":1}"#;
    let theirs = reply(Impl::Qsd, line);
    let ours = reply(Impl::Ours, line);
    assert!(
        ours == theirs,
        "query-qmp-schema reply differs from qemu-storage-daemon's"
    );
}

#[test]
fn query_commands_matches_golden_file() {
    let golden =
        std::fs::read_to_string(root().join("tests/golden/qsd-10.0.2/query-commands.reply"))
            .unwrap();
    let ours = reply(Impl::Ours, r#"{"execute":"query-commands","id":2}"#);
    assert_eq!(ours, golden);
}

#[test]
fn schema_diff_tool_reports_no_difference() {
    let ours = reply(Impl::Ours, r#"{"execute":"query-qmp-schema","id":1}"#);
    let v: serde_json::Value = serde_json::from_str(&ours).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v["return"]).unwrap()).unwrap();
    let tool = root().join("../shared/tools/qmp-schema-diff");
    assert!(tool.exists(), "{} is missing", tool.display());
    let st = std::process::Command::new(tool)
        .arg(root().join("tests/golden/qsd-10.0.2/query-qmp-schema.json"))
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success(), "qmp-schema-diff found differences");
}
