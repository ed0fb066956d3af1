//! `GET /status`: one self-contained HTML page — no external asset, inline SVG charts, one
//! small inline script — that refreshes itself every 30 s and reads on a phone. It shows the same report
//! as `GET /v1/status`, rendered on the server, and quotes nothing secret: states, figures,
//! probe lines and alerts.

use super::report::{Health, Integration, StatusReport};
use std::fmt::Write;

/// The page refreshes itself this often (seconds).
pub const REFRESH_SECS: u32 = 30;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(h: Health) -> &'static str {
    match h {
        Health::Ok => "#1a7f37",
        Health::Unknown => "#6e7781",
        Health::Degraded => "#9a6700",
        Health::Down => "#cf222e",
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:12px;background:#f6f8fa;color:#1f2328}\
h1{font-size:20px;margin:0 0 4px}.muted{color:#656d76;font-size:13px}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px;margin-top:12px}\
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px}\
.state{display:inline-block;color:#fff;border-radius:12px;padding:1px 10px;font-weight:600;font-size:13px}\
table{border-collapse:collapse;width:100%;font-size:13px}td{padding:2px 4px;border-top:1px solid #eaeef2;vertical-align:top}\
.alert{border-left:4px solid #cf222e;background:#fff;padding:6px 10px;margin:6px 0}\
.alert.warning{border-color:#9a6700}svg{width:100%;height:auto;display:block;margin-top:6px}";

/// The one script: marks each chart with the width it was laid out at (what the browser test
/// reads back), and counts the seconds since the report was made.
const SCRIPT: &str = "<script>document.querySelectorAll('svg.chart').forEach(function(s){s.setAttribute('data-rendered',Math.round(s.getBoundingClientRect().width))});\
var t0=Date.now(),a=document.getElementById('age');if(a){setInterval(function(){a.textContent=Math.round((Date.now()-t0)/1000)+' s ago'},1000)}</script>";

/// Calls a minute over the hour (ok stacked under failed) and the p95 latency as a line.
fn chart(i: &Integration) -> String {
    let (w, h) = (300.0_f64, 80.0_f64);
    let n = i.per_minute.len().max(1) as f64;
    let bar = w / n;
    let max_calls = i
        .per_minute
        .iter()
        .map(|m| m.ok + m.failed)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_latency = i
        .per_minute
        .iter()
        .filter_map(|m| m.latency_p95_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" data-integration=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"calls a minute and p95 latency over the last hour\">",
        escape(&i.name),
        h + 14.0
    );
    let _ = write!(
        svg,
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\"/>"
    );
    let mut line = String::new();
    let mut dots = String::new();
    for (k, m) in i.per_minute.iter().enumerate() {
        let x = k as f64 * bar;
        let ok_h = m.ok as f64 / max_calls * h;
        let failed_h = m.failed as f64 / max_calls * h;
        if m.ok > 0 {
            let _ = write!(
                svg,
                "<rect class=\"ok\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{ok_h:.1}\" fill=\"#4ac26b\"/>",
                h - ok_h,
                (bar - 0.5).max(0.5)
            );
        }
        if m.failed > 0 {
            let _ = write!(
                svg,
                "<rect class=\"failed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{failed_h:.1}\" fill=\"#cf222e\"/>",
                h - ok_h - failed_h,
                (bar - 0.5).max(0.5)
            );
        }
        if let Some(l) = m.latency_p95_ms {
            let y = h - l as f64 / max_latency * (h - 4.0);
            let _ = write!(line, "{:.1},{y:.1} ", x + bar / 2.0);
            let _ = write!(
                dots,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"1.5\" fill=\"#0969da\"/>",
                x + bar / 2.0
            );
        }
    }
    if !line.is_empty() {
        let _ = write!(
            svg,
            "<polyline class=\"latency\" points=\"{}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\"/>",
            line.trim_end()
        );
    }
    svg.push_str(&dots);
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\" font-size=\"10\" fill=\"#656d76\">-60 min · bars: calls/min (max {max_calls:.0}) · line: p95 (max {max_latency:.0} ms)</text></svg>",
        h + 11.0
    );
    svg
}

fn figures_row(label: &str, f: &super::report::Figures) -> String {
    let ms = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v} ms"));
    format!(
        "<tr><td>{label}</td><td>{} calls, {} failed ({:.1} %)</td><td>p50 {} · p95 {}</td></tr>",
        f.calls,
        f.failed,
        f.error_rate * 100.0,
        ms(f.latency_p50_ms),
        ms(f.latency_p95_ms)
    )
}

fn card(i: &Integration) -> String {
    let mut c = format!(
        "<section class=\"card integration\" data-integration=\"{name}\" data-state=\"{state}\"><h2 style=\"font-size:16px;margin:0\">{name} <span class=\"state\" style=\"background:{bg}\">{state}</span></h2><div class=\"muted\">{mode} · circuit {circuit} · {reason}</div><table>",
        name = escape(&i.name),
        state = i.state.as_str(),
        bg = colour(i.state),
        mode = escape(&i.mode),
        circuit = match i.circuit {
            crate::resilience::breaker::Phase::Closed => "closed",
            crate::resilience::breaker::Phase::Open => "open",
            crate::resilience::breaker::Phase::HalfOpen => "half-open",
        },
        reason = escape(&i.reason),
    );
    c.push_str(&figures_row("5 min", &i.last_5m));
    c.push_str(&figures_row("1 h", &i.last_1h));
    let _ = write!(
        c,
        "<tr><td>last</td><td colspan=\"2\">success {} · failure {}{}</td></tr>",
        escape(i.last_success_at.as_deref().unwrap_or("–")),
        escape(i.last_failure_at.as_deref().unwrap_or("–")),
        i.last_error
            .as_deref()
            .map(|e| format!(" ({})", escape(e)))
            .unwrap_or_default()
    );
    if let Some(q) = &i.quota {
        let limit = if q.unlimited {
            "tier unlimited".to_owned()
        } else {
            q.limit
                .map_or_else(|| "tier unknown".to_owned(), |l| format!("tier {l}"))
        };
        let _ = write!(
            c,
            "<tr><td>quota</td><td colspan=\"2\">{} users in 24 h, {limit}{}</td></tr>",
            q.used_24h,
            q.used_percent
                .map(|p| format!(" ({p:.1} %)"))
                .unwrap_or_default()
        );
    }
    if let Some(enabled) = i.enabled {
        let _ = write!(
            c,
            "<tr><td>endpoint</td><td colspan=\"2\">{}</td></tr>",
            if enabled { "enabled" } else { "disabled" }
        );
    }
    for p in &i.probes {
        let _ = write!(
            c,
            "<tr class=\"probe\"><td>{}</td><td colspan=\"2\">{}: {}</td></tr>",
            escape(&p.part),
            p.verdict.as_str(),
            escape(&p.detail)
        );
    }
    c.push_str("</table>");
    c.push_str(&chart(i));
    c.push_str("</section>");
    c
}

/// The page for `report`.
pub fn render(report: &StatusReport) -> String {
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"><title>Carteiro status: {status}</title><style>{STYLE}</style></head><body><h1>Carteiro <span class=\"state\" id=\"overall\" style=\"background:{bg}\">{status}</span></h1><div class=\"muted\">{at} (<span id=\"age\">just now</span>) · refreshes every {REFRESH_SECS} s · probes every {probe} s</div>",
        status = report.status.as_str(),
        bg = colour(report.status),
        at = escape(&report.generated_at),
        probe = report.probe_interval_seconds,
    );
    if report.alerts.is_empty() {
        html.push_str("<p id=\"alerts\" class=\"muted\">No alerts.</p>");
    } else {
        html.push_str("<div id=\"alerts\">");
        for a in &report.alerts {
            let _ = write!(
                html,
                "<div class=\"alert {sev}\" data-alert=\"{code}\"><b>{code}</b> ({sev}) {subject}: {msg}</div>",
                sev = escape(&a.severity),
                code = escape(&a.code),
                subject = escape(&a.subject),
                msg = escape(&a.message)
            );
        }
        html.push_str("</div>");
    }
    html.push_str("<div class=\"grid\">");
    for i in &report.integrations {
        html.push_str(&card(i));
    }
    html.push_str("</div><section class=\"card\" style=\"margin-top:12px\"><h2 style=\"font-size:16px;margin:0\">Queues</h2><table>");
    for q in &report.queues {
        let text = match (&q.depth, &q.error) {
            (Some(d), _) => format!(
                "{} message(s), {} in flight{}",
                d.messages,
                d.in_flight,
                d.oldest_age_secs
                    .map(|a| format!(", oldest {a} s"))
                    .unwrap_or_default()
            ),
            (None, Some(e)) => format!("unknown: {e}"),
            (None, None) => "unknown".to_owned(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&q.name),
            escape(&text)
        );
    }
    html.push_str("</table></section>");
    html.push_str(SCRIPT);
    html.push_str("</body></html>");
    html
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
