//! The generated input visitors give QEMU's messages (texts captured from
//! qemu-storage-daemon 10.0.2), and serialization round-trips.

use qapi::types::*;
use qapi::visit::{from_value, Mode};
use serde_json::{json, Value};

fn err<T: qapi::visit::Visit + std::fmt::Debug>(v: Value) -> String {
    from_value::<T>(&v, Mode::Json).unwrap_err().0
}

#[test]
fn nested_member_errors_name_the_full_path() {
    assert_eq!(
        err::<BlockdevOptions>(
            json!({"driver": "qcow2", "node-name": "x", "file": {"driver": "file", "filename": 1}})
        ),
        "Invalid parameter type for 'file.filename', expected: string"
    );
    assert_eq!(
        err::<BlockdevOptions>(
            json!({"driver": "qcow2", "node-name": "x", "file": {"driver": "file"}})
        ),
        "Parameter 'file.filename' is missing"
    );
    assert_eq!(
        err::<BlockdevOptions>(
            json!({"driver": "qcow2", "node-name": "x", "file": {"driver": "file", "filename": "a", "zz": 1}})
        ),
        "Parameter 'file.zz' is unexpected"
    );
}

#[test]
fn enum_errors_name_the_member_only() {
    assert_eq!(
        err::<BlockdevOptions>(
            json!({"driver": "qcow2", "node-name": "x", "file": {"driver": "file", "filename": "a", "aio": "nope"}})
        ),
        "Parameter 'aio' does not accept value 'nope'"
    );
    assert_eq!(
        err::<BlockdevOptions>(json!({"driver": "nope"})),
        "Parameter 'driver' does not accept value 'nope'"
    );
    assert_eq!(
        err::<BlockdevOptions>(json!({"driver": 7})),
        "Invalid parameter type for 'driver', expected: string"
    );
}

#[test]
fn alternates_report_their_name() {
    assert_eq!(
        err::<BlockdevOptions>(json!({"driver": "qcow2", "node-name": "x", "file": 1})),
        "Invalid parameter type for 'file', expected: BlockdevRef"
    );
    assert_eq!(
        err::<BlockdevOptions>(
            json!({"driver": "qcow2", "node-name": "x", "file": "f", "backing": 1})
        ),
        "Invalid parameter type for 'backing', expected: BlockdevRefOrNull"
    );
}

#[test]
fn list_elements() {
    assert_eq!(
        err::<BlockdevReopenArgs>(
            json!({"options": [{"driver": "file", "filename": "a", "aio-max-batch": "x"}]})
        ),
        "Invalid parameter type for 'options[0].aio-max-batch', expected: integer"
    );
    assert_eq!(
        err::<BlockdevReopenArgs>(
            json!({"options": [{"driver": "file", "filename": "a", "cache": {"direct": 1}}]})
        ),
        "Invalid parameter type for 'options[0].cache.direct', expected: boolean"
    );
    assert_eq!(
        err::<BlockdevReopenArgs>(json!({"options": 1})),
        "Invalid parameter type for 'options', expected: array"
    );
    assert_eq!(
        err::<BlockdevReopenArgs>(json!({"options": [1]})),
        "Invalid parameter type for 'options[0]', expected: object"
    );
    assert_eq!(
        err::<QmpCapabilitiesArgs>(json!({"enable": ["nope"]})),
        "Parameter 'null' does not accept value 'nope'"
    );
}

#[test]
fn integer_ranges() {
    let addr =
        |to: Value| json!({"addr": {"type": "inet", "data": {"host": "a", "port": "1", "to": to}}});
    assert_eq!(
        err::<NbdServerOptionsLegacy>(addr(json!(70000))),
        "Parameter 'to' expects uint16_t"
    );
    assert_eq!(
        err::<NbdServerOptionsLegacy>(addr(json!(-1))),
        "Parameter 'to' expects uint16_t"
    );
    assert_eq!(
        err::<NbdServerOptionsLegacy>(addr(json!(1.5))),
        "Parameter 'addr.data.to' expects uint64"
    );
    assert_eq!(
        err::<BlockJobSetSpeedArgs>(json!({"device": "a", "speed": 9223372036854775808u64})),
        "Invalid parameter type for 'speed', expected: integer"
    );
    assert_eq!(
        err::<BlockdevCreateArgs>(
            json!({"job-id": "j", "options": {"driver": "file", "filename": "x", "size": 1.5}})
        ),
        "Parameter 'options.size' expects uint64"
    );
    assert_eq!(
        err::<BlockdevCreateArgs>(
            json!({"job-id": "j", "options": {"filename": "a", "zzz": 1, "aaa": 2, "driver": "file", "size": 5}})
        ),
        "Parameter 'options.aaa' is unexpected"
    );
    assert_eq!(
        err::<BlockdevCreateArgs>(json!({"options": {}})),
        "Parameter 'job-id' is missing"
    );
}

