//! The effective configuration as `overlay-agent run --check-config` prints it: a TOML file
//! that `--config` reads back, every key with a comment saying where its value came from.

use super::{Config, Origin, Origins};
use std::fmt::Write;
use std::time::Duration;

/// `config` as TOML, each line commented with its origin (`default` when absent from `origins`).
pub fn render(config: &Config, origins: &Origins) -> String {
    let mut out = String::from("# effective configuration of overlay-agent run (valid)\n");
    let line = |out: &mut String, key: &'static str, value: toml::Value| {
        // The file key `peers` is the flag `--peer`.
        let flag = if key == "peers" { "peer" } else { key };
        let origin = match origins.get(flag) {
            None | Some(Origin::Default) => "default".to_owned(),
            Some(Origin::Flag) => format!("flag --{flag}"),
            Some(Origin::Env(var)) => format!("environment {var}"),
            Some(Origin::File(path)) => format!("file {}", path.display()),
        };
        let _ = writeln!(out, "{key} = {value}  # {origin}");
    };
    let text = |s: String| toml::Value::String(s);
    let count = |n: usize| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    line(&mut out, "name", text(config.name.to_string()));
    line(&mut out, "listen", text(config.listen.to_string()));
    match config.advertise.ip {
        Some(ip) => line(
            &mut out,
            "advertise",
            text(std::net::SocketAddr::new(ip, config.advertise.port).to_string()),
        ),
        None => {
            let _ = writeln!(
                out,
                "# advertise: the address of the interface towards the first peer, found at start, port {}",
                config.advertise.port
            );
        }
    }
    line(
        &mut out,
        "peers",
        toml::Value::Array(config.peers.iter().map(|p| text(p.to_string())).collect()),
    );
    line(&mut out, "cluster-cidr", text(config.cluster.to_string()));
    line(
        &mut out,
        "subnet-prefix",
        toml::Value::Integer(config.subnet_prefix.into()),
    );
    line(&mut out, "iface", text(config.iface.clone()));
    line(&mut out, "api", text(config.api.to_string()));
    line(&mut out, "metrics", text(config.metrics.to_string()));
    line(
        &mut out,
        "state-dir",
        text(config.state_dir.to_string_lossy().into_owned()),
    );
    line(
        &mut out,
        "reclaim-after",
        text(duration(config.reclaim_after)),
    );
    line(&mut out, "active-view", count(config.view.preferred));
    line(
        &mut out,
        "max-connections",
        count(config.view.max_connections),
    );
    line(
        &mut out,
        "kubernetes",
        toml::Value::Boolean(config.kubernetes),
    );
    line(
        &mut out,
        "masquerade",
        toml::Value::Boolean(config.masquerade),
    );
    line(
        &mut out,
        "log-format",
        text(config.log_format.as_str().to_owned()),
    );
    out
}

/// `d` in the largest unit up to hours that expresses it exactly (`24h`, `90m`, `45s`,
/// `1500ms`).
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, name) in [(3_600_000, "h"), (60_000, "m"), (1000, "s")] {
        if ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_their_largest_exact_unit() {
        assert_eq!(duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::from_secs(5400)), "90m");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
    }
}
