//! Unit tests of the QemuOpts parser.

use super::*;

fn chardev(params: &str) -> Result<QemuOpts, QemuOptsError> {
    parse(params, Some(CHARDEV_IMPLIED_KEY), CHARDEV_OPTS)
}

fn ok(params: &str) -> QemuOpts {
    chardev(params).unwrap_or_else(|e| panic!("{params:?}: unexpected error {e}"))
}

fn err(params: &str) -> QemuOptsError {
    match chardev(params) {
        Ok(o) => panic!("{params:?}: unexpected success {o:?}"),
        Err(e) => e,
    }
}

fn msg(params: &str) -> String {
    err(params).to_string()
}

fn names(o: &QemuOpts) -> Vec<(&str, &str)> {
    o.opts
        .iter()
        .map(|o| (o.name.as_str(), o.text.as_str()))
        .collect()
}

#[test]
fn basic_and_order() {
    let o = ok("socket,id=x,path=/tmp/s,server=on,wait=off");
    assert_eq!(o.id.as_deref(), Some("x"));
    assert_eq!(
        names(&o),
        [
            ("backend", "socket"),
            ("path", "/tmp/s"),
            ("server", "on"),
            ("wait", "off")
        ]
    );
    assert_eq!(o.get_bool("server"), Some(true));
    assert_eq!(o.get_bool("wait"), Some(false));
    assert!(o.warnings.is_empty());
}

#[test]
fn implied_value_takes_escapes() {
    let o = ok("null,,x,id=a");
    assert_eq!(o.get("backend"), Some("null,x"));
    assert_eq!(ok(",id=a").get("backend"), Some(""));
    assert_eq!(ok("id").get("backend"), Some("id"));
    assert_eq!(ok("").get("backend"), None);
}

#[test]
fn values() {
    let o = ok("file,id=a,path=a=b,,c");
    assert_eq!(o.get("path"), Some("a=b,c"));
    let o = ok("null,id=a,");
    assert_eq!(names(&o), [("backend", "null")]);
    let o = ok("null,id=a,backend=file,backend=pipe");
    assert_eq!(o.get("backend"), Some("pipe"));
    assert_eq!(o.opts.len(), 3);
}

#[test]
fn ids() {
    assert_eq!(ok("null,id=a.b_c-d").id.as_deref(), Some("a.b_c-d"));
    assert_eq!(ok("null,id=a,id=b").id.as_deref(), Some("a"));
    assert_eq!(ok("null,id").id.as_deref(), Some("on"));
    assert_eq!(ok("null,noid").id.as_deref(), Some("off"));
    assert_eq!(ok("null,id,id=a").id.as_deref(), Some("on"));
    assert_eq!(ok("id").id.as_deref(), Some("on"));
    assert_eq!(ok("socket").id, None);
    for bad in [
        "socket,id=1x",
        "socket,id=",
        "socket,id=x,,y",
        "null,id=a,,",
        "null,id=_a",
        "null,id=a/b",
        "null,x=1,id=1",
        "null,id=1,help",
    ] {
        let e = err(bad);
        assert_eq!(
            e.to_string(),
            "Parameter 'id' expects an identifier",
            "{bad}"
        );
        assert_eq!(
            e.kind.hint(),
            Some(
                "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
            )
        );
    }
}

#[test]
fn invalid_parameters() {
    assert_eq!(msg("socket,id=x,serve=on"), "Invalid parameter 'serve'");
    assert_eq!(msg("null,=x,id=a"), "Invalid parameter ''");
    assert_eq!(msg("a=b=c,id=a"), "Invalid parameter 'a'");
    assert_eq!(msg("null,id=a,x=1,help"), "Invalid parameter 'x'");
}

#[test]
fn booleans() {
    for t in ["on", "yes", "true", "y"] {
        assert_eq!(
            ok(&format!("null,id=a,mux={t}")).get_bool("mux"),
            Some(true)
        );
    }
    for f in ["off", "no", "false", "n"] {
        assert_eq!(
            ok(&format!("null,id=a,mux={f}")).get_bool("mux"),
            Some(false)
        );
    }
    for bad in ["maybe", "Y", "ON", "1", ""] {
        assert_eq!(
            msg(&format!("null,id=a,mux={bad}")),
            "Parameter 'mux' expects 'on' or 'off'"
        );
    }
}

#[test]
fn short_form_booleans_warn() {
    let o = ok("null,id=a,mux");
    assert_eq!(o.get_bool("mux"), Some(true));
    assert_eq!(o.warnings.len(), 1);
    assert_eq!(
        o.warnings[0].message(),
        "short-form boolean option 'mux' deprecated"
    );
    assert_eq!(o.warnings[0].hint(), "Please use mux=on instead\n");
    let o = ok("null,id=a,nomux");
    assert_eq!(o.get_bool("mux"), Some(false));
    assert_eq!(
        o.warnings[0].message(),
        "short-form boolean option 'nomux' deprecated"
    );
    assert_eq!(o.warnings[0].hint(), "Please use mux=off instead\n");
    let o = ok("socket,id=a,nodelay,delay");
    assert_eq!(o.warnings[0].hint(), "Please use nodelay=on instead\n");
    assert_eq!(o.warnings[1].hint(), "Please use nodelay=off instead\n");
    // id as a flag warns too.
    assert_eq!(ok("null,id").warnings[0].written, "id");
}

