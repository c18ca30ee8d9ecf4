//! Every rule of the schema front end, and the error it gives: each message
//! names the file and line and says what is wrong.

use std::path::Path;

/// Loads `main` (plus `extra` files) from a temporary directory; returns the
/// error text, or "ok".
fn load_files(main: &str, extra: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.json"), main).unwrap();
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    match qapi_codegen::load(
        &dir.path().join("main.json"),
        qapi_codegen::Profile::default(),
    ) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

/// Loads a one-file schema without doc requirements.
fn load(src: &str) -> String {
    load_files(src, &[])
}

fn assert_err(src: &str, want: &str) {
    let got = load(src);
    assert!(
        got.contains(want),
        "expected error containing {want:?}\n     got: {got}"
    );
}

#[test]
fn valid_schema_loads() {
    assert_eq!(
        load(
            "{ 'enum': 'E', 'data': [ 'a', { 'name': 'b', 'if': 'CONFIG_LINUX' } ] }\n\
             { 'struct': 'B', 'data': { 'e': 'E' } }\n\
             { 'struct': 'S', 'base': 'B', 'data': { '*x': 'int', 'y': ['str'] }, 'features': [ 'unstable' ] }\n\
             { 'struct': 'Br', 'data': { 'z': 'bool' } }\n\
             { 'union': 'U', 'base': 'B', 'discriminator': 'e', 'data': { 'a': 'Br' } }\n\
             { 'alternate': 'A', 'data': { 's': 'str', 'o': 'S', 'n': 'null' } }\n\
             { 'command': 'do-it', 'data': { 'a': 'A' }, 'returns': 'S', 'allow-oob': true }\n\
             { 'command': 'boxed-one', 'data': 'U', 'boxed': true }\n\
             { 'event': 'SOMETHING_HAPPENED', 'data': { 'u': 'U' } }\n"
        ),
        "ok"
    );
}

#[test]
fn syntax_errors() {
    assert_err(
        "{ 'a': \"b\" }",
        "main.json:1: expected a value, found '\"'",
    );
    assert_err(
        "{ 'a': 'b\\n' }",
        "main.json:1: backslash escapes are not allowed",
    );
    assert_err("{ 'a': 'b\n' }", "main.json:1: unterminated string");
    assert_err("\n{ 'a': 'b', 'a': 'c' }", "main.json:2: duplicate key 'a'");
    assert_err("[ 'x' ]", "main.json:1: expected '{' or '##'");
    assert_err("{ 'enum': 'E', 'data': [] ", "main.json:1: expected");
    assert_err("{ 'enum': 'E', 'data': [ 1 ] }", "found '1'");
}

#[test]
fn include_rules() {
    assert_eq!(
        load_files(
            "{ 'include': 'a.json' }\n{ 'include': 'a.json' }",
            &[("a.json", "{ 'enum': 'E', 'data': [] }")]
        ),
        "ok"
    );
    assert!(load("{ 'include': 'missing.json' }").contains("main.json:1: can't read"));
    let e = load_files(
        "{ 'include': 'a.json' }",
        &[("a.json", "\n{ 'include': 'main.json' }")],
    );
    assert!(e.contains("a.json:2: inclusion loop"), "{e}");
    assert_err(
        "{ 'include': [ 'a' ] }",
        "main.json:1: 'include' takes a file name string",
    );
    assert_err(
        "{ 'include': 'a.json', 'x': 'y' }",
        "'include' must be the only key",
    );
}

#[test]
fn pragma_rules() {
    assert_err(
        "{ 'pragma': { 'nope': true } }",
        "main.json:1: unknown pragma 'nope'",
    );
    assert_err(
        "{ 'pragma': { 'doc-required': 'yes' } }",
        "pragma 'doc-required' takes true or false",
    );
    assert_err(
        "{ 'pragma': { 'command-name-exceptions': 'x' } }",
        "takes a list of strings",
    );
}

#[test]
fn expression_shape() {
    assert_err(
        "{ 'thing': 'X' }",
        "main.json:1: expression must start with one of",
    );
    assert_err(
        "{ 'struct': [ 'X' ], 'data': {} }",
        "'struct' takes a name string",
    );
    assert_err(
        "{ 'struct': 'X', 'data': {}, 'colour': 'red' }",
        "struct 'X' has unknown key 'colour'",
    );
    assert_err("{ 'enum': 'X' }", "enum 'X' lacks key 'data'");
    assert_err("{ 'union': 'U', 'data': {} }", "union 'U' lacks key 'base'");
    assert_err(
        "{ 'command': 'c', 'boxed': 'yes' }",
        "'boxed' of 'c' must be true or false",
    );
}

#[test]
fn naming_rules() {
    assert_err(
        "{ 'struct': 'lower', 'data': {} }",
        "type name 'lower' must be CamelCase",
    );
    assert_err(
        "{ 'struct': 'ThingList', 'data': {} }",
        "must not end in 'List'",
    );
    assert_err(
        "{ 'command': 'Do_It' }",
        "command name 'Do_It' must be lower case with dashes",
    );
    assert_err(
        "{ 'event': 'happened' }",
        "event name 'happened' must be upper case",
    );
    assert_err(
        "{ 'struct': 'S', 'data': { 'Bad': 'int' } }",
        "'S': member name 'Bad' must be lower case",
    );
    assert_err(
        "{ 'struct': 'S', 'data': { 'has-x': 'int' } }",
        "must not start with 'has-'",
    );
    assert_err(
        "{ 'enum': 'E', 'data': [ 'Up' ] }",
        "enum 'E': value 'Up' must be lower case",
    );
    assert_eq!(load("{ 'pragma': { 'member-name-exceptions': [ 'S' ] } }\n{ 'struct': 'S', 'data': { 'Bad_ok': 'int' } }"), "ok");
    assert_eq!(
        load("{ 'pragma': { 'command-name-exceptions': [ 'do_it' ] } }\n{ 'command': 'do_it' }"),
        "ok"
    );
}

#[test]
fn condition_rules() {
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'if': 'not valid' }",
        "'if' condition 'not valid' is not a valid identifier",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'if': { 'either': [ 'A' ] } }",
        "unknown 'if' operator 'either'",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'if': { 'all': [] } }",
        "'if' operator 'all' needs at least one condition",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'if': { 'any': 'A' } }",
        "'if' operator 'any' takes a list",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'if': { 'all': [ 'A' ], 'not': 'B' } }",
        "exactly one of 'all', 'any', 'not'",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'if': true }",
        "'if' must be a string or an object",
    );
    assert_eq!(load("{ 'struct': 'S', 'data': {}, 'if': { 'all': [ 'A', { 'not': { 'any': [ 'B', 'C' ] } } ] } }"), "ok");
}

