//! Turns a run's JSON lines into the Markdown report (ours vs each peer, absolute figures and
//! ratios, what limited each run), or checks them (`--check`: nothing lost, duplicated, dropped
//! or failed; no timing is judged).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The JSON lines written by the scenarios.
    pub results: PathBuf,
    /// The command that produced them, quoted in the report.
    #[arg(long, default_value = "bench/run")]
    pub command: String,
    /// Print only the summary table (for bench/README.md).
    #[arg(long)]
    pub table_only: bool,
    /// Exit 1 if any run errored, lost, duplicated or dropped anything; print nothing else.
    #[arg(long)]
    pub check: bool,
}

const SERVERS: [(&str, &str); 3] = [("ours", "ours"), ("socketio", "Socket.IO 4"), ("ws", "Node ws")];

pub fn run(args: ReportArgs) {
    let text = std::fs::read_to_string(&args.results).unwrap_or_else(|e| panic!("{}: {e}", args.results.display()));
    let runs: Vec<Value> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or(Value::Null)).collect();
    if args.check {
        let problems: Vec<String> = runs.iter().flat_map(problems).collect();
        for p in &problems {
            eprintln!("FAIL {p}");
        }
        println!("{} runs checked, {} problems", runs.len(), problems.len());
        std::process::exit(if problems.is_empty() && !runs.is_empty() { 0 } else { 1 });
    }
    let table = table(&runs);
    if args.table_only {
        print!("{table}");
        return;
    }
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark run\n");
    let _ = writeln!(out, "Machine: {}\n", machine());
    let _ = writeln!(out, "Command: `{}`\n", args.command);
    let _ =
        writeln!(out, "Ratios are ours ÷ peer: above 1 is better for throughput and rates, below 1 is better for latency and memory.\n");
    out.push_str(&table);
    let _ = writeln!(out, "\n## What limited each run (first repeat)\n");
    out.push_str(&limits(&runs));
    let _ = writeln!(out, "\n## Raw results\n\n```json");
    for r in &runs {
        let _ = writeln!(out, "{r}");
    }
    let _ = writeln!(out, "```");
    print!("{out}");
}

/// Everything that makes a run unsound, whatever its timing.
fn problems(r: &Value) -> Vec<String> {
    let name = format!("{} / {}", r["scenario"].as_str().unwrap_or("?"), r["server"].as_str().unwrap_or("?"));
    let mut out = Vec::new();
    if let Some(e) = r.get("error") {
        out.push(format!("{name}: {e}"));
    }
    for key in ["lost", "duplicated", "dropped_connections", "errors", "failed", "short_history"] {
        if r[key].as_u64().unwrap_or(0) > 0 {
            out.push(format!("{name}: {key} = {}", r[key]));
        }
    }
    if r["drained"] == false {
        out.push(format!("{name}: deliveries still missing after the drain"));
    }
    for step in r["steps"].as_array().into_iter().flatten() {
        if step["failed"].as_u64().unwrap_or(0) > 0 {
            out.push(format!("{name}: step {} failed {} joins ({})", step["target"], step["failed"], r["limit"]));
        }
    }
    out
}

fn runs_of<'a>(runs: &'a [Value], scenario: &str, server: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["scenario"] == scenario && r["server"] == server && r.get("error").is_none()).collect()
}

fn one<'a>(runs: &'a [Value], scenario: &str, server: &str) -> Option<&'a Value> {
    runs_of(runs, scenario, server).into_iter().next()
}

/// The hot-post step that delivered the most (sends due in the window, delivered by the end of
/// the drain, per second of window): what the server got through, whatever its latency.
fn hot_best<'a>(runs: &'a [Value], server: &str) -> Option<&'a Value> {
    runs_of(runs, "hot", server).into_iter().max_by(|a, b| num(a, "deliveries_per_s").total_cmp(&num(b, "deliveries_per_s")))
}

/// The lowest-rate hot-post step: latency when the machine is not yet overloaded.
fn hot_low<'a>(runs: &'a [Value], server: &str) -> Option<&'a Value> {
    runs_of(runs, "hot", server).into_iter().min_by_key(|r| r["rate"].as_u64().unwrap_or(u64::MAX))
}

/// The durable-writes run at an offered rate (only the engine stores messages).
fn durable_at<'a>(runs: &'a [Value], store: &str, rate: u64, server: &str) -> Option<&'a Value> {
    runs_of(runs, &format!("durable-{store}"), server).into_iter().find(|r| r["rate"] == rate)
}