#[test]
fn warnings_before_an_error_are_kept() {
    let e = err("null,id=a,fo,,o");
    assert_eq!(e.to_string(), "Invalid parameter 'fo'");
    assert_eq!(e.warnings.len(), 1);
    assert_eq!(e.warnings[0].hint(), "Please use fo=on instead\n");
    let e = err("null,id=a,no");
    assert_eq!(e.to_string(), "Invalid parameter ''");
    assert_eq!(
        e.warnings[0].message(),
        "short-form boolean option 'no' deprecated"
    );
    assert_eq!(e.warnings[0].hint(), "Please use =off instead\n");
    let e = err("null,id=a,nohelp");
    assert_eq!(e.to_string(), "Invalid parameter 'help'");
    assert_eq!(e.warnings[0].hint(), "Please use help=off instead\n");
    let e = err("null,id=a,size");
    assert_eq!(
        e.to_string(),
        "Parameter 'size' expects a non-negative number below 2^64"
    );
    assert_eq!(e.warnings.len(), 1);
}

#[test]
fn numbers() {
    assert_eq!(
        ok("null,id=a,reconnect-ms=0x10").get_number("reconnect-ms"),
        Some(16)
    );
    assert_eq!(
        ok("null,id=a,reconnect-ms=-1").get_number("reconnect-ms"),
        Some(u64::MAX)
    );
    assert_eq!(
        ok("null,id=a,reconnect-ms= 0x5").get_number("reconnect-ms"),
        Some(5)
    );
    for bad in ["x", "", "1.5", "0x", "99999999999999999999x"] {
        assert_eq!(
            msg(&format!("null,id=a,reconnect-ms={bad}")),
            "Parameter 'reconnect-ms' expects a number"
        );
    }
    for big in ["99999999999999999999", "-99999999999999999999"] {
        assert_eq!(
            msg(&format!("null,id=a,reconnect-ms={big}")),
            format!("Value '{big}' is too large for parameter 'reconnect-ms'")
        );
    }
}

#[test]
fn sizes() {
    assert_eq!(ok("null,id=a,size=1.5k").get_number("size"), Some(1536));
    for bad in [
        "1x",
        "",
        "-1k",
        "-.5k",
        "16Ex",
        "0x10k",
        "99999999999999999999k",
    ] {
        let e = err(&format!("null,id=a,size={bad}"));
        assert_eq!(
            e.to_string(),
            "Parameter 'size' expects a non-negative number below 2^64",
            "{bad}"
        );
        assert_eq!(
            e.kind.hint(),
            Some(
                "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                 and exabytes, respectively.\n"
            )
        );
    }
    for range in [
        "-1",
        "-.5",
        "16E",
        "99999999999999999999",
        "0x1ffffffffffffffff",
    ] {
        assert_eq!(
            msg(&format!("null,id=a,size={range}")),
            format!("Value '{range}' is out of range for parameter 'size'")
        );
    }
}

#[test]
fn help() {
    for params in [
        "socket,help",
        "socket,id=x,help",
        "null,id=a,?",
        "null,id=a,help,x=1",
    ] {
        assert_eq!(err(params).kind, QemuOptsErrorKind::HelpWanted, "{params}");
    }
    // As the implied value it is the backend.
    assert_eq!(ok("help").get("backend"), Some("help"));
    assert_eq!(ok("help,id=a").get("backend"), Some("help"));
    let text = help_text("chardev", CHARDEV_OPTS);
    assert!(text.starts_with(
        "chardev options:\n  abstract=<bool (on/off)>\n  append=<bool (on/off)>\n  backend=<str>\n"
    ));
    assert!(text.contains("  reconnect-ms=<num>\n  reconnect=<num>\n  rows=<num>\n"));
    assert!(text.ends_with("  websocket=<bool (on/off)>\n  width=<num>\n"));
    assert_eq!(text.lines().count(), 1 + CHARDEV_OPTS.len());
    assert_eq!(help_text("x", &[]), "There are no options for x.\n");
}

#[test]
fn accepts_any_list() {
    let o = parse("iothread,id=a,foo=bar,help", Some("qom-type"), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        names(&o),
        [("qom-type", "iothread"), ("foo", "bar"), ("help", "on")]
    );
}

#[test]
fn chardev_checks() {
    assert_eq!(chardev_start(&ok("help")), Ok(ChardevStart::ListBackends));
    assert_eq!(chardev_start(&ok("?")), Ok(ChardevStart::ListBackends));
    assert_eq!(
        chardev_start(&ok("socket")),
        Err("chardev: no id specified".to_string())
    );
    assert_eq!(
        chardev_start(&ok("")),
        Err("chardev: no id specified".to_string())
    );
    assert_eq!(
        chardev_start(&ok("id=x")),
        Err("chardev: \"x\" missing backend".to_string())
    );
    assert_eq!(
        chardev_start(&ok("null,id=x")),
        Ok(ChardevStart::Create {
            backend: "null",
            id: "x"
        })
    );
}
