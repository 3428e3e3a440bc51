//! `loadgen`: real participants against a dispatcher (or `rawfwd`), measuring packets out,
//! loss and latency per stream and the server's CPU. See `docs/benchmarks.md`.

use benches::config::LoadArgs;

fn main() -> std::process::ExitCode {
    let args = match settings::startup::<LoadArgs>("loadgen", "info", 1) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let result = match benches::run::run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    print!("{}", result.table());
    let mut failed = false;
    let mut report = |r: Result<(), benches::BenchError>| {
        if let Err(e) = r {
            eprintln!("loadgen: {e}");
            failed = true;
        }
    };
    if let Some(p) = &args.json {
        report(result.write_json(p));
    }
    if let Some(p) = &args.csv {
        report(result.write_csv(p));
    }
    if let Some(p) = &args.plot {
        report(benches::plot::plot(&result, p, args.font.as_deref()));
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
