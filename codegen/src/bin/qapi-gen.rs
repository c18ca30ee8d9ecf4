//! `qapi-gen`: checks a QAPI schema and writes generated code and docs.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(main) = args.first() else {
        eprintln!("usage: qapi-gen SCHEMA");
        return ExitCode::from(2);
    };
    match qapi_codegen::load(&PathBuf::from(main), qapi_codegen::Profile::default()) {
        Ok(s) => {
            println!(
                "{} modules, {} definitions",
                s.modules.len(),
                s.entities.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
