//! Helpers of the deployment tests (`tests/docker.rs`, `tests/systemd.rs`): the repository's
//! files, the README's configuration table, and the defaults the binary itself reports.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A repository file as text.
pub fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A YAML file of the repository, parsed (one document).
pub fn yaml(rel: &str) -> Yaml {
    let mut docs =
        YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.remove(0)
}

/// The built binary with an empty environment, so that nothing of the caller's leaks in.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"));
    c.env_clear();
    c
}

/// Every variable of the README's configuration table, with its default cell (`unset`,
/// `` `./data` ``, `all six names`, ...). A row may name several (`A`, `B`).
pub fn readme_variables() -> Vec<(String, String)> {
    let readme = read("README.md");
    let start = readme
        .find("\n## Configuration")
        .expect("README has a Configuration section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut vars = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let default = cells.get(1).map_or("", |c| c.trim()).to_string();
        for name in cells[0].split('`').skip(1).step_by(2) {
            vars.push((name.to_string(), default.clone()));
        }
    }
    assert!(
        vars.len() >= 20,
        "the README's table was not found: {vars:?}"
    );
    vars
}

/// The names of the README's variables.
pub fn readme_names() -> Vec<String> {
    readme_variables().into_iter().map(|(n, _)| n).collect()
}

/// The binary's subcommands, from its `--help`.
pub fn subcommands() -> Vec<String> {
    let help = bin().arg("--help").output().unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    let list = &text[text.find("Commands:").expect("a Commands: list")..];
    let list = &list[..list.find("\n\n").unwrap_or(list.len())];
    let names: Vec<String> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    assert!(names.iter().any(|n| n == "serve"), "{names:?}");
    names
}

/// Every environment variable a subcommand of the binary reads, with the default its `--help`
/// reports (`None`: unset by default). `RUST_LOG` is not a flag: it comes from the README's
/// table.
pub fn code_defaults() -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for cmd in subcommands() {
        let help = bin().args([cmd.as_str(), "--help"]).output().unwrap();
        assert!(help.status.success(), "{cmd} --help: {help:?}");
        // Short help has `[env: X=] [default: y]` on the argument's line, long help puts each on
        // a line of its own below it: a default belongs to the last `[env:` of its argument.
        let mut current: Option<String> = None;
        for line in String::from_utf8(help.stdout).unwrap().lines() {
            if line.trim_start().starts_with('-') {
                current = None;
            }
            if let Some(at) = line.find("[env: ") {
                let rest = &line[at + 6..];
                let name = rest[..rest.find(['=', ']']).unwrap()].to_string();
                out.insert(name.clone(), None);
                current = Some(name);
            }
            if let (Some(at), Some(name)) = (line.find("[default: "), &current) {
                let v = &line[at + 10..];
                let v = v[..v.find(']').unwrap()].trim_matches('"').to_string();
                out.insert(name.clone(), Some(v));
            }
        }
    }
    let rust_log = readme_variables()
        .into_iter()
        .find(|(n, _)| n == "RUST_LOG")
        .map(|(_, d)| d.trim_matches('`').to_string());
    out.insert("RUST_LOG".into(), rust_log);
    assert!(
        out.contains_key("BIND") && out.contains_key("SERVICE_URL"),
        "{out:?}"
    );
    out
}

/// The port of a `host:port` address.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A YAML scalar as the text a container would see.
pub fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A YAML list of scalars.
pub fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(scalar)
        .collect()
}

/// A compose `environment:` mapping (the map form).
pub fn environment(service: &Yaml) -> BTreeMap<String, String> {
    service["environment"]
        .as_hash()
        .expect("environment is a mapping")
        .iter()
        .map(|(k, v)| (scalar(k), scalar(v)))
        .collect()
}

/// Variables shown commented out (`# NAME: value` or `# NAME=value`) in a file: name and value.
pub fn commented_variables(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("# ") else {
            continue;
        };
        let Some(sep) = rest.find([':', '=']) else {
            continue;
        };
        let name = &rest[..sep];
        let upper = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
        if name.len() > 2 && name.chars().all(upper) {
            let value = rest[sep + 1..].split("  #").next().unwrap_or("").trim();
            out.insert(name.to_string(), value.trim_matches('"').to_string());
        }
    }
    out
}
