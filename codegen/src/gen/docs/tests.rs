//! Renderer tests on a small inline schema.

use std::path::PathBuf;

use super::*;
use crate::model::{load, ModuleItem, Profile};

const MAIN: &str = "\
##
# = Test reference
#
# Introduction to the @Thing reference.
##
{ 'include': 'things.json' }
";

const THINGS: &str = "\
##
# = Things
#
# Module text about @Color and @Nowhere.
##

##
# == Colours
##

##
# @Color:
#
# A colour, *not* a _flavour_ | pipe.
#
# @red: the red one
#
# @blue: the blue one
#
# @green: the green one
#
# Features:
#
# @deprecated: green is going away
#
# Since: 1.0
##
{ 'enum': 'Color',
  'data': [ 'red', { 'name': 'blue', 'if': 'CONFIG_B' },
            { 'name': 'green', 'features': [ 'deprecated' ] } ] }

##
# == Objects
##

##
# @Base:
#
# Base struct.
#
# @name: a name
#
# Since: 1.0
##
{ 'struct': 'Base', 'data': { 'name': 'str' } }

##
# @Thing:
#
# A thing.
#
# Second paragraph.
#
# @size: its size
#
# @x-old: old stuff
#
# @linux: only on Linux
#
# Features:
#
# @deprecated: do not use
#
# @unstable: experimental
#
# Since: 1.1
##
{ 'struct': 'Thing', 'base': 'Base',
  'data': { '*size': 'uint8',
            '*x-old': { 'type': 'int', 'features': [ 'unstable' ] },
            '*linux': { 'type': 'bool', 'if': 'CONFIG_A' } },
  'features': [ 'deprecated' ] }

##
# @Shape:
#
# A shape.
#
# @color: selects the branch
#
# @id: an identifier
#
# Since: 2.0
##
{ 'union': 'Shape',
  'base': { 'color': 'Color', '*id': 'str' },
  'discriminator': 'color',
  'data': { 'red': 'Thing',
            'blue': { 'type': 'Base', 'if': 'CONFIG_B' } } }

##
# @ThingOrName:
#
# A thing or its name.
#
# @t: the thing
#
# @n: the name
#
# Since: 2.0
##
{ 'alternate': 'ThingOrName', 'data': { 't': 'Thing', 'n': 'str' } }

##
# @make-thing:
#
# Makes a @Thing.
#
# @shape: the shape
#
# @count: how many
#
# Returns: the thing
#
# Errors: if it fails
#
# Since: 3.0
##
{ 'command': 'make-thing',
  'data': { 'shape': 'Shape', '*count': 'int8' },
  'returns': 'Thing', 'allow-oob': true, 'allow-preconfig': true }

##
# @boxed-cmd:
#
# Takes a boxed shape.
#
# Since: 3.0
##
{ 'command': 'boxed-cmd', 'data': 'Shape', 'boxed': true,
  'if': 'CONFIG_B' }

##
# @ping:
#
# Does nothing.
#
# Since: 3.0
##
{ 'command': 'ping' }

##
# @THING_HAPPENED:
#
# A thing happened.
#
# @thing: what happened
#
# Since: 3.0
##
{ 'event': 'THING_HAPPENED', 'data': { 'thing': 'Thing' } }
";

/// A fresh directory holding the test schema files.
fn write_schema(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qapi-docs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("main.json"), MAIN).expect("write");
    std::fs::write(dir.join("things.json"), THINGS).expect("write");
    dir
}

