//! The throughput benchmark: `cargo bench --bench throughput`.
//!
//! Starts the sandbox in this process (in its fast mode: auth, an id, 201)
//! and, where it is installed, nginx answering 201 (the target the peers in
//! the throughput issue were measured against), generates exports, runs the release binary on them, and prints a table of
//! rows/s, client CPU per row (the child's own user+sys time), peak RSS, and
//! for the paced scenarios the achieved rate and the worst one-second window
//! as the server saw it. `BENCH_ROWS` sets the size of the large runs
//! (default 100000); `BENCH_QUICK=1` runs a small version of everything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use digidesk_upload::sandbox::{Sandbox, SandboxConfig};

const MAPPING: &str = r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "Post-call survey" }
customer_name = { template = "{First} {Last}" }
account_number = "Ref"
agent_name = { columns = ["Agent", "Owner"] }

[contact]
phone_region = "GB"

[misc_data]
columns = ["Reason", "Queue"]
rename = { "Reason" = "Contact Reason" }

[skip]
rules = [{ column = "Opt Out", equals = ["Y"] }]
"#;

/// The mixed-country scenario's mapping: E.164 numbers need no region.
const MAPPING_MIXED: &str = r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "Post-call survey" }
account_number = "Ref"
"#;

/// The real-export scenario's mapping: the customer chosen by direction
/// (`when`), an `extract`, a `time` and two skip rules.
const MAPPING_CALL_LOG: &str = r#"
[fields]
customer_contact = { when = [
    { if = { column = "Direction", equals = ["Inbound"] }, then = "From" },
], else = "To" }
campaign_name = { value = "Post-call survey" }
account_number = "Call ID"
agent_name = { column = "Agent", extract = '^([^<]+?)\s*<' }

[contact]
phone_region = "GB"
own_numbers = ["020 7946 0000"]

[misc_data.fields]
"Call date" = { column = "Start", time = { from = "%d/%m/%Y %H:%M", to = "%Y-%m-%d %H:%M" } }

[skip]
rules = [
  { column = "Duration", less_than = 10 },
  { column = "Queue", matches = '^(Test|QA)' },
]
"#;

/// A call log for [`MAPPING_CALL_LOG`]: inbound and outbound calls between
/// customers' mobiles and the company's line.
fn write_call_log(path: &Path, rows: usize) {
    let f = std::fs::File::create(path).expect("create export");
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "Call ID,Direction,From,To,Start,Duration,Agent,Queue").unwrap();
    for i in 0..rows {
        let customer = format!("07400 {:06}", 100000 + i % 900000);
        let company = "020 7946 0000";
        let (direction, from, to) = if i % 3 == 0 {
            ("Outbound", company, customer.as_str())
        } else {
            ("Inbound", customer.as_str(), company)
        };
        writeln!(
            w,
            "C{i},{direction},{from},{to},{:02}/11/2026 {:02}:{:02},{},Agent {} <agent{}@example.com>,{}",
            1 + i % 28,
            8 + i % 10,
            i % 60,
            i % 900,
            i % 40,
            i % 40,
            if i % 50 == 0 { "QA" } else { ["Sales", "Support", "Billing"][i % 3] },
        )
        .unwrap();
    }
}

/// A valid number of every region libphonenumber knows, in E.164, shuffled.
fn every_region_numbers() -> Vec<String> {
    use rand::seq::SliceRandom;
    use rlibphonenumber::{PhoneNumberFormat, PHONE_NUMBER_UTIL};
    let mut numbers: Vec<String> = PHONE_NUMBER_UTIL
        .get_supported_regions()
        .filter_map(|r| PHONE_NUMBER_UTIL.get_example_number(r).ok())
        .map(|n| {
            PHONE_NUMBER_UTIL
                .format(&n, PhoneNumberFormat::E164)
                .into_owned()
        })
        .collect();
    numbers.sort();
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(7);
    numbers.shuffle(&mut rng);
    numbers
}

