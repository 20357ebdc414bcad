//! The `autocomplete.<user>` step through `plan`/`apply`: outputs written once, recorded in
//! state, unchanged on the next plan, rerun when a cache changes; EX entries of plan users
//! become X500 proxies.

mod common;

use common::run;
use cutover::cli::ExitCode;

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let caches = dir.path().join("caches");
    let wrote = run(&["demo", "seed-samples", "--dir", caches.to_str().unwrap()]);
    assert_eq!(wrote.code, ExitCode::Ok, "{}", wrote.stderr);
    let mbox = dir.path().join("empty.mbox");
    std::fs::write(&mbox, b"").unwrap();
    let plan = "version: 1\nname: ac\ndomain: acme.co.uk\ntarget: { kind: maildir, path: out }\nsources:\n  pc: { kind: mbox }\nusers:\n  - email: alice@acme.co.uk\n    display_name: Alice Smith\n    migrate: [{ from: pc, file: empty.mbox }]\n    autocomplete: { files: [caches/alice.nk2, caches/Stream_Autocomplete_0_5A3F6E1B9C2D4E8F0A1B2C3D4E5F6A7B.dat] }\n  - email: bob@acme.co.uk\n    display_name: Bob Patel\n";
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

#[test]
fn autocomplete_step_writes_outputs_once_and_reruns_on_changed_input() {
    let (dir, plan) = setup();
    let preview = run(&["plan", &plan]);
    assert!(
        preview.stdout.contains("+ autocomplete.alice"),
        "{}",
        preview.stdout
    );
    let applied = run(&["apply", "--yes", "--progress", "plain", &plan]);
    assert_eq!(
        applied.code,
        ExitCode::Ok,
        "{}\n{}",
        applied.stdout,
        applied.stderr
    );
    let out = dir.path().join("cutover-out/autocomplete");
    for name in [
        "alice.autocomplete.nk2",
        "alice.Stream_Autocomplete.dat",
        "alice.contacts.csv",
        "alice.contacts.vcf",
        "alice.x500-proxies.ps1",
        "alice.x500-proxies.csv",
    ] {
        assert!(out.join(name).is_file(), "{name} written");
    }
    // The EX entry for Bob (an old Exchange legacyDN) resolved to the plan user and became an
    // X500 proxy on his new mailbox.
    let ps1 = std::fs::read_to_string(out.join("alice.x500-proxies.ps1")).unwrap();
    assert!(
        ps1.contains("bob@acme.co.uk") && ps1.contains("X500:/o=ACME"),
        "{ps1}"
    );
    // Recorded for the report too: an m365 target's report puts it into the plan's one
    // Exchange Online script.
    {
        use cutover::connectors::graph::ExchangeChange;
        use cutover::state::{SqliteStore, StateStore};
        let state = SqliteStore::open(dir.path().join(".cutover/ac.db")).unwrap();
        let changes =
            ExchangeChange::from_checkpoints(&state.checkpoints("autocomplete.alice").unwrap());
        assert!(
            changes.iter().any(|c| matches!(c,
                ExchangeChange::AddAddress { mailbox, address }
                    if mailbox == "bob@acme.co.uk" && address.starts_with("X500:/o=ACME"))),
            "{changes:?}"
        );
    }
    // Merged: 4 + 3 entries, Alice's own address among them.
    let merged = run(&[
        "autocomplete",
        "show",
        out.join("alice.autocomplete.nk2").to_str().unwrap(),
    ]);
    assert!(merged.stdout.contains("7 rows"), "{}", merged.stdout);

    let again = run(&["plan", &plan]);
    assert!(
        again.stdout.contains("= autocomplete.alice"),
        "{}",
        again.stdout
    );
    let before = std::fs::metadata(out.join("alice.autocomplete.nk2"))
        .unwrap()
        .modified()
        .unwrap();

    // A newer cache from another PC replaces the .nk2: the step is planned again.
    let replacement = dir.path().join("caches/alice.nk2");
    std::fs::copy(
        dir.path()
            .join("caches/Stream_Autocomplete_0_5A3F6E1B9C2D4E8F0A1B2C3D4E5F6A7B.dat"),
        &replacement,
    )
    .unwrap();
    let changed = run(&["plan", &plan]);
    assert!(
        changed.stdout.contains("~ autocomplete.alice"),
        "{}",
        changed.stdout
    );
    let reapplied = run(&["apply", "--yes", "--progress", "plain", &plan]);
    assert_eq!(reapplied.code, ExitCode::Ok, "{}", reapplied.stderr);
    let after = std::fs::metadata(out.join("alice.autocomplete.nk2"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(after >= before);
    let merged = run(&[
        "autocomplete",
        "show",
        out.join("alice.autocomplete.nk2").to_str().unwrap(),
    ]);
    assert!(merged.stdout.contains("3 rows"), "{}", merged.stdout);
    let state = run(&["state", "show", &plan, "autocomplete.alice"]);
    assert!(
        state.stdout.contains("checkpoint:  outputs ="),
        "{}",
        state.stdout
    );
}
