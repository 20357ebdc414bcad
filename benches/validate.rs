//! Validate time of a generated 1,000-user plan (target: < 100 ms in release).
//! Run: `cargo bench --bench validate`. Prints figures; asserts nothing about time.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cutover::plan::{load_str, Options};

fn generate(users: usize) -> String {
    let mut plan = String::from(
        "version: 1\nname: bench\ndomain: bench.example\ntarget:\n  kind: m365\n  tenant: bench.onmicrosoft.com\n  usage_location: GB\n  auth: { client_id: app, client_secret: { env: SECRET } }\nsources:\n  imap: { kind: imap, host: imap.bench.example }\n  pop: { kind: pop3, host: pop.bench.example, tls: starttls }\nusers:\n",
    );
    for i in 0..users {
        let _ = write!(
            plan,
            "  - email: user{i}@bench.example\n    display_name: User Number {i}\n    licence: O365_BUSINESS_PREMIUM\n    aliases: [alias{i}@bench.example]\n    migrate:\n      - from: imap\n        login: user{i}\n        password: {{ env: PASS_{i} }}\n        folders: {{ exclude: [\"Junk*\", \"Spam/**\"], map: {{ INBOX.Sent: Sent Items }} }}\n      - from: pop\n        login: user{i}\n        password: {{ env: PASS_{i} }}\n"
        );
    }
    plan.push_str("dns:\n  provider: manual\n  records:\n    - { name: \"@\", type: MX, value: bench-example.mail.protection.outlook.com, priority: 0 }\n  lower_ttl: { to: 300, ahead: 24h }\nmanual:\n  sign-off: { instructions: Client signs off., after: [\"verify.*\"] }\n");
    plan
}

fn main() {
    let users = 1000;
    let text = generate(users);
    let dir = std::env::temp_dir();
    let mut times: Vec<Duration> = Vec::new();
    let mut steps = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let loaded = load_str(text.clone(), "bench.yaml", &dir, Options::default());
        times.push(started.elapsed());
        assert_eq!(
            loaded.report.errors(),
            0,
            "{:?}",
            loaded.report.diagnostics.first()
        );
        steps = loaded.graph.map_or(0, |g| g.len());
    }
    times.sort();
    println!(
        "validate {users}-user plan ({} KiB, {steps} steps): median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs",
        text.len() / 1024,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}