/// An export whose rows cycle through every region's numbers.
fn write_mixed_export(path: &Path, rows: usize) {
    let numbers = every_region_numbers();
    let f = std::fs::File::create(path).expect("create export");
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "Ref,Name,Phone").unwrap();
    for i in 0..rows {
        writeln!(w, "R{i},Zoë Smith {i},{}", numbers[i % numbers.len()]).unwrap();
    }
}

/// One measured run of the binary.
struct Measured {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
    exit: i32,
}

fn write_export(path: &Path, rows: usize) {
    let f = std::fs::File::create(path).expect("create export");
    let mut w = std::io::BufWriter::new(f);
    writeln!(
        w,
        "Ref,First,Last,Phone,Agent,Owner,Reason,Queue,Opt Out,Notes"
    )
    .unwrap();
    for i in 0..rows {
        writeln!(
            w,
            "R{i},Zoë,Smith {i},07400 {:06},Agent {},,\"Billing, enquiry\",Q{},,\"Called back; customer asked about \"\"fees\"\"\"",
            100000 + i % 900000,
            i % 40,
            i % 7
        )
        .unwrap();
    }
}

/// Runs the binary and measures it with wait4's resource usage.
// wait4 below reaps the child; clippy cannot see that.
#[allow(clippy::zombie_processes)]
fn measure(args: &[&str], envs: &[(&str, &str)]) -> Measured {
    // Each run has a fresh default ledger of its own: never the machine's,
    // and never one that knows an earlier run's rows.
    let state = tempfile::tempdir().expect("a state directory");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_digidesk-upload"))
        .args(args)
        .env("XDG_STATE_HOME", state.path())
        .envs(envs.iter().copied())
        .env("DIGIDESK_USERNAME", "demo")
        .env("DIGIDESK_PASSWORD", "demo")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn digidesk-upload");
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Measured {
        wall: started.elapsed(),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss,
        exit: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
    }
}

/// nginx answering every POST with 201 and a DigiDesk success body: the
/// target the peers in the throughput issue were measured against.
struct Nginx {
    child: std::process::Child,
    endpoint: String,
}

impl Nginx {
    fn start(dir: &Path) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root).ok()?;
        // A free port: nginx cannot report the one it was given.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let r = root.display();
        let conf = format!(
            r#"worker_processes 1;
daemon off;
error_log {r}/error.log warn;
pid {r}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path {r}/body;
  proxy_temp_path {r}/proxy;
  fastcgi_temp_path {r}/fastcgi;
  uwsgi_temp_path {r}/uwsgi;
  scgi_temp_path {r}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 201 '{{"status": "success", "data": 1, "messages": []}}';
    }}
  }}
}}
"#
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).ok()?;
        let child = Command::new(bin)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-p")
            .arg(&root)
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let nginx = Nginx {
            child,
            endpoint: format!("http://127.0.0.1:{port}/api/survey_requests/"),
        };
        // Ready when it accepts a connection.
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                eprintln!("nginx did not start; see {r}/error.log");
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

struct Row {
    name: String,
    rows: usize,
    m: Measured,
    rate: Option<(f64, usize, f64)>,
    /// Created per second ÷ what the server allows, when it limits.
    goodput: Option<f64>,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| scenario | rows | exit | wall s | rows/s | CPU µs/row | peak RSS MB | achieved req/s | worst 1-s window | 429 share | goodput |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let secs = r.m.wall.as_secs_f64();
        let (achieved, window, share) = match r.rate {
            Some((a, w, s)) => (
                format!("{a:.1}"),
                w.to_string(),
                format!("{:.1}%", s * 100.0),
            ),
            None => ("".into(), "".into(), "".into()),
        };
        let goodput = r
            .goodput
            .map(|g| format!("{:.1}%", g * 100.0))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {} |",
            r.name,
            r.rows,
            r.m.exit,
            secs,
            r.rows as f64 / secs,
            r.m.cpu.as_secs_f64() * 1e6 / r.rows as f64,
            r.m.max_rss_kb as f64 / 1024.0,
            achieved,
            window,
            share,
            goodput
        );
    }
}

