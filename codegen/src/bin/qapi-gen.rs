//! `qapi-gen`: checks a QAPI schema and writes generated code and docs.
//!
//! ```text
//! qapi-gen SCHEMA                     load and check, report a summary
//! qapi-gen SCHEMA --docs DIR          write the docs under DIR
//! qapi-gen SCHEMA --check-docs DIR    exit 1 listing stale files under DIR
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use qapi_codegen::gen::docs;

const USAGE: &str = "usage: qapi-gen SCHEMA [--docs DIR | --check-docs DIR]";

enum Action {
    Report,
    Docs(PathBuf),
    CheckDocs(PathBuf),
}

fn parse_args(args: &[String]) -> Result<(PathBuf, Action), String> {
    let mut schema = None;
    let mut action = Action::Report;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--docs" | "--check-docs" => {
                if !matches!(action, Action::Report) {
                    return Err("--docs and --check-docs are exclusive".into());
                }
                let dir = it.next().ok_or_else(|| format!("{a} needs a directory"))?;
                action = if a == "--docs" {
                    Action::Docs(dir.into())
                } else {
                    Action::CheckDocs(dir.into())
                };
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option '{s}'")),
            s => {
                if schema.replace(PathBuf::from(s)).is_some() {
                    return Err("only one SCHEMA may be given".into());
                }
            }
        }
    }
    let schema = schema.ok_or_else(|| "missing SCHEMA".to_string())?;
    Ok((schema, action))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (main, action) = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("qapi-gen: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let schema = match qapi_codegen::load(&main, qapi_codegen::Profile::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match action {
        Action::Report => {
            println!(
                "{} modules, {} definitions",
                schema.modules.len(),
                schema.entities.len()
            );
            ExitCode::SUCCESS
        }
        Action::Docs(dir) => match docs::write(&docs::generate(&schema), &dir) {
            Ok(changes) => {
                for c in &changes {
                    let what = match c {
                        docs::Stale::Missing(_) => "created",
                        docs::Stale::Differs(_) => "updated",
                        docs::Stale::Obsolete(_) => "removed",
                    };
                    println!("{what} {}", dir.join(c.path()).display());
                }
                if changes.is_empty() {
                    println!("docs in {} are up to date", dir.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("qapi-gen: writing docs to {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Action::CheckDocs(dir) => {
            let stale = docs::check(&docs::generate(&schema), &dir);
            if stale.is_empty() {
                println!("docs in {} are up to date", dir.display());
                return ExitCode::SUCCESS;
            }
            eprintln!("stale documentation in {}:", dir.display());
            for s in &stale {
                eprintln!("  {}: {}", dir.join(s.path()).display(), s.reason());
            }
            eprintln!(
                "regenerate with: cargo run -p qapi-codegen --bin qapi-gen -- {} --docs {}",
                main.display(),
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