#[test]
fn unions_round_trip_in_member_order() {
    let input = json!({"driver": "qcow2", "node-name": "disk", "read-only": true,
        "file": {"driver": "file", "filename": "disk.qcow2", "aio": "io_uring"},
        "backing": null, "cache-size": 1048576});
    let opts: BlockdevOptions = from_value(&input, Mode::Json).expect("valid");
    assert_eq!(opts.driver(), BlockdevDriver::Qcow2);
    let BlockdevOptionsBranch::Qcow2(q) = &opts.u else {
        panic!("wrong branch")
    };
    assert!(matches!(
        q.backing.as_deref(),
        Some(BlockdevRefOrNull::Null(_))
    ));
    let out = serde_json::to_value(&opts).unwrap();
    // Base members first (discriminator in its schema position), then the
    // branch's members in schema order.
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "driver",
            "node-name",
            "read-only",
            "file",
            "backing",
            "cache-size"
        ]
    );
    let back: BlockdevOptions = serde_json::from_value(out).unwrap();
    assert_eq!(back, opts);
}

#[test]
fn serde_deserialize_uses_qapi_rules() {
    let e = serde_json::from_value::<BlockdevOptions>(json!({"driver": "file"})).unwrap_err();
    assert_eq!(e.to_string(), "Parameter 'filename' is missing");
}

#[test]
fn command_and_event_tables() {
    assert_eq!(qapi::commands::COMMANDS.len(), 76);
    assert_eq!(qapi::events::EVENTS.len(), 13);
    let c = qapi::commands::command_flags("block_resize").unwrap();
    assert!(c.coroutine && c.allow_preconfig && !c.allow_oob);
    let ev = qapi::events::Event::JobStatusChange(JobStatusChangeData {
        id: "j".into(),
        status: JobStatus::Created,
    });
    assert_eq!(ev.name(), "JOB_STATUS_CHANGE");
    assert_eq!(ev.data(), Some(json!({"id": "j", "status": "created"})));
}

#[test]
fn json_schema_of_types() {
    let s = schemars::schema_for!(BlockdevOptions);
    let v = serde_json::to_value(&s).unwrap();
    assert!(v["oneOf"].as_array().is_some_and(|a| a.len() > 30), "{v}");
}

#[test]
fn alternates_name_the_member_not_the_path() {
    assert_eq!(
        err::<BlockdevOptions>(
            json!({"driver": "qcow2", "node-name": "x", "file": {"driver": "qcow2", "file": 1}})
        ),
        "Invalid parameter type for 'file', expected: BlockdevRef"
    );
}

fn kv_err<T: qapi::visit::Visit + std::fmt::Debug>(s: &str, implied: Option<&str>) -> String {
    let tree = qapi::keyval::parse(s, implied)
        .expect("keyval syntax")
        .value;
    from_value::<T>(&Value::Object(tree), Mode::Keyval)
        .unwrap_err()
        .0
}

#[test]
fn keyval_input_uses_qemus_texts() {
    // Captured from qemu-storage-daemon 10.0.2 command lines.
    assert_eq!(
        kv_err::<BlockdevOptions>(
            "driver=qcow2,node-name=x,file.driver=qcow2,file.file.0=a",
            Some("driver")
        ),
        "Invalid parameter type for 'file', expected: BlockdevRef"
    );
    assert_eq!(
        kv_err::<BlockdevOptions>(
            "driver=qcow2,node-name=x,file.driver=file,file.filename.x=a",
            Some("driver")
        ),
        "Parameters 'file.filename.*' are unexpected"
    );
    assert_eq!(
        kv_err::<BlockdevOptions>(
            "driver=qcow2,node-name=x,file.driver=file,file.filename=a,file.aio.x=1",
            Some("driver")
        ),
        "Parameters 'file.aio.*' are unexpected"
    );
    assert_eq!(
        kv_err::<NbdServerOptions>(
            "addr.type=inet,addr.host=a,addr.port=1,addr.numeric=x",
            None
        ),
        "Parameter 'addr.numeric' expects 'on' or 'off'"
    );
    assert_eq!(
        kv_err::<BlockdevOptions>("driver=nope", Some("driver")),
        "Parameter 'driver' does not accept value 'nope'"
    );
    let ok: BlockdevOptions = from_value(
        &Value::Object(
            qapi::keyval::parse(
                "driver=file,node-name=d,filename=x,read-only=on,aio-max-batch=0x10",
                Some("driver"),
            )
            .unwrap()
            .value,
        ),
        Mode::Keyval,
    )
    .unwrap();
    let BlockdevOptionsBranch::File(f) = &ok.u else {
        panic!()
    };
    assert_eq!((ok.read_only, f.aio_max_batch), (Some(true), Some(16)));
}
