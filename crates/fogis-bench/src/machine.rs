//! What the numbers were measured on: the machine, the moment, the code, and how busy the
//! machine was (the load average at the start and at the end of the run).

use std::process::Command;

/// The machine and the run.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub ram_bytes: u64,
    pub kernel: String,
    pub date: String,
    pub commit: String,
    pub rustc: String,
    pub redis: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kb: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
                .unwrap_or_else(|| "unknown".into()),
            ram_bytes: ram_kb * 1024,
            kernel: output("uname", &["-sr"]),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            commit: commit(),
            rustc: output("rustc", &["--version"]),
            redis: output("redis-server", &["--version"])
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v="))
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}

/// The commit, with `+changes` when the work tree differs from it.
fn commit() -> String {
    let head = output("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty {
        format!("{head}+changes")
    } else {
        head
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = text
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(f64::NAN));
    [
        v.next().unwrap_or(f64::NAN),
        v.next().unwrap_or(f64::NAN),
        v.next().unwrap_or(f64::NAN),
    ]
}

/// Waits (up to `max`) for the 1-minute load average to fall below `below`; returns it.
pub fn wait_for_quiet(below: f64, max: std::time::Duration) -> [f64; 3] {
    let until = std::time::Instant::now() + max;
    loop {
        let load = load_average();
        if load[0] < below || std::time::Instant::now() >= until {
            return load;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
}
