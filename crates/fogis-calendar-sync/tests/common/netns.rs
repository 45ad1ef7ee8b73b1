//! A test host of our own: a network namespace joined to this one by a veth pair, with a
//! redis-server inside it, so a test can cut the network (iptables DROP: a silent partition;
//! REJECT: a refused one) without touching the machine's own network. Needs root, `ip` and
//! `iptables` (the README's test command installs them).
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct RedisHost {
    pub ns: String,
    host_if: String,
    pub addr: String,
    redis: Option<Child>,
    _dir: tempfile::TempDir,
}

fn run(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl RedisHost {
    /// Creates the namespace and starts Redis in it; `None` (with the reason printed) when
    /// this machine cannot make namespaces (not root, no `ip`/`iptables`).
    pub fn start() -> Option<RedisHost> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 200) * 4;
        let (a, b) = ((n / 64) % 250, (n % 64) * 4);
        let ns = format!("fcs-{}-{n}", std::process::id());
        let (host_if, ns_if) = (format!("fcsh{n}"), format!("fcsn{n}"));
        let host_ip = format!("10.231.{a}.{}", b + 1);
        let addr = format!("10.231.{a}.{}", b + 2);
        let setup = || -> std::io::Result<()> {
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ])?;
            run(&["ip", "link", "set", &ns_if, "netns", &ns])?;
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{host_ip}/30"),
                "dev",
                &host_if,
            ])?;
            run(&["ip", "link", "set", &host_if, "up"])?;
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                &ns_if,
            ])?;
            run(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", &ns_if, "up",
            ])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
            run(&["ip", "netns", "exec", &ns, "iptables", "-S"])?;
            Ok(())
        };
        if let Err(e) = setup() {
            eprintln!("SKIP: cannot make a network namespace here ({e}); the README's test command runs as root with ip and iptables");
            let _ = run(&["ip", "link", "del", &host_if]);
            let _ = run(&["ip", "netns", "del", &ns]);
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let redis = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "redis-server",
                "--bind",
                &addr,
                "--port",
                "6379",
            ])
            .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let host = RedisHost {
            ns,
            host_if,
            addr,
            redis: Some(redis),
            _dir: dir,
        };
        let start = Instant::now();
        while host.cli(&["PING"]).trim() != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis in the namespace never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(host)
    }

    pub fn url(&self) -> String {
        format!("redis://{}:6379", self.addr)
    }

    /// redis-cli inside the namespace (works while the link is cut).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "redis-cli",
                "-h",
                &self.addr,
                "-p",
                "6379",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// redis-cli with the last argument read from `bytes` (`-x`).
    pub fn cli_with(&self, args: &[&str], bytes: &[u8]) -> String {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "redis-cli",
                "-h",
                &self.addr,
                "-p",
                "6379",
                "-x",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Cuts the link: packets from outside are dropped (silent) or refused (`reject`).
    pub fn cut(&self, reject: bool) {
        let target: &[&str] = if reject {
            &["REJECT", "--reject-with", "tcp-reset"]
        } else {
            &["DROP"]
        };
        let ns_if = self.host_if.replace("fcsh", "fcsn");
        let mut args = vec![
            "ip", "netns", "exec", &self.ns, "iptables", "-I", "INPUT", "-i", &ns_if, "-p", "tcp",
            "-j",
        ];
        args.extend_from_slice(target);
        run(&args).unwrap();
    }

    pub fn heal(&self) {
        run(&["ip", "netns", "exec", &self.ns, "iptables", "-F", "INPUT"]).unwrap();
    }
}

impl Drop for RedisHost {
    fn drop(&mut self) {
        if let Some(mut r) = self.redis.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        let _ = run(&["ip", "link", "del", &self.host_if]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}
