//! Talking to a running service from the CLI: `status` and `healthcheck`.

use std::time::Duration;

use serde_json::Value;

/// The base URL of a service listening on `bind` (an unspecified address means this machine).
pub fn base_url(bind: &std::net::SocketAddr) -> String {
    let host = match bind.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", bind.port())
}

fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(fogis_calendar_sync::outbound::client(timeout).build()?)
}

/// True when `GET {base}/health` answers 200 within `timeout`.
pub async fn healthy(base: &str, timeout: Duration) -> bool {
    let Ok(http) = client(timeout) else {
        return false;
    };
    match http.get(format!("{base}/health")).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Fetches `/health` and `/redis-status`.
pub async fn fetch_status(base: &str) -> anyhow::Result<(Value, Value)> {
    use anyhow::Context;
    let http = client(Duration::from_secs(5))?;
    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .with_context(|| format!("no service answers at {base}"))?
        .json()
        .await?;
    let redis: Value = http
        .get(format!("{base}/redis-status"))
        .send()
        .await?
        .json()
        .await?;
    Ok((health, redis))
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "never".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A readable summary of a service's health and Redis status.
pub fn render_status(base: &str, health: &Value, redis: &Value) -> String {
    let rs = &redis["redis_status"];
    let stats = &redis["stats"];
    let connection = if rs["enabled"] != Value::Bool(true) {
        "disabled (HTTP only)".to_string()
    } else if rs["connected"] == Value::Bool(true) {
        format!(
            "connected since {}",
            text(&health["redis"]["connected_since"])
        )
    } else {
        format!(
            "NOT connected (since {}); last error: {}",
            text(&health["redis"]["disconnected_since"]),
            text(&stats["last_error"])
        )
    };
    let mut out = String::new();
    out.push_str(&format!(
        "service     {base}: {}\n",
        text(&health["status"])
    ));
    out.push_str(&format!("version     {}\n", text(&health["version"])));
    out.push_str(&format!("mode        {}\n", text(&health["mode"])));
    out.push_str(&format!(
        "matches     {} stored, {} in the feed\n",
        health["matches"], health["events_in_feed"]
    ));
    out.push_str(&format!("redis       {connection}\n"));
    let pull = &health["pull"];
    if pull["enabled"] == Value::Bool(true) {
        let failing = match pull["consecutive_failures"].as_u64() {
            Some(n) if n > 0 => format!(
                "; FAILING since {} ({n} attempts): {}",
                text(&pull["failing_since"]),
                text(&pull["last_detail"])
            ),
            _ => String::new(),
        };
        out.push_str(&format!(
            "pull        {}: last {} at {} ({}), next {}{failing}\n",
            text(&pull["source"]),
            text(&pull["last_result"]),
            text(&pull["last_pull_at"]),
            text(&pull["last_trigger"]),
            match &pull["next_pull_at"] {
                Value::Null => "on the next event".to_string(),
                t => text(t),
            }
        ));
    }
    out.push_str(&format!(
        "messages    {} received, {} applied, {} duplicate, {} rejected\n",
        stats["messages_received"],
        stats["messages_applied"],
        stats["messages_duplicate"],
        stats["messages_rejected"]
    ));
    out.push_str(&format!(
        "reconnects  {}\nlast sync   {}\nlast message {}\n",
        stats["reconnect_count"],
        text(&redis["last_sync_time"]),
        text(&stats["last_message_at"])
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_pull_source_has_a_line_and_says_when_it_fails() {
        let health = json!({"status": "ok", "pull": {"enabled": true, "source": "http://api:8080",
            "last_result": "failed", "last_pull_at": "T1", "last_trigger": "interval",
            "next_pull_at": null, "consecutive_failures": 3, "failing_since": "T0",
            "last_detail": "HTTP 500: down"}});
        let out = render_status("http://x", &health, &json!({}));
        assert!(out.contains("pull        http://api:8080: last failed at T1 (interval), next on the next event; FAILING since T0 (3 attempts): HTTP 500: down\n"), "{out}");
        let off = render_status("http://x", &json!({"pull": {"enabled": false}}), &json!({}));
        assert!(!off.contains("pull "), "{off}");
    }

    #[test]
    fn base_url_points_at_this_machine_for_wildcards() {
        let p = |s: &str| {
            s.parse::<std::net::SocketAddr>()
                .unwrap_or_else(|_| unreachable!())
        };
        assert_eq!(base_url(&p("0.0.0.0:9083")), "http://127.0.0.1:9083");
        assert_eq!(base_url(&p("127.0.0.1:80")), "http://127.0.0.1:80");
        assert_eq!(base_url(&p("[::]:9083")), "http://[::1]:9083");
    }

    #[test]
    fn status_says_plainly_when_redis_is_away() {
        let health = json!({"status": "ok", "version": "0.1.0", "mode": "degraded", "matches": 3,
            "events_in_feed": 3, "redis": {"disconnected_since": "2026-01-01T00:00:00Z"}});
        let redis = json!({"redis_status": {"enabled": true, "connected": false},
            "stats": {"last_error": "connection refused", "messages_received": 4,
            "messages_applied": 2, "messages_duplicate": 1, "messages_rejected": 1,
            "reconnect_count": 0, "last_message_at": null}, "last_sync_time": null});
        let text = render_status("http://x", &health, &redis);
        assert!(text.contains("redis       NOT connected (since 2026-01-01T00:00:00Z); last error: connection refused"), "{text}");
        assert!(
            text.contains("messages    4 received, 2 applied, 1 duplicate, 1 rejected"),
            "{text}"
        );
        assert!(
            text.contains("matches     3 stored, 3 in the feed"),
            "{text}"
        );
    }
}