fn num(v: &Value, key: &str) -> f64 {
    key.split('.').fold(v, |v, k| &v[k]).as_f64().unwrap_or(f64::NAN)
}

type Pick = fn(&[Value], &str) -> Option<f64>;

struct Row {
    scenario: &'static str,
    figure: &'static str,
    pick: Pick,
}

fn rows() -> Vec<Row> {
    fn idle(runs: &[Value], s: &str, key: &str) -> Option<f64> {
        one(runs, "idle", s).map(|r| num(r, key))
    }
    fn single(runs: &[Value], scenario: &str, s: &str, key: &str) -> Option<f64> {
        one(runs, scenario, s).map(|r| num(r, key))
    }
    fn durable(runs: &[Value], store: &str, rate: u64, s: &str, key: &str) -> Option<f64> {
        durable_at(runs, store, rate, s).map(|r| num(r, key))
    }
    vec![
        Row { scenario: "idle capacity", figure: "sockets held", pick: |r, s| idle(r, s, "held") },
        Row { scenario: "idle capacity", figure: "server RSS per socket, KiB", pick: |r, s| idle(r, s, "rss_per_socket_kib") },
        Row { scenario: "idle capacity", figure: "connects/s", pick: |r, s| idle(r, s, "connects_per_s") },
        Row {
            scenario: "hot post 1 × 5000",
            figure: "deliveries/s delivered, best step (all sends of the window, by the end of the drain)",
            pick: |r, s| hot_best(r, s).map(|r| num(r, "deliveries_per_s")),
        },
        Row {
            scenario: "hot post 1 × 5000",
            figure: "frames still undelivered 3 s after that step",
            pick: |r, s| hot_best(r, s).map(|r| num(r, "lost")),
        },
        Row {
            scenario: "hot post 1 × 5000",
            figure: "p50 / p99 / p99.9 ms at 10 msg/s (50k deliveries/s offered)",
            pick: |r, s| hot_low(r, s).map(|r| num(r, "latency.p99_ms")),
        },
        Row {
            scenario: "hot post 1 × 5000",
            figure: "server CPU cores at 10 msg/s",
            pick: |r, s| hot_low(r, s).map(|r| num(r, "server_cpu_cores")),
        },
        Row {
            scenario: "hot post 1 × 5000",
            figure: "load client CPU cores at 10 msg/s (shares the machine)",
            pick: |r, s| hot_low(r, s).map(|r| num(r, "client_cpu_cores")),
        },
        Row {
            scenario: "calm post 1 × 1000, 10 msg/s",
            figure: "p50 / p99 / p99.9 ms (10k deliveries/s, not saturated)",
            pick: |r, s| single(r, "calm", s, "latency.p99_ms"),
        },
        Row {
            scenario: "calm post 1 × 1000, 10 msg/s", figure: "server CPU cores", pick: |r, s| single(r, "calm", s, "server_cpu_cores")
        },
        Row { scenario: "blog mix 2000 × 5", figure: "p50 / p99 / p99.9 ms", pick: |r, s| single(r, "mix", s, "latency.p99_ms") },
        Row { scenario: "blog mix 2000 × 5", figure: "server CPU cores", pick: |r, s| single(r, "mix", s, "server_cpu_cores") },
        Row { scenario: "blog mix 2000 × 5", figure: "load client CPU cores", pick: |r, s| single(r, "mix", s, "client_cpu_cores") },
        Row { scenario: "join storm", figure: "join p50 / p99 ms (50 history)", pick: |r, s| single(r, "join", s, "latency.p99_ms") },
        Row {
            scenario: "durable writes, SQLite",
            figure: "committed msgs/s at 5,000/s offered",
            pick: |r, s| durable(r, "sqlite", 5000, s, "acked_per_s"),
        },
        Row {
            scenario: "durable writes, SQLite",
            figure: "commit (send → ack) p50 / p99 ms at 5,000/s",
            pick: |r, s| durable(r, "sqlite", 5000, s, "ack_latency.p99_ms"),
        },
        Row {
            scenario: "durable writes, SQLite",
            figure: "committed msgs/s at 20,000/s offered",
            pick: |r, s| durable(r, "sqlite", 20000, s, "acked_per_s"),
        },
        Row {
            scenario: "durable writes, SQLite",
            figure: "commit (send → ack) p50 / p99 ms at 20,000/s",
            pick: |r, s| durable(r, "sqlite", 20000, s, "ack_latency.p99_ms"),
        },
        Row {
            scenario: "durable writes, Postgres",
            figure: "committed msgs/s at 5,000/s offered",
            pick: |r, s| durable(r, "postgres", 5000, s, "acked_per_s"),
        },
        Row {
            scenario: "durable writes, Postgres",
            figure: "commit (send → ack) p50 / p99 ms at 5,000/s",
            pick: |r, s| durable(r, "postgres", 5000, s, "ack_latency.p99_ms"),
        },
        Row {
            scenario: "durable writes, Postgres",
            figure: "committed msgs/s at 20,000/s offered",
            pick: |r, s| durable(r, "postgres", 20000, s, "acked_per_s"),
        },
        Row {
            scenario: "durable writes, Postgres",
            figure: "commit (send → ack) p50 / p99 ms at 20,000/s",
            pick: |r, s| durable(r, "postgres", 20000, s, "ack_latency.p99_ms"),
        },
        Row {
            scenario: "3 pods + Redis",
            figure: "cross-pod send → deliver p50 / p99 ms",
            pick: |r, s| single(r, "xpod", s, "cross_pod_latency.p99_ms"),
        },
        Row {
            scenario: "blog network 9,500 × 2, 200 chatting",
            figure: "server RSS per socket, KiB",
            pick: |r, s| network_rss(r, s).map(|(kib, run)| kib / num(run, "clients")),
        },
        Row {
            scenario: "blog network 9,500 × 2, 200 chatting",
            figure: "server RSS per room, KiB",
            pick: |r, s| network_rss(r, s).map(|(kib, run)| kib / num(run, "rooms")),
        },
        Row {
            scenario: "blog network 9,500 × 2, 200 chatting",
            figure: "send → deliver p50 / p99 / p99.9 ms",
            pick: |r, s| single(r, "network", s, "latency.p99_ms"),
        },
        Row {
            scenario: "blog network soak",
            figure: "server RSS MiB at the start / half / end of the window",
            pick: |r, s| soak_rss(r, s, 10),
        },
        Row {
            scenario: "blog network soak",
            figure: "send → deliver p50 / p99 / p99.9 ms",
            pick: |r, s| single(r, "soak", s, "latency.p99_ms"),
        },
        Row {
            scenario: "blog network soak",
            figure: "messages lost or duplicated",
            pick: |r, s| one(r, "soak", s).map(|r| num(r, "lost") + num(r, "duplicated")),
        },
    ]
}

