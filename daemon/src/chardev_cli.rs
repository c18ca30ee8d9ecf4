//! `--chardev`: QSD's QemuOpts syntax with implied key `backend`
//! ([`qapi::qemuopts`]: warnings for short-form booleans, `help` as a pair
//! (option list on stdout, exit status 1), `help` as the backend (backend
//! list, exit status 0)), then the chardev module's command-line conversion
//! ([`qsd_runtime::chardev::cli::parse_cli_chardev`]: defaults differ from
//! QMP's, e.g. `wait` is on for servers) and creation with the option as the
//! location of messages printed meanwhile (the `wait` notice).

use qapi::qemuopts::{self, ChardevStart, CHARDEV_IMPLIED_KEY, CHARDEV_OPTS};
use qsd_runtime::chardev::cli::parse_cli_chardev;
use qsd_runtime::chardev::{create_with, Origin};

use crate::apply::{parse_qemuopts, Startup, Stop};
use crate::report::{write_stdout, Location};

/// An error; text after the first newline is a hint printed on its own
/// lines, as QEMU prints `error_append_hint` text.
fn error(msg: impl Into<String>) -> Stop {
    let msg = msg.into();
    match msg.split_once('\n') {
        Some((m, h)) => Stop::Error {
            msg: m.to_string(),
            hint: Some(format!("{h}\n")),
        },
        None => Stop::Error { msg, hint: None },
    }
}

/// Applies one `--chardev` value.
pub async fn add(st: &mut Startup, arg: &str, loc: &Location) -> Result<(), Stop> {
    let opts = parse_qemuopts(
        arg,
        CHARDEV_IMPLIED_KEY,
        CHARDEV_OPTS,
        "chardev",
        &st.rep,
        loc,
    )?;
    match qemuopts::chardev_start(&opts).map_err(error)? {
        ChardevStart::ListBackends => {
            let mut out = String::from("Available chardev backend types: \n");
            // `--chardev help` lists them in the reverse of the query order.
            for b in qsd_runtime::chardev::BACKENDS.iter().rev() {
                out.push_str(&format!("  {b}\n"));
            }
            write_stdout(&out);
            return Err(Stop::Exit(0));
        }
        ChardevStart::Create { .. } => {}
    }
    let mut pairs = Vec::with_capacity(opts.opts.len() + 1);
    if let Some(id) = &opts.id {
        pairs.push(("id".to_string(), id.clone()));
    }
    pairs.extend(opts.opts.iter().map(|o| (o.name.clone(), o.text.clone())));
    let (id, backend) = parse_cli_chardev(&pairs).map_err(error)?;
    let location = match loc {
        Location::Cmdline(words) => Some(
            words
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    };
    create_with(&st.daemon, id, backend, &Origin::Cli { location })
        .map(|_| ())
        .map_err(|e| error(e.desc))
}
