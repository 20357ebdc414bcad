//! Parse speed of a 10,000-row v12 stream made with cutover's writer (target: under 10 ms in
//! release). Plain `std::time`; prints figures, asserts nothing.
//!
//! Run: `cargo bench --bench autocomplete`

use std::hint::black_box;
use std::time::{Duration, Instant};

use cutover::connectors::autocomplete::{
    parse, parse_owned, tags, AutocompleteFile, Entry, Property, Row,
};

const ROWS: usize = 10_000;
const RUNS: usize = 30;

/// Rows shaped like Outlook's: the ten properties cutover writes plus the flags and recipient
/// copies Outlook 2010 keeps, so the byte count per row is realistic (~600 bytes).
fn stream() -> Vec<u8> {
    let mut file = AutocompleteFile::new(tags::MAJOR_STREAM, tags::MINOR_STREAM);
    file.rows = (0..ROWS)
        .map(|index| {
            let entry = if index % 5 == 0 {
                Entry {
                    display_name: format!("Colleague Number {index}"),
                    address_type: "EX".into(),
                    email_address: format!("/o=Acme/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=user{index}"),
                    smtp_address: None,
                    weight: (ROWS - index) as i32,
                }
            } else {
                let address = format!("person.{index}@example{}.com", index % 97);
                Entry {
                    display_name: format!("Person {index} ({address})"),
                    address_type: "SMTP".into(),
                    email_address: address.clone(),
                    smtp_address: Some(address),
                    weight: (ROWS - index) as i32,
                }
            };
            let mut row = Row::from_entry(&entry);
            row.properties.push(Property::unicode(tags::PID_DROPDOWN_DISPLAY_NAME, &entry.display_name));
            row.properties.push(Property::long(0x5FFD, 1));
            row.properties.push(Property::long(0x5FDF, 0));
            row
        })
        .collect();
    file.to_bytes().expect("v12 is a known version")
}

fn summarize(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{label:<28} min {:>8.3} ms   median {:>8.3} ms   max {:>8.3} ms",
        times[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}

fn main() {
    let started = Instant::now();
    let bytes = stream();
    println!(
        "generated {ROWS} rows, {} bytes ({:.1} KiB) in {:.1} ms",
        bytes.len(),
        bytes.len() as f64 / 1024.0,
        started.elapsed().as_secs_f64() * 1e3
    );

    let mut parse_times = Vec::with_capacity(RUNS);
    let mut owned_times = Vec::with_capacity(RUNS);
    let mut view_times = Vec::with_capacity(RUNS);
    let mut write_times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let file = parse(black_box(&bytes)).expect("own output parses");
        parse_times.push(start.elapsed());
        assert_eq!(file.rows.len(), ROWS);

        let buffer = bytes.clone();
        let start = Instant::now();
        let owned = parse_owned(black_box(buffer)).expect("own output parses");
        owned_times.push(start.elapsed());
        assert_eq!(owned.rows.len(), ROWS);
        drop(owned);

        let start = Instant::now();
        let entries: Vec<Entry> = file.rows.iter().map(Row::entry).collect();
        view_times.push(start.elapsed());
        black_box(entries);

        let start = Instant::now();
        let written = file.to_bytes().expect("writes");
        write_times.push(start.elapsed());
        assert_eq!(written.len(), bytes.len());
    }
    summarize("parse(&[u8]) incl. copy", parse_times);
    summarize("parse_owned(Vec) as read_file", owned_times);
    summarize("row -> entry view", view_times);
    summarize("write", write_times);
}