#[test]
fn feature_rules() {
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'features': 'x' }",
        "'features' must be a list",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'features': [ 'a', 'a' ] }",
        "duplicate feature 'a'",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'features': [ 'Bad' ] }",
        "feature name 'Bad' must be lower case",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {}, 'features': [ { 'if': 'A' } ] }",
        "feature needs a 'name' string",
    );
}

#[test]
fn member_and_type_rules() {
    assert_err(
        "{ 'struct': 'S', 'data': { 'a': 'int', '*a': 'str' } }",
        "'S': duplicate member 'a'",
    );
    assert_err(
        "{ 'struct': 'S', 'data': { 'a': [ 'int', 'str' ] } }",
        "an array type must have exactly one element type",
    );
    assert_err(
        "{ 'struct': 'S', 'data': { 'a': { 'if': 'A' } } }",
        "'S' member 'a' needs a 'type'",
    );
    assert_err(
        "{ 'struct': 'S', 'data': { 'a': 'Nope' } }",
        "'S' member 'a' uses unknown type 'Nope'",
    );
    assert_err(
        "{ 'command': 'c' }\n{ 'struct': 'S', 'data': { 'a': 'c' } }",
        "uses 'c', which is not a type",
    );
    assert_err(
        "{ 'enum': 'E', 'data': [ 'a', 'a' ] }",
        "enum 'E': duplicate value 'a'",
    );
    assert_err(
        "{ 'struct': 'S', 'data': {} }\n{ 'struct': 'S', 'data': {} }",
        "main.json:2: 'S' is already defined at main.json:1",
    );
    assert_err(
        "{ 'struct': 'Str', 'data': {} }\n{ 'enum': 'str', 'data': [] }",
        "'str' is a built-in type",
    );
}