fn schema(tag: &str) -> Schema {
    let dir = write_schema(tag);
    let s = load(&dir.join("main.json"), Profile::new(["CONFIG_A"]))
        .unwrap_or_else(|e| panic!("test schema does not load:\n{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    s
}

fn page<'a>(files: &'a [DocFile], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"))
        .contents
}

#[test]
fn markdown_pages() {
    let s = schema("md");
    let files = markdown(&s);
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["qmp/README.md", "qmp/things.md"]);
    let p = page(&files, "qmp/things.md");
    if std::env::var_os("QAPI_DOCS_DUMP").is_some() {
        eprintln!("{p}");
    }
    // Title from the first heading, sub-headings, definitions below them.
    assert!(p.starts_with("# Things\n"));
    assert!(p.contains("\n## Colours\n\n### Color\n\n*Enum*\n"));
    assert!(p.contains("\n## Objects\n"));
    // Prose: references linked (or code when unknown), Markdown escaped.
    assert!(p.contains("Module text about [`Color`](#color) and `Nowhere`."));
    assert!(p.contains("A colour, \\*not\\* a \\_flavour\\_ \\| pipe."));
    // Enum values with conditions.
    assert!(p.contains(
        "| `blue` | the blue one<br>*Available only if `CONFIG_B` (not enabled in this build).* |"
    ));
    // Members: inherited, optional, typed with links, conditions, features.
    assert!(p.contains(
        "| `name` | [`str`](README.md#built-in-types) | required | a name<br>*(from [`Base`](#base))* |"
    ));
    assert!(p.contains("| `size` | [`uint8`](README.md#built-in-types) | optional | its size |"));
    assert!(p.contains("old stuff<br>**Unstable**: experimental |"));
    assert!(p.contains("only on Linux<br>*Available only if `CONFIG_A` (enabled in this build).*"));
    assert!(p.contains("*Struct* · **Deprecated**"));
    assert!(p.contains("- `deprecated` (**Deprecated**): do not use"));
    assert!(p.contains("**Base:** [`Base`](#base)"));
    // Union: discriminator, common members, branches with added members.
    assert!(p.contains("**Discriminator:** `color`, of type [`Color`](#color)."));
    assert!(p.contains("| `color` | [`Color`](#color) | required | selects the branch |"));
    assert!(p.contains("| `red` | [`Thing`](#thing) | `name`, `size` (optional), `x-old` (optional), `linux` (optional) |"));
    assert!(p.contains("| `blue` | [`Base`](#base) | `name`<br>*Branch available only if `CONFIG_B` (not enabled in this build).* |"));
    assert!(p.contains("| `green` (**Deprecated**) | — | none |"));
    assert!(p.contains("| `green` | the green one<br>**Deprecated**: green is going away |"));
    // Alternate.
    assert!(p.contains("| `n` | [`str`](README.md#built-in-types) | the name |"));
    // Commands: inline arguments, returns, errors, flags; boxed; none.
    assert!(p.contains("| `count` | [`int8`](README.md#built-in-types) | optional | how many |"));
    assert!(p.contains("**Returns:** [`Thing`](#thing): the thing"));
    assert!(p.contains("**Errors:**\n\nif it fails"));
    assert!(p.contains("- `allow-oob`: may be sent with `exec-oob`"));
    assert!(p.contains("- `allow-preconfig`"));
    assert!(!p.contains("coroutine"));
    assert!(p.contains("*Command* · available only if `CONFIG_B` (not enabled in this build)"));
    assert!(p.contains("**Arguments:** the members of [`Shape`](#shape) (boxed"));
    assert!(p.contains(
        "### ping\n\n*Command*\n\nDoes nothing.\n\n**Arguments:** none.\n\n**Returns:** nothing"
    ));
    assert!(p.contains("### THING_HAPPENED\n\n*Event*"));
    assert!(p.contains("| `thing` | [`Thing`](#thing) | required | what happened |"));
    assert!(p.contains("**Since:** 3.0"));
    assert!(!p.contains("q_obj_"));

    let idx = page(&files, "qmp/README.md");
    assert!(idx.contains(
        "## Test reference\n\nIntroduction to the [`Thing`](things.md#thing) reference."
    ));
    assert!(idx.contains("- [Things](things.md) (`things.json`, 9 definitions)"));
    assert!(idx.contains("\n### Commands\n\n- [`boxed-cmd`](things.md#boxed-cmd) — *things*: Takes a boxed shape.\n- [`make-thing`]"));
    assert!(
        idx.contains("- [`Base`](things.md#base) (struct) — *things*: Base struct.\n- [`Color`]")
    );
    assert!(idx.contains("| `uint64` | JSON integer, unsigned 64-bit, 0 to 18446744073709551615 |"));
    // Deterministic.
    assert_eq!(files, markdown(&schema("md2")));
}

