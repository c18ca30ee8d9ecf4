//! Unit tests of the keyval parser: one test per rule of the module docs.

use super::*;
use serde_json::json;

fn ok(params: &str, implied: Option<&str>) -> Value {
    match parse(params, implied) {
        Ok(p) => Value::Object(p.value),
        Err(e) => panic!("{params:?}: unexpected error {e}"),
    }
}

fn err(params: &str, implied: Option<&str>) -> String {
    match parse_rejecting_help(params, implied) {
        Ok(v) => panic!("{params:?}: unexpected success {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn empty_input_is_an_empty_object() {
    assert_eq!(ok("", None), json!({}));
    assert_eq!(ok("", Some("driver")), json!({}));
}

#[test]
fn pairs_and_nesting() {
    assert_eq!(
        ok("a=1,b.c=2,b.d.e=3", None),
        json!({"a": "1", "b": {"c": "2", "d": {"e": "3"}}})
    );
    assert_eq!(ok("a=", None), json!({"a": ""}));
    assert_eq!(ok("a=b=c", None), json!({"a": "b=c"}));
    assert_eq!(ok("a-b_c=1,A=2", None), json!({"a-b_c": "1", "A": "2"}));
}

#[test]
fn comma_escapes_and_trailing_commas() {
    assert_eq!(ok("a=x,,y", None), json!({"a": "x,y"}));
    assert_eq!(ok("a=x,", None), json!({"a": "x"}));
    assert_eq!(ok("a=x,,", None), json!({"a": "x,"}));
    assert_eq!(ok("a=x,,,", None), json!({"a": "x,"}));
    assert_eq!(ok("a=x,,,b=1", None), json!({"a": "x,", "b": "1"}));
    assert_eq!(ok("a=,,,,", None), json!({"a": ",,"}));
    assert_eq!(ok("driver=x,,y=1", None), json!({"driver": "x,y=1"}));
}

#[test]
fn non_ascii_values_survive() {
    assert_eq!(ok("a=é,,ü", None), json!({"a": "é,ü"}));
}

#[test]
fn implied_key() {
    assert_eq!(
        ok("file,filename=x", Some("driver")),
        json!({"driver": "file", "filename": "x"})
    );
    assert_eq!(ok("a.b", Some("driver")), json!({"driver": "a.b"}));
    assert_eq!(ok("file,", Some("driver")), json!({"driver": "file"}));
    // Not implied when the first pair has '=' or is empty.
    assert_eq!(ok("file=x", Some("driver")), json!({"file": "x"}));
    assert_eq!(err(",driver=x", Some("driver")), "Invalid parameter ''");
    // No ',,' escape in an implied value.
    assert_eq!(err("file,,b", Some("driver")), "Invalid parameter ''");
    // Only the first pair.
    assert_eq!(
        err("file,b", Some("driver")),
        "Expected '=' after parameter 'b'"
    );
    assert_eq!(err("x", None), "Expected '=' after parameter 'x'");
}

#[test]
fn implied_key_can_be_overridden_later() {
    let v = ok("iothread,qom-type=x,id=a", Some("qom-type"));
    assert_eq!(v, json!({"qom-type": "x", "id": "a"}));
    assert_eq!(keys(&v), ["qom-type", "id"]);
}

#[test]
fn duplicates_last_wins_first_position() {
    let v = ok("x=1,y=2,x=3", None);
    assert_eq!(v, json!({"x": "3", "y": "2"}));
    assert_eq!(keys(&v), ["x", "y"]);
}

#[test]
fn insertion_order_is_kept() {
    let v = ok("zz=1,a=2,m.b=3,m.a=4", None);
    assert_eq!(keys(&v), ["zz", "a", "m"]);
    assert_eq!(keys(&v["m"]), ["b", "a"]);
}

#[test]
fn invalid_keys() {
    for (params, key) in [
        (",", ""),
        ("=x", ""),
        ("a..b=1", "a..b"),
        (".a=1", ".a"),
        ("a.=1", "a."),
        ("1=x", "1"),
        ("a b=1", "a b"),
        ("_a=1", "_a"),
        ("é=1", "é"),
        ("?=1", "?"),
        ("a.1x=1", "a.1x"),
        ("a.-1=1", "a.-1"),
        ("a.+1=1", "a.+1"),
    ] {
        assert_eq!(
            err(params, None),
            format!("Invalid parameter '{key}'"),
            "{params}"
        );
    }
}

#[test]
fn downstream_names_may_contain_dots() {
    assert_eq!(ok("__a.b_c=1", None), json!({"__a.b_c": "1"}));
    assert_eq!(ok("x.__a.b_c=1", None), json!({"x": {"__a.b_c": "1"}}));
    assert_eq!(ok("___x=1", None), json!({"___x": "1"}));
    assert_eq!(err("__ab=1", None), "Invalid parameter '__ab'");
    assert_eq!(err("__a_1=1", None), "Invalid parameter '__a_1'");
}

#[test]
fn key_length_limits() {
    let l127 = "a".repeat(127);
    let l128 = "a".repeat(128);
    assert_eq!(ok(&format!("{l127}=1"), None)[&l127], json!("1"));
    assert_eq!(
        err(&format!("{l128}=1"), None),
        format!("Parameter '{l128}' is too long")
    );
    assert_eq!(
        err(&format!("x.{l128}=1"), None),
        format!("Parameter fragment '{l128}' is too long")
    );
    assert_eq!(
        err(&format!("{l128}.x=1"), None),
        format!("Parameter fragment '{l128}' is too long")
    );
    // An implied value is not a key.
    assert_eq!(ok(&l128, Some("driver"))["driver"], json!(l128));
    // A bad fragment is reported before a long one.
    assert_eq!(
        err(&format!("__{l128}=1"), None),
        format!("Invalid parameter '__{l128}'")
    );
    let long_index = format!("x.1{l128}");
    assert_eq!(
        err(&format!("{long_index}=1"), None),
        format!("Invalid parameter '{long_index}'")
    );
    let digits = "1".repeat(128);
    assert_eq!(
        err(&format!("x.{digits}=1"), None),
        format!("Parameter fragment '{digits}' is too long")
    );
}

#[test]
fn expected_equals() {
    assert_eq!(
        err("driver=file,b", Some("driver")),
        "Expected '=' after parameter 'b'"
    );
    assert_eq!(
        err("addr.type=unix,addr.path", None),
        "Expected '=' after parameter 'addr.path'"
    );
    assert_eq!(err("a.b", None), "Expected '=' after parameter 'a.b'");
}

#[test]
fn scalar_object_conflicts() {
    for (params, prefix) in [
        ("a.b=1,a=2", "a."),
        ("a=1,a.b=2", "a."),
        ("a.b.c=1,a.b=2", "a.b."),
        ("a.b=1,a.b.c=2", "a.b."),
        ("a.0.x=1,a.0=2", "a.0."),
        ("a=1,a.b.c=2", "a."),
        ("a.b=1,a.b.c.d=2", "a.b."),
    ] {
        assert_eq!(
            err(params, None),
            format!("Parameters '{prefix}*' used inconsistently"),
            "{params}"
        );
    }
}

#[test]
fn conflict_checked_before_later_fragment_syntax() {
    // The fragment "b" is valid, so "a" is put first and conflicts; the
    // trailing '.' is never looked at.
    assert_eq!(
        err("a=1,a.b.=2", None),
        "Parameters 'a.*' used inconsistently"
    );
    // Here the bad fragment comes first.
    assert_eq!(err("a=1,a..b=2", None), "Invalid parameter 'a..b'");
}

#[test]
fn lists() {
    assert_eq!(ok("a.0=x,a.1=y", None), json!({"a": ["x", "y"]}));
    assert_eq!(ok("a.1=y,a.0=x", None), json!({"a": ["x", "y"]}));
    assert_eq!(
        ok("a.0.b=1,a.1.b=2", None),
        json!({"a": [{"b": "1"}, {"b": "2"}]})
    );
    assert_eq!(ok("a.0.0=1,a.0.1=2", None), json!({"a": [["1", "2"]]}));
    assert_eq!(ok("a.00=1", None), json!({"a": ["1"]}));
    assert_eq!(
        ok("a.b.c.1=x,a.b.c.0=y,a.b.d=z", None),
        json!({"a": {"b": {"c": ["y", "x"], "d": "z"}}})
    );
}

#[test]
fn colliding_indexes_take_the_later_in_qdict_order() {
    // "0" is in bucket 110, "00" in bucket 147: "00" is visited last.
    assert_eq!(ok("a.0=1,a.00=2", None), json!({"a": ["2"]}));
    assert_eq!(ok("a.00=2,a.0=1", None), json!({"a": ["2"]}));
}

#[test]
fn list_errors() {
    assert_eq!(err("a.1=x", None), "Parameter 'a.0' missing");
    assert_eq!(err("a.01=x", None), "Parameter 'a.0' missing");
    assert_eq!(err("a.0=1,a.2=3", None), "Parameter 'a.1' missing");
    assert_eq!(err("a.2147483647=1", None), "Parameter 'a.0' missing");
    assert_eq!(err("a.99999999999=1", None), "Parameter 'a.0' missing");
    assert_eq!(err("x.y.1=1", None), "Parameter 'x.y.0' missing");
    assert_eq!(
        err("a.0=x,a.b=y", None),
        "Parameters 'a.*' used inconsistently"
    );
    assert_eq!(
        err("a.b.0=x,a.b.1.c=y,a.b.1=z", None),
        "Parameters 'a.b.1.*' used inconsistently"
    );
}

#[test]
fn first_list_error_in_qdict_order() {
    // Root order: "x" (bucket 134) before "a" (233); "bar" (254) before "foo" (490).
    let m = "Parameters 'x.y.*' used inconsistently";
    assert_eq!(err("a.x.0=1,a.x.b=2,x.y.0=1,x.y.c=2", None), m);
    assert_eq!(err("x.y.0=1,x.y.c=2,a.x.0=1,a.x.b=2", None), m);
    let m = "Parameters 'bar.*' used inconsistently";
    assert_eq!(err("foo.0=1,foo.q=2,bar.0=1,bar.q=2", None), m);
    assert_eq!(err("foo.1=1,bar.0=1,bar.q=2", None), m);
    assert_eq!(
        err("c.1=1,b.0=1,b.q=2", None),
        "Parameters 'b.*' used inconsistently"
    );
    // Children are checked before their parent.
    assert_eq!(err("a.0.1=x,a.b=1", None), "Parameter 'a.0.0' missing");
}

#[test]
fn help_detection() {
    for params in ["help", "?", "help,a=1", "a=1,help", "a=1,?", "help,help"] {
        let p = parse(params, None).unwrap_or_else(|e| panic!("{params}: {e}"));
        assert!(p.help, "{params}");
    }
    let p = parse("iothread,help", Some("qom-type")).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.help);
    assert_eq!(Value::Object(p.value), json!({"qom-type": "iothread"}));
    // Not help: with '=', or longer words, or implied.
    assert_eq!(ok("help=1", None), json!({"help": "1"}));
    assert!(!parse("helpx", Some("driver")).is_ok_and(|p| p.help));
    assert_eq!(ok("helpx", Some("driver")), json!({"driver": "helpx"}));
    assert_eq!(err("?x", None), "Invalid parameter '?x'");
    // Help does not take the implied key's place.
    assert_eq!(
        err("help,file", Some("driver")),
        "Expected '=' after parameter 'file'"
    );
}

#[test]
fn help_not_available_ordering() {
    let m = "Help is not available for this option";
    for params in [
        "help",
        "?",
        "file,help",
        "help,driver=file",
        "help,a.1=x",
        "a.1=x,help",
    ] {
        assert_eq!(err(params, Some("driver")), m, "{params}");
    }
    // Syntax errors come first, even after the help pair.
    assert_eq!(err("help,a..b=1", None), "Invalid parameter 'a..b'");
    assert_eq!(err("a.1=x,b", None), "Expected '=' after parameter 'b'");
    // With help allowed, list errors are still reported.
    assert_eq!(
        parse("help,a.1=x", None).map_err(|e| e.to_string()),
        Err("Parameter 'a.0' missing".to_string())
    );
}

#[test]
fn qsd_options() {
    assert_eq!(QsdOption::Blockdev.implied_key(), Some("driver"));
    assert_eq!(QsdOption::Export.implied_key(), Some("type"));
    assert_eq!(QsdOption::Monitor.implied_key(), Some("chardev"));
    assert_eq!(QsdOption::NbdServer.implied_key(), None);
    assert_eq!(QsdOption::Object.implied_key(), Some("qom-type"));
    assert!(QsdOption::Object.parse("help").is_ok_and(|p| p.help));
    assert_eq!(
        QsdOption::Export.parse("help"),
        Err(KeyvalError::HelpNotAvailable)
    );
    assert_eq!(
        QsdOption::NbdServer.parse("x,help"),
        Err(KeyvalError::ExpectedEquals("x".into()))
    );
    let p = QsdOption::Blockdev.parse("null-co,node-name=a");
    assert_eq!(
        p.map(|p| Value::Object(p.value)),
        Ok(json!({"driver": "null-co", "node-name": "a"}))
    );
}