#[test]
fn base_rules() {
    assert_err(
        "{ 'enum': 'E', 'data': [] }\n{ 'struct': 'S', 'base': 'E', 'data': {} }",
        "base 'E' of 'S' must be a struct",
    );
    assert_err(
        "{ 'struct': 'S', 'base': 'Nope', 'data': {} }",
        "'S' has unknown base 'Nope'",
    );
    assert_err(
        "{ 'struct': 'B', 'data': { 'a': 'int' } }\n{ 'struct': 'S', 'base': 'B', 'data': { 'a': 'str' } }",
        "member 'a' of 'S' collides with member 'a' of base 'B'",
    );
    assert_err(
        "{ 'struct': 'A', 'base': 'B', 'data': {} }\n{ 'struct': 'B', 'base': 'A', 'data': {} }",
        "base chain that loops",
    );
}

#[test]
fn union_rules() {
    let e = "{ 'enum': 'E', 'data': [ 'a', 'b' ] }\n{ 'struct': 'Br', 'data': { 'x': 'int' } }\n";
    assert_err(
        &format!(
            "{e}{{ 'union': 'U', 'base': {{ 'k': 'E' }}, 'discriminator': 'kind', 'data': {{}} }}"
        ),
        "discriminator 'kind' is not a member of the base of union 'U'",
    );
    assert_err(
        &format!(
            "{e}{{ 'union': 'U', 'base': {{ '*k': 'E' }}, 'discriminator': 'k', 'data': {{}} }}"
        ),
        "must not be optional",
    );
    assert_err(
        &format!(
            "{e}{{ 'union': 'U', 'base': {{ 'k': 'str' }}, 'discriminator': 'k', 'data': {{}} }}"
        ),
        "must be of enum type",
    );
    assert_err(&format!("{e}{{ 'union': 'U', 'base': {{ 'k': {{ 'type': 'E', 'if': 'A' }} }}, 'discriminator': 'k', 'data': {{}} }}"), "must not be conditional");
    assert_err(&format!("{e}{{ 'union': 'U', 'base': {{ 'k': 'E' }}, 'discriminator': 'k', 'data': {{ 'c': 'Br' }} }}"), "union 'U' branch 'c' is not a value of 'E'");
    assert_err(&format!("{e}{{ 'union': 'U', 'base': {{ 'k': 'E' }}, 'discriminator': 'k', 'data': {{ 'a': 'int' }} }}"), "union 'U' branch 'a' must be an object type");
    assert_err(&format!("{e}{{ 'union': 'U', 'base': {{ 'k': 'E' }}, 'discriminator': 'k', 'data': {{ 'a': [ 'Br' ] }} }}"), "can't be an array");
    assert_err(&format!("{e}{{ 'union': 'U', 'base': {{ 'k': 'E', 'x': 'str' }}, 'discriminator': 'k', 'data': {{ 'a': 'Br' }} }}"), "member 'x' of branch type 'Br' collides with the base of union 'U'");
    assert_err(
        &format!("{e}{{ 'union': 'U', 'base': 'E', 'discriminator': 'k', 'data': {{}} }}"),
        "base 'E' of union 'U' must be a struct",
    );
    assert_err("{ 'command': 'c', 'data': 'U' }\n{ 'enum': 'E', 'data': [ 'a' ] }\n{ 'union': 'U', 'base': { 'k': 'E' }, 'discriminator': 'k', 'data': {} }", "a union as 'data' requires 'boxed': true");
}

#[test]
fn alternate_rules() {
    assert_err(
        "{ 'alternate': 'A', 'data': {} }",
        "alternate 'A' has no branches",
    );
    assert_err(
        "{ 'alternate': 'A', 'data': { 'i': 'int', 'n': 'number' } }",
        "branch 'n' can't be distinguished from branch 'i'",
    );
    assert_err(
        "{ 'enum': 'E', 'data': [] }\n{ 'alternate': 'A', 'data': { 's': 'str', 'e': 'E' } }",
        "can't be distinguished",
    );
    assert_err(
        "{ 'alternate': 'A', 'data': { 'v': 'any' } }",
        "alternate 'A' branch 'v' can't be of type 'any'",
    );
    assert_err(
        "{ 'alternate': 'B', 'data': { 's': 'str' } }\n{ 'alternate': 'A', 'data': { 'b': 'B' } }",
        "can't be another alternate",
    );
}