#[test]
fn man_page_content() {
    let s = schema("man");
    let m = man_page(&s);
    assert!(m.starts_with(".\\\" Generated"));
    assert!(m.contains(".TH QSD\\-QMP\\-REF 7"));
    assert!(m.contains(".SH \"THINGS\"\n"));
    assert!(m.contains(".SS \"Colours\"\n"));
    assert!(m.contains(".B \"make\\-thing\"\n\\(em command\n"));
    assert!(m.contains(".B \"Thing\"\n\\(em struct, \\fBdeprecated\\fR\n"));
    assert!(m.contains("\\(em command, only if CONFIG_B (not enabled in this build)"));
    assert!(m.contains(".TP\n.B \"count\"\n(int8, optional) how many\n"));
    assert!(m.contains("Returns: Thing: the thing"));
    assert!(m.contains("Flags: allow\\-oob (may be sent with exec\\-oob), allow\\-preconfig."));
    assert!(m.contains("Makes a \\fBThing\\fR."));
    assert!(m.contains(".B \"red\"\nThing: adds name, size, x\\-old, linux.\n"));
    assert!(m.is_ascii());
    // Every line is a request, a comment or text not starting with '.'/'\''.
    // groff, when installed, renders it without a single warning.
    let file = std::env::temp_dir().join(format!("qsd-qmp-ref-{}.7", std::process::id()));
    std::fs::write(&file, &m).expect("write");
    let out = std::process::Command::new("groff")
        .args(["-ww", "-z", "-man"])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    match out {
        Ok(o) => assert!(
            o.status.success() && o.stderr.is_empty(),
            "groff: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("groff check skipped: {e}"),
    }
    let mut example = false;
    for l in m.lines() {
        match l {
            ".nf" => example = true,
            ".fi" => example = false,
            _ => assert!(
                example || !l.starts_with(' '),
                "line starts with a space: {l}"
            ),
        }
    }
}

#[test]
fn json_schema_content() {
    let s = schema("json");
    let j = json_schema(&s);
    let defs = &j["$defs"];
    assert_eq!(j["$schema"], "https://json-schema.org/draft/2020-12/schema");
    // Built-ins with ranges.
    assert_eq!(defs["int8"]["minimum"], -128);
    assert_eq!(defs["uint64"]["maximum"], u64::MAX);
    assert_eq!(defs["size"]["minimum"], 0);
    assert_eq!(defs["any"].get("type"), None);
    // Enum: only enabled values.
    assert_eq!(defs["Color"]["enum"], serde_json::json!(["red", "green"]));
    // Struct: closed, all members, enabled only, deprecated annotation.
    let t = &defs["Thing"];
    assert_eq!(t["additionalProperties"], false);
    assert_eq!(t["required"], serde_json::json!(["name"]));
    assert_eq!(t["deprecated"], true);
    let props: Vec<&String> = t["properties"].as_object().unwrap().keys().collect();
    assert_eq!(props, ["name", "size", "x-old", "linux"]);
    assert_eq!(t["properties"]["size"]["$ref"], "#/$defs/uint8");
    // Union: base in allOf, one branch per enabled value.
    let u = &defs["Shape"];
    assert_eq!(u["unevaluatedProperties"], false);
    assert_eq!(u["allOf"][0]["required"], serde_json::json!(["color"]));
    let branches = u["oneOf"].as_array().unwrap();
    assert_eq!(branches.len(), 2);
    assert_eq!(branches[0]["properties"]["color"]["const"], "red");
    assert_eq!(
        branches[0]["required"],
        serde_json::json!(["color", "name"])
    );
    assert_eq!(branches[1]["properties"]["color"]["const"], "green");
    assert_eq!(branches[1]["deprecated"], true);
    // Alternate.
    assert_eq!(defs["ThingOrName"]["oneOf"][1]["$ref"], "#/$defs/str");
    // Commands and events; disabled ones absent.
    let c = &defs["command:make-thing"];
    assert_eq!(c["properties"]["exec-oob"]["const"], "make-thing");
    assert_eq!(
        c["$defs"]["arguments"]["required"],
        serde_json::json!(["shape"])
    );
    assert_eq!(c["$defs"]["return"]["$ref"], "#/$defs/Thing");
    assert_eq!(c["$defs"]["return"]["description"], "the thing");
    assert_eq!(
        defs["command:ping"]["$defs"]["arguments"]["maxProperties"],
        0
    );
    assert!(defs.get("command:boxed-cmd").is_none());
    assert_eq!(
        defs["event:THING_HAPPENED"]["$defs"]["data"]["properties"]["thing"]["$ref"],
        "#/$defs/Thing"
    );
    assert_eq!(
        defs["command:make-thing"]["description"],
        "Makes a `Thing`.\n\nErrors: if it fails\n\nMay be sent with `exec-oob` instead of `execute`.\n\nSince: 3.0"
    );
    assert_eq!(
        j["properties"]["execute"]["enum"],
        serde_json::json!(["make-thing", "ping"])
    );
}

#[test]
fn write_and_check() {
    let s = schema("check");
    let files = generate(&s);
    let dir = std::env::temp_dir().join(format!("qapi-docs-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let missing = check(&files, &dir);
    assert_eq!(missing.len(), files.len());
    assert!(missing.iter().all(|s| matches!(s, Stale::Missing(_))));
    assert_eq!(write(&files, &dir).expect("write").len(), files.len());
    assert!(check(&files, &dir).is_empty());
    assert!(write(&files, &dir).expect("write").is_empty());
    std::fs::write(dir.join(MAN_PAGE), "stale").expect("write");
    std::fs::write(dir.join("qmp/old.md"), "old").expect("write");
    assert_eq!(
        check(&files, &dir),
        vec![
            Stale::Differs(MAN_PAGE.into()),
            Stale::Obsolete("qmp/old.md".into())
        ]
    );
    write(&files, &dir).expect("write");
    assert!(check(&files, &dir).is_empty());
    assert!(!dir.join("qmp/old.md").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn module_items_in_source_order() {
    let s = schema("order");
    let items: Vec<String> = s.modules[1]
        .items
        .iter()
        .map(|i| match i {
            ModuleItem::Doc(d) => d.heading.clone().map(|h| h.1).unwrap_or_default(),
            ModuleItem::Entity(e) => s.entities[*e].name.clone(),
        })
        .collect();
    assert_eq!(
        items[..5],
        ["Things", "Colours", "Color", "Objects", "Base"].map(String::from)
    );
}