/// The blog network's server RSS at the end of its window, less what it held before the first
/// reader, in KiB, with its run.
fn network_rss<'a>(runs: &'a [Value], server: &str) -> Option<(f64, &'a Value)> {
    let run = one(runs, "network", server)?;
    Some((run["server_rss_timeline_kib"][10].as_f64()? - run["server_rss_before_kib"].as_f64()?, run))
}

/// The soak's server RSS, in MiB, at tenth `i` of its window (0: its start).
fn soak_rss(runs: &[Value], server: &str, i: usize) -> Option<f64> {
    one(runs, "soak", server).and_then(|r| r["server_rss_timeline_kib"][i].as_f64()).map(|kib| (kib / 1024.0).round())
}

/// The figures a cell shows for one repeat: percentile rows give p50 / p99 / p99.9 (or p50 / p99),
/// the soak's RSS row its start / half / end; every other row its one figure.
fn components(runs: &[Value], row: &Row, server: &str) -> Option<Vec<f64>> {
    let v = (row.pick)(runs, server)?;
    if row.figure.starts_with("server RSS MiB at the start") {
        return Some([0, 5, 10].iter().map(|&i| soak_rss(runs, server, i).unwrap_or(f64::NAN)).collect());
    }
    if !row.figure.contains("p50") {
        return Some(vec![v]);
    }
    let rate = if row.figure.contains("20,000") { 20000 } else { 5000 };
    let run = match row.scenario {
        s if s.starts_with("hot") => hot_low(runs, server),
        s if s.contains("SQLite") => durable_at(runs, "sqlite", rate, server),
        s if s.contains("Postgres") => durable_at(runs, "postgres", rate, server),
        s if s.starts_with("blog mix") => one(runs, "mix", server),
        s if s.starts_with("calm") => one(runs, "calm", server),
        s if s.starts_with("join") => one(runs, "join", server),
        s if s.contains("soak") => one(runs, "soak", server),
        s if s.starts_with("blog network") => one(runs, "network", server),
        _ => one(runs, "xpod", server),
    }?;
    let key = if row.scenario.starts_with("durable") {
        "ack_latency"
    } else if row.scenario.starts_with('3') {
        "cross_pod_latency"
    } else {
        "latency"
    };
    let mut out = vec![num(run, &format!("{key}.p50_ms")), num(run, &format!("{key}.p99_ms"))];
    if !(row.scenario.starts_with("join") || row.scenario.starts_with("durable")) {
        out.push(num(run, &format!("{key}.p999_ms")));
    }
    Some(out)
}