#[test]
fn command_and_event_rules() {
    assert_err(
        "{ 'command': 'c', 'returns': 'str' }",
        "command 'c' returns 'str': only object types or arrays of them may be returned",
    );
    assert_eq!(load("{ 'pragma': { 'command-returns-exceptions': [ 'c' ] } }\n{ 'command': 'c', 'returns': 'str' }"), "ok");
    assert_err(
        "{ 'command': 'c', 'data': { 'a': 'int' }, 'boxed': true }",
        "'boxed' requires 'data' to be a type name",
    );
    assert_err(
        "{ 'command': 'c', 'boxed': true }",
        "'boxed' requires 'data'",
    );
    assert_err(
        "{ 'command': 'c', 'data': 'Nope' }",
        "'c' has unknown 'data' type 'Nope'",
    );
    assert_err(
        "{ 'enum': 'E', 'data': [] }\n{ 'event': 'EV', 'data': 'E' }",
        "'EV': 'data' type 'E' must be an object type",
    );
}

#[test]
fn documentation_rules() {
    let req = "{ 'pragma': { 'doc-required': true } }\n";
    assert_err(
        &format!("{req}{{ 'struct': 'S', 'data': {{}} }}"),
        "main.json:2: definition 'S' has no doc block",
    );
    assert_err(
        &format!("{req}##\n# @T:\n#\n# Text.\n##\n{{ 'struct': 'S', 'data': {{}} }}"),
        "main.json:2: doc block names 'T' but documents 'S'",
    );
    assert_err(
        &format!("{req}##\n# @S:\n#\n# Text.\n##\n{{ 'struct': 'S', 'data': {{ 'a': 'int' }} }}"),
        "'S': member 'a' is not documented",
    );
    assert_err(
        &format!(
            "{req}##\n# @S:\n#\n# Text.\n#\n# @b: no such\n##\n{{ 'struct': 'S', 'data': {{}} }}"
        ),
        "main.json:7: 'S': documented member 'b' does not exist",
    );
    assert_err(&format!("{req}##\n# @S:\n#\n# Text.\n##\n{{ 'struct': 'S', 'data': {{}}, 'features': [ 'unstable' ] }}"), "'S': feature 'unstable' is not documented");
    assert_err(
        &format!("{req}##\n# @c:\n#\n# Text.\n#\n# Returns: x\n##\n{{ 'command': 'c' }}"),
        "'c' returns nothing but documents 'Returns:'",
    );
    assert_err(
        &format!("{req}##\n# @S:\n#\n# Text.\n##\n"),
        "doc block for 'S' is not followed by its definition",
    );
    assert_err(
        &format!("{req}##\n#@S:\n##\n{{ 'struct': 'S', 'data': {{}} }}"),
        "main.json:3: a doc comment line must be '#' alone or '#' followed by a space",
    );
    assert_eq!(
        load(&format!("{req}##\n# @E:\n#\n# An enum.\n#\n# @a: first\n#\n# Features:\n#\n# @deprecated: old\n#\n# Since: 1.0\n##\n{{ 'enum': 'E', 'data': [ {{ 'name': 'a', 'features': [ 'deprecated' ] }} ] }}")),
        "ok"
    );
}

#[test]
fn all_errors_are_reported_together() {
    let e = load(
        "{ 'struct': 'S', 'data': { 'a': 'Nope' } }\n{ 'struct': 'T', 'data': { 'b': 'Nada' } }",
    );
    assert!(
        e.contains("main.json:1:") && e.contains("main.json:2:"),
        "{e}"
    );
}

#[test]
fn error_locations_use_the_relative_file_name() {
    let e = load_files(
        "{ 'include': 'sub.json' }",
        &[("sub.json", "\n\n{ 'struct': 's', 'data': {} }")],
    );
    assert!(e.starts_with("sub.json:3: "), "{e}");
    let _ = Path::new("unused");
}
