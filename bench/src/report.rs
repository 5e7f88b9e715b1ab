//! Markdown table from a run's JSON lines (placeholder until the scenarios settle).

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    pub results: std::path::PathBuf,
}

pub fn run(_args: ReportArgs) {}
