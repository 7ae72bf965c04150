//! `loadgen`: see `loadgen --help` and loadgen/README.md.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use loadgen::cli::{Cli, Command, RunArgs, Workload};
use loadgen::report::Report;

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let (args, workload, verify) = match cli.command {
        Command::Produce(args) => (args, Workload::Produce, false),
        Command::Consume(args) => (args, Workload::Consume, false),
        Command::E2e(args) => (args, Workload::E2e, false),
        Command::Verify(args) => (args, Workload::E2e, true),
        Command::Plot(plot) => {
            let reports = plot
                .reports
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str::<Report>(&text)
                        .with_context(|| format!("parsing {}", path.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let series = loadgen::plot::series_of(&reports);
            std::fs::write(&plot.output, loadgen::plot::render(&plot.title, &series))?;
            eprintln!("wrote {} ({} curves)", plot.output.display(), series.len());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Limits(limits) => {
            let measured = loadgen::limits::measure(&limits.dir, limits.duration)?;
            if let Some(path) = &limits.report {
                std::fs::write(path, serde_json::to_string_pretty(&measured)?)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let report = loadgen::run::run(&args, workload, verify)?;
    finish(&args, &report)
}

fn finish(args: &RunArgs, report: &Report) -> Result<ExitCode> {
    println!("{}", report.table());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let reports = std::slice::from_ref(report);
        let series = loadgen::plot::series_of(reports);
        std::fs::write(path, loadgen::plot::render(&report.label, &series))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(verify) = &report.results.verify {
        verify.print();
        if !report.results.failures.is_empty() {
            println!(
                "verify: the run had failures (above); records it could not read count as lost"
            );
        }
        if !verify.passed {
            return Ok(ExitCode::from(2));
        }
    }
    if !report.results.failures.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