/// A run file's repeats (`bench/run` runs every scenario `REPEATS` times, tagging each line with
/// its `repeat`; lines without one are a single repeat), each as the lines it holds.
fn repeats(runs: &[Value]) -> Vec<Vec<Value>> {
    let mut ids: Vec<u64> = runs.iter().map(|r| r["repeat"].as_u64().unwrap_or(1)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter().map(|&id| runs.iter().filter(|r| r["repeat"].as_u64().unwrap_or(1) == id).cloned().collect()).collect()
}

/// The median of the figures that exist (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

/// One row for one server over every repeat: the median of each figure shown, the median of the
/// figure the ratio is taken on, and that figure's range (min, max) when there is more than one.
struct Summary {
    shown: Vec<f64>,
    headline: f64,
    range: Option<(f64, f64)>,
}

fn summarize(repeats: &[Vec<Value>], row: &Row, server: &str) -> Option<Summary> {
    let per_repeat: Vec<Vec<f64>> = repeats.iter().filter_map(|runs| components(runs, row, server)).collect();
    let headlines: Vec<f64> = repeats.iter().filter_map(|runs| (row.pick)(runs, server)).filter(|v| !v.is_nan()).collect();
    let headline = median(&headlines)?;
    let width = per_repeat.iter().map(Vec::len).max().unwrap_or(0);
    let shown =
        (0..width).map(|i| median(&per_repeat.iter().filter_map(|c| c.get(i).copied()).collect::<Vec<_>>()).unwrap_or(f64::NAN)).collect();
    let range = (headlines.len() > 1)
        .then(|| (headlines.iter().copied().fold(f64::INFINITY, f64::min), headlines.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
    Some(Summary { shown, headline, range })
}

/// The cell as shown: the medians (`p50 / p99 / p99.9` for percentile rows), then the range of
/// the figure the ratio is taken on (p99 for percentile rows) over the repeats, when they differ.
fn cell(summary: Option<&Summary>) -> String {
    let Some(s) = summary else { return "—".into() };
    let shown: Vec<String> = s.shown.iter().map(|&v| fmt(v)).collect();
    let mut out = shown.join(" / ");
    if let Some((lo, hi)) = s.range {
        if fmt(lo) != fmt(hi) {
            out.push_str(&format!(" ({}–{})", fmt(lo), fmt(hi)));
        }
    }
    out
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v.fract() == 0.0 && v < 1000.0 {
        format!("{v:.0}")
    } else if v >= 1000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn table(runs: &[Value]) -> String {
    let repeats = repeats(runs);
    let mut out = String::new();
    if repeats.len() > 1 {
        let _ = writeln!(
            out,
            "Medians of {} repeats; in brackets the range of the ratio's figure (p99 where three are shown).\n",
            repeats.len()
        );
    }
    out.push_str("| scenario | figure | ours | Socket.IO 4 | Node ws | ours ÷ Socket.IO | ours ÷ ws |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for row in rows() {
        let summaries: Vec<Option<Summary>> = SERVERS.iter().map(|(s, _)| summarize(&repeats, &row, s)).collect();
        let ratio = |peer: &Option<Summary>| match (&summaries[0], peer) {
            (Some(a), Some(b)) if b.headline > 0.0 => format!("{:.2}×", a.headline / b.headline),
            _ => "—".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.figure,
            cell(summaries[0].as_ref()),
            cell(summaries[1].as_ref()),
            cell(summaries[2].as_ref()),
            ratio(&summaries[1]),
            ratio(&summaries[2])
        );
    }
    out
}

/// Per scenario and server: where the run stopped scaling, from its own figures.
fn limits(runs: &[Value]) -> String {
    let mut out = String::new();
    for (server, label) in SERVERS {
        if let Some(r) = one(runs, "idle", server) {
            let limit = match &r["limit"] {
                Value::Null => "no step failed: the largest step asked for".to_string(),
                v => format!("the next step failed: {}", v.as_str().unwrap_or("?")),
            };
            let _ = writeln!(out, "- idle, {label}: held {}; {limit}.", r["held"]);
        }
    }
    for (server, label) in SERVERS {
        let steps = runs_of(runs, "hot", server);
        if steps.is_empty() {
            continue;
        }
        let mut line = format!("- hot post, {label}:");
        for r in steps {
            let _ = write!(
                line,
                " {} msg/s → {} deliveries/s, p99 {} ms, lost {}, dropped {}, CPU server {} / client {};",
                r["rate"],
                fmt(num(r, "deliveries_per_s")),
                fmt(num(r, "latency.p99_ms")),
                r["lost"],
                r["dropped_connections"],
                fmt(num(r, "server_cpu_cores")),
                fmt(num(r, "client_cpu_cores")),
            );
        }
        let _ = writeln!(out, "{}", line.trim_end_matches(';'));
    }
    for (scenario, name) in
        [("calm", "calm post"), ("mix", "blog mix"), ("join", "join storm"), ("xpod", "3 pods"), ("network", "blog network")]
    {
        for (server, label) in SERVERS {
            if let Some(r) = one(runs, scenario, server) {
                let _ = writeln!(out, "- {name}, {label}: {}", cpu_note(r));
            }
        }
    }
    for store in ["sqlite", "postgres"] {
        let mut line = format!("- durable writes on {store}:");
        for r in runs_of(runs, &format!("durable-{store}"), "ours") {
            let _ = write!(
                line,
                " offered {} msg/s → {} committed/s, commit p99 {} ms, errors {}, CPU {} cores;",
                r["rate"],
                fmt(num(r, "acked_per_s")),
                fmt(num(r, "ack_latency.p99_ms")),
                r["errors"],
                fmt(num(r, "server_cpu_cores"))
            );
        }
        let _ = writeln!(out, "{}", line.trim_end_matches(';'));
    }
    out
}

fn cpu_note(r: &Value) -> String {
    let (server, client) = (num(r, "server_cpu_cores"), num(r, "client_cpu_cores"));
    let node = r["server"] != "ours";
    let verdict = if node && server >= 0.9 && r["pods"].as_u64().unwrap_or(1) == 1 {
        "Node's one thread is saturated"
    } else if server + client.max(0.0) >= 1.7 {
        "the machine's 2 cores (server and client together)"
    } else {
        "not saturated: the offered load"
    };
    let client = if client.is_nan() { String::new() } else { format!(", client {} cores", fmt(client)) };
    format!("{verdict} (server {} cores{client}).", fmt(server))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let nofile = rlimit::Resource::NOFILE.get().map(|(_, hard)| hard).unwrap_or(0);
    format!(
        "{} × {}, {:.0} GiB RAM, at most {nofile} open files per process, Linux {}",
        cores,
        model.unwrap_or_else(|| "unknown CPU".into()),
        mem_gib,
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mix(repeat: u64, p50: f64, p99: f64) -> Value {
        json!({"scenario": "mix", "server": "ours", "repeat": repeat, "server_cpu_cores": 0.5,
               "latency": {"p50_ms": p50, "p99_ms": p99, "p999_ms": p99 * 2.0}})
    }

    #[test]
    fn a_cell_is_the_median_of_the_repeats_with_the_range_of_its_ratio_figure() {
        let runs = vec![mix(1, 3.0, 12.0), mix(2, 2.0, 9.0), mix(3, 4.0, 30.0)];
        let row = rows().into_iter().find(|r| r.scenario.starts_with("blog mix") && r.figure.contains("p50")).unwrap();
        let summary = summarize(&repeats(&runs), &row, "ours").unwrap();
        assert_eq!(summary.headline, 12.0);
        assert_eq!(cell(Some(&summary)), "3 / 12 / 24 (9–30)");
        // One repeat (or lines without `repeat`): the figures as they are, no range.
        let one_run = vec![json!({"scenario": "mix", "server": "ours", "latency": {"p50_ms": 3.0, "p99_ms": 12.0, "p999_ms": 20.0}})];
        assert_eq!(cell(summarize(&repeats(&one_run), &row, "ours").as_ref()), "3 / 12 / 20");
    }

    #[test]
    fn median_skips_missing_figures() {
        assert_eq!(median(&[f64::NAN, 4.0, 2.0]), Some(3.0));
        assert_eq!(median(&[]), None);
    }
}
