//! Scanner tests: each case is a QSD 10.0.2 behaviour observed with the
//! installed `qemu-storage-daemon`.

use super::{scan, Item, Opt};

fn argv(words: &[&str]) -> Vec<Vec<u8>> {
    std::iter::once("qsd")
        .chain(words.iter().copied())
        .map(|w| w.as_bytes().to_vec())
        .collect()
}

fn opt(opt: Opt, arg: &str, loc: &[&str]) -> Item {
    Item::Opt {
        opt,
        arg: Some(arg.as_bytes().to_vec()),
        loc: loc.iter().map(|w| w.as_bytes().to_vec()).collect(),
    }
}

fn flag(opt: Opt) -> Item {
    Item::Opt {
        opt,
        arg: None,
        loc: Vec::new(),
    }
}

fn err(m: &str) -> Item {
    Item::Error(m.as_bytes().to_vec())
}

#[test]
fn long_option_with_separate_and_attached_argument() {
    assert_eq!(
        scan(&argv(&["--blockdev", "x", "--export=y"])),
        vec![
            opt(Opt::Blockdev, "x", &["--blockdev", "x"]),
            opt(Opt::Export, "y", &["--export=y"]),
        ]
    );
}

#[test]
fn unique_prefixes_are_accepted() {
    assert_eq!(
        scan(&argv(&["--e", "x", "--n=y", "--d", "--ver"])),
        vec![
            opt(Opt::Export, "x", &["--e", "x"]),
            opt(Opt::NbdServer, "y", &["--n=y"]),
            flag(Opt::Daemonize),
            flag(Opt::Version),
        ]
    );
}

#[test]
fn empty_long_name_is_ambiguous() {
    assert_eq!(
        scan(&argv(&["--=x"])),
        vec![err(
            "option '--=x' is ambiguous; possibilities: '--blockdev' '--chardev' \
             '--daemonize' '--export' '--help' '--monitor' '--nbd-server' '--object' \
             '--pidfile' '--trace' '--version'"
        )]
    );
}

#[test]
fn unknown_long_options_quote_the_whole_word() {
    assert_eq!(
        scan(&argv(&["--bogus=1", "---help", "--Help"])),
        vec![
            err("unrecognized option '--bogus=1'"),
            err("unrecognized option '---help'"),
            err("unrecognized option '--Help'"),
        ]
    );
}

#[test]
fn argument_to_a_flag_names_the_full_option() {
    assert_eq!(
        scan(&argv(&["--he=1", "--daemonize="])),
        vec![
            err("option '--help' doesn't allow an argument"),
            err("option '--daemonize' doesn't allow an argument"),
        ]
    );
}

#[test]
fn missing_arguments() {
    assert_eq!(
        scan(&argv(&["--p"])),
        vec![err("option '--pidfile' requires an argument")]
    );
    assert_eq!(
        scan(&argv(&["-T"])),
        vec![err("option requires an argument -- 'T'")]
    );
}

#[test]
fn short_option_clusters() {
    assert_eq!(
        scan(&argv(&["-hTfoo", "-VT", "bar", "-xV"])),
        vec![
            flag(Opt::Help),
            opt(Opt::Trace, "foo", &["-hTfoo"]),
            flag(Opt::Version),
            opt(Opt::Trace, "bar", &["-VT", "bar"]),
            err("invalid option -- 'x'"),
            flag(Opt::Version),
        ]
    );
}

#[test]
fn single_dash_words_are_short_option_clusters() {
    assert_eq!(scan(&argv(&["-blockdev"]))[0], err("invalid option -- 'b'"));
}

#[test]
fn the_next_word_is_the_argument_even_if_it_looks_like_an_option() {
    assert_eq!(
        scan(&argv(&["--blockdev", "-V", "-T", "--help"])),
        vec![
            opt(Opt::Blockdev, "-V", &["--blockdev", "-V"]),
            opt(Opt::Trace, "--help", &["-T", "--help"]),
        ]
    );
}

#[test]
fn non_options_are_returned_in_order() {
    assert_eq!(
        scan(&argv(&["foo", "-", "", "-V"])),
        vec![
            Item::NonOption(b"foo".to_vec()),
            Item::NonOption(b"-".to_vec()),
            Item::NonOption(Vec::new()),
            flag(Opt::Version),
        ]
    );
}

#[test]
fn double_dash_ends_the_scan() {
    assert_eq!(
        scan(&argv(&["-V", "--", "foo", "--bogus"])),
        vec![flag(Opt::Version)]
    );
}

#[test]
fn bytes_are_kept_as_they_are() {
    let mut a = argv(&["--pidfile"]);
    a.push(vec![0xff, b'p']);
    a.push(vec![b'-', 0xc3]);
    assert_eq!(
        scan(&a),
        vec![
            Item::Opt {
                opt: Opt::Pidfile,
                arg: Some(vec![0xff, b'p']),
                loc: vec![b"--pidfile".to_vec(), vec![0xff, b'p']],
            },
            Item::Error(b"invalid option -- '\xc3'".to_vec()),
        ]
    );
}

#[test]
fn pre_init_options() {
    let pre: Vec<Opt> = [
        Opt::Blockdev,
        Opt::Chardev,
        Opt::Daemonize,
        Opt::Export,
        Opt::Help,
        Opt::Monitor,
        Opt::NbdServer,
        Opt::Object,
        Opt::Pidfile,
        Opt::Trace,
        Opt::Version,
    ]
    .into_iter()
    .filter(|o| o.is_pre_init())
    .collect();
    assert_eq!(
        pre,
        vec![Opt::Daemonize, Opt::Help, Opt::Pidfile, Opt::Version]
    );
}
