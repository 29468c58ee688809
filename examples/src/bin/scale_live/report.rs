//! The report: a JSON object whose fields keep the order they were added in (headline
//! figures first), and the short human summary printed before it without `--json`.

use serde_json::Value;

/// The report's fields, in order.
pub type Fields = Vec<(&'static str, Value)>;

/// `fields` as one pretty-printed JSON object, fields in their order.
pub fn render(fields: &Fields) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| {
            let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
            format!("  {}: {}", Value::from(*key), text.replace('\n', "\n  "))
        })
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}

/// The value of field `key` (null when absent).
pub fn get<'a>(fields: &'a Fields, key: &str) -> &'a Value {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(&Value::Null, |(_, v)| v)
}

/// A few human-readable lines.
pub fn summary(r: &Fields) -> String {
    let mm = |key: &str| {
        let v = get(r, key);
        format!("median {} / max {}", v["median"], v["max"])
    };
    let converge = match get(r, "converge_s").as_f64() {
        Some(s) => format!("{s:.1} s"),
        None => format!(
            "not within {} s ({})",
            get(r, "timeout_s"),
            get(r, "converge_progress")
        ),
    };
    [
        format!("nodes: {}   converged: {converge}", get(r, "nodes")),
        format!(
            "idle CPU s/min per agent: {} (all agents: {})",
            mm("idle_cpu_s_per_min_per_agent"),
            get(r, "idle_cpu_s_per_min_total")
        ),
        format!("RSS MiB: {}", mm("rss_mib")),
        format!("TCP sockets per agent: {}", mm("sockets_per_agent")),
        format!("control connections per agent: {}", mm("conns_per_agent")),
        format!(
            "control-port bytes/s per agent: {}",
            mm("control_bytes_per_s_per_agent")
        ),
        format!(
            "connection terminations in the idle window: {} (new connections: {})",
            get(r, "conn_terminations_idle")["total"],
            get(r, "control_connects_idle")["total"]
        ),
        String::new(),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_valid_json_in_field_order() {
        let fields: Fields = vec![
            ("nodes", json!(3)),
            ("converge_s", json!(1.5)),
            ("rss_mib", json!({"median": 9, "max": 10})),
            ("agent_args", json!([])),
        ];
        let text = render(&fields);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["rss_mib"]["max"], 10);
        let order: Vec<usize> = ["nodes", "converge_s", "rss_mib", "agent_args"]
            .iter()
            .filter_map(|k| text.find(&format!("\"{k}\"")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(summary(&fields).contains("converged: 1.5 s"));
    }
}