/// Writes the mixed-country export in a process of its own: the phone
/// library's tables would otherwise stay in this process, and a child's peak
/// RSS counts the memory of the process it was started from.
fn write_mixed_export_apart(path: &Path, rows: usize) {
    let status = Command::new(std::env::current_exe().expect("the benchmark's own path"))
        .env(WRITE_MIXED, path)
        .env("BENCH_ROWS", rows.to_string())
        .status()
        .expect("start the export writer");
    assert!(status.success(), "the export writer failed");
}

/// Set in the process that only writes the mixed-country export.
const WRITE_MIXED: &str = "BENCH_WRITE_MIXED_EXPORT";

fn main() {
    if let Some(path) = std::env::var_os(WRITE_MIXED) {
        let rows = std::env::var("BENCH_ROWS")
            .ok()
            .and_then(|v| v.parse().ok());
        write_mixed_export(Path::new(&path), rows.expect("BENCH_ROWS"));
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would too: only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok();
    // BENCH_ONLY=TEXT runs only the scenarios whose name contains TEXT.
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let big: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 5_000 } else { 100_000 });
    let dir = tempfile::tempdir().expect("temp dir");
    let mapping = dir.path().join("map.toml");
    std::fs::write(&mapping, MAPPING).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut table = Vec::new();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    let s = |p: &PathBuf| p.display().to_string();

    // check: reading, mapping and validation alone.
    for rows in [big, big * 10] {
        if !wanted("check") {
            break;
        }
        let input = path(&format!("check{rows}.csv"));
        write_export(&input, rows);
        let m = measure(
            &[
                "check",
                &s(&input),
                "--mapping",
                &s(&mapping),
                "--show",
                "0",
            ],
            &[],
        );
        table.push(Row {
            name: "check".into(),
            rows,
            m,
            rate: None,
            goodput: None,
        });
        let _ = std::fs::remove_file(&input);
    }

    // check on a mixed-country export: every region, E.164, no phone_region.
    let mixed_mapping = path("mixed.toml");
    std::fs::write(&mixed_mapping, MAPPING_MIXED).unwrap();
    for rows in [big, big * 10] {
        if !wanted("check, every region") {
            break;
        }
        let input = path(&format!("mixed{rows}.csv"));
        write_mixed_export_apart(&input, rows);
        let m = measure(
            &[
                "check",
                &s(&input),
                "--mapping",
                &s(&mixed_mapping),
                "--show",
                "0",
            ],
            &[],
        );
        table.push(Row {
            name: "check, every region (E.164)".into(),
            rows,
            m,
            rate: None,
            goodput: None,
        });
        let _ = std::fs::remove_file(&input);
    }

    // check on a real export's mapping: when, extract, time and two skip rules.
    let call_log_mapping = path("call-log.toml");
    std::fs::write(&call_log_mapping, MAPPING_CALL_LOG).unwrap();
    for rows in [big * 10] {
        if !wanted("check, call log") {
            break;
        }
        let input = path(&format!("calllog{rows}.csv"));
        write_call_log(&input, rows);
        let m = measure(
            &[
                "check",
                &s(&input),
                "--mapping",
                &s(&call_log_mapping),
                "--show",
                "0",
            ],
            &[],
        );
        table.push(Row {
            name: "check, call log (when, extract, time, 2 skips)".into(),
            rows,
            m,
            rate: None,
            goodput: None,
        });
        let _ = std::fs::remove_file(&input);
    }

    // send, unlimited: against nginx where installed (the peers' target),
    // and against the fast sandbox.
    let unlimited = |target: &str, endpoint: &str, ledger: bool, table: &mut Vec<Row>| {
        let name = if ledger {
            format!("send --rate 0, {target}")
        } else {
            format!("send --rate 0, {target}, --no-ledger")
        };
        if !wanted(&name) {
            return;
        }
        for rows in [big, if quick { big } else { big * 10 }] {
            let input = path(&format!("send{rows}.csv"));
            write_export(&input, rows);
            let results = path("send.results.csv");
            let m = measure(
                &[
                    "send",
                    &s(&input),
                    "--mapping",
                    &s(&mapping),
                    "--results",
                    &s(&results),
                    "--force",
                    "--rate",
                    "0",
                    "-q",
                    "--endpoint",
                    endpoint,
                    if ledger { "-q" } else { "--no-ledger" },
                ],
                &[],
            );
            table.push(Row {
                name: name.clone(),
                rows,
                m,
                rate: None,
                goodput: None,
            });
            let _ = std::fs::remove_file(&input);
        }
    };
    match Nginx::start(dir.path()) {
        Some(nginx) => {
            unlimited("nginx", &nginx.endpoint, true, &mut table);
            unlimited("nginx", &nginx.endpoint, false, &mut table);
        }
        None => eprintln!("nginx is not installed: the unlimited runs use the sandbox only"),
    }
    let fast = rt
        .block_on(Sandbox::start(SandboxConfig {
            fast: true,
            ..SandboxConfig::default()
        }))
        .unwrap();
    unlimited("sandbox --fast", &fast.endpoint(), true, &mut table);
    rt.block_on(fast.shutdown());

    // Paced runs at 150-350 ms latency, and against a server allowing half the
    // asked rate: with a burst of one second's worth, and with a burst of 2
    // and `Retry-After: 1` on every 429.
    let paced: &[(&str, u32, SandboxConfig, usize)] = &[
        (
            "send --rate 50, 150-350 ms",
            50,
            SandboxConfig {
                latency_ms: 150,
                jitter_ms: 200,
                ..SandboxConfig::default()
            },
            if quick { 150 } else { 1000 },
        ),
        (
            "send --rate 200, 150-350 ms",
            200,
            SandboxConfig {
                latency_ms: 150,
                jitter_ms: 200,
                ..SandboxConfig::default()
            },
            if quick { 600 } else { 4000 },
        ),
        (
            "send --rate 100, server allows 50",
            100,
            SandboxConfig {
                rate_limit: Some(50.0),
                ..SandboxConfig::default()
            },
            if quick { 300 } else { 1500 },
        ),
        (
            "send --rate 40, server allows 20 (burst 2)",
            40,
            SandboxConfig {
                rate_limit: Some(20.0),
                rate_limit_burst: Some(2),
                retry_after: Some("1".into()),
                ..SandboxConfig::default()
            },
            if quick { 300 } else { 1500 },
        ),
    ];
    for (name, rate, cfg, rows) in paced {
        if !wanted(name) {
            continue;
        }
        let sb = rt.block_on(Sandbox::start(cfg.clone())).unwrap();
        let input = path("paced.csv");
        write_export(&input, *rows);
        let results = path("paced.results.csv");
        let m = measure(
            &[
                "send",
                &s(&input),
                "--mapping",
                &s(&mapping),
                "--results",
                &s(&results),
                "--force",
                "--rate",
                &rate.to_string(),
                "--max-attempts",
                "20",
                "-q",
                "--endpoint",
                &sb.endpoint(),
            ],
            &[],
        );
        let log = sb.requests();
        let mut times: Vec<Duration> = log.iter().map(|r| r.at).collect();
        let too_many = log.iter().filter(|r| r.status == Some(429)).count();
        let span = match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) if b > a => (*b - *a).as_secs_f64(),
            _ => 1.0,
        };
        let achieved = (times.len().saturating_sub(1)) as f64 / span;
        let share = too_many as f64 / times.len().max(1) as f64;
        let created = log.iter().filter(|r| r.status == Some(201)).count();
        let goodput = cfg
            .rate_limit
            .map(|allowed| created.saturating_sub(1) as f64 / span / allowed);
        table.push(Row {
            name: name.to_string(),
            rows: *rows,
            m,
            rate: Some((
                achieved,
                digidesk_upload::pace::worst_window(&mut times),
                share,
            )),
            goodput,
        });
        rt.block_on(sb.shutdown());
    }
    print_table(&table);
}
