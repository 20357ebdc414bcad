//! Files cutover replaces (reports, saved plans) are written durably: the new content is
//! fsynced before it is renamed over the old, and the folder is fsynced after the rename, so
//! a power loss leaves the old file or the new one, never an empty one. Checked on the system
//! calls themselves (`strace`), since a test cannot pull the plug.

mod common;

use std::process::Command;

#[test]
fn a_saved_plan_is_fsynced_renamed_and_its_folder_fsynced() {
    let (dir, plan) = common::demo_copy();
    let out_dir = dir.path().join("saved");
    let saved = out_dir.join("plan.json");
    let log = dir.path().join("strace.log");
    let status = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2,close",
        ])
        .arg("-o")
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "--offline", "--out"])
        .arg(&saved)
        .arg(&plan)
        .output()
        .expect("strace runs (the tests need it: .ci/run installs it)");
    assert!(status.status.success(), "{status:?}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let tmp = out_dir.join("plan.json.tmp-cutover");
    let tmp = tmp.display().to_string();
    let find = |from: usize, what: &dyn Fn(&str) -> bool| -> Option<usize> {
        (from..lines.len()).find(|&i| what(lines[i]))
    };
    // openat(AT_FDCWD, "…/plan.json.tmp-cutover", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 3
    let open = find(0, &|l| {
        l.contains("openat(") && l.contains(&format!("\"{tmp}\""))
    })
    .unwrap_or_else(|| panic!("the temporary file is never opened:\n{calls}"));
    assert!(lines[open].contains("0600"), "{}", lines[open]);
    let fd = lines[open].rsplit("= ").next().unwrap().trim().to_owned();
    let renamed = find(open, &|l| l.contains("rename") && l.contains(&tmp))
        .unwrap_or_else(|| panic!("no rename:\n{calls}"));
    let synced = find(open, &|l| {
        l.contains(&format!("fsync({fd})")) || l.contains(&format!("fdatasync({fd})"))
    });
    assert!(
        synced.is_some_and(|s| s < renamed),
        "the file is not fsynced before the rename:\n{calls}"
    );
    // The folder: opened after the rename and fsynced.
    let folder = out_dir.display().to_string();
    let dir_open = find(renamed, &|l| {
        l.contains("openat(") && l.contains(&format!("\"{folder}\""))
    })
    .unwrap_or_else(|| panic!("the folder is never opened after the rename:\n{calls}"));
    let dir_fd = lines[dir_open]
        .rsplit("= ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        find(dir_open, &|l| l.contains(&format!("fsync({dir_fd})"))).is_some(),
        "the folder is not fsynced after the rename:\n{calls}"
    );
}
