//! Property tests: whatever entries or properties go in come back out, for both versions, and
//! no input makes the parser panic.

mod autocomplete_fixtures;
use autocomplete_fixtures as common;

use std::collections::HashMap;

use cutover::connectors::autocomplete::merge::{identity, merge_rows};
use cutover::connectors::autocomplete::{
    parse, tags, AutocompleteFile, Entry, Property, Row, ValueData,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,40}"
}

fn entry_strategy() -> impl Strategy<Value = Entry> {
    let smtp = (
        name(),
        "[a-z0-9.]{1,16}@[a-z]{1,10}\\.(com|org|co\\.uk)",
        any::<i32>(),
    )
        .prop_map(|(display, address, weight)| {
            common::entry(&display, "SMTP", &address, Some(&address), weight)
        });
    let exchange = (
        name(),
        "/o=[A-Za-z ]{1,12}/ou=[A-Za-z ()]{1,20}/cn=Recipients/cn=[a-z0-9-]{1,20}",
        proptest::option::of("[a-z]{1,10}@[a-z]{1,8}\\.com"),
        any::<i32>(),
    )
        .prop_map(|(display, dn, cached, weight)| {
            common::entry(&display, "EX", &dn, cached.as_deref(), weight)
        });
    let other = (name(), "(FAX|X400|MAPIPDL)", "[ -~]{0,30}", any::<i32>()).prop_map(
        |(display, kind, address, weight)| common::entry(&display, &kind, &address, None, weight),
    );
    prop_oneof![4 => smtp, 2 => exchange, 1 => other]
}

fn version() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        Just((tags::MAJOR_NK2, tags::MINOR_NK2)),
        Just((tags::MAJOR_STREAM, tags::MINOR_STREAM))
    ]
}

/// Tags of every type whose layout the format defines, with arbitrary ids.
fn property_strategy() -> impl Strategy<Value = Property> {
    let types = prop::sample::select(vec![
        0x0000u16, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007, 0x000A, 0x000B, 0x0014,
        0x0040, 0x001E, 0x001F, 0x0102, 0x0048, 0x101E, 0x101F, 0x1102, 0x1002, 0x1003, 0x1004,
        0x1005, 0x1006, 0x1007, 0x1014, 0x1040, 0x1048,
    ]);
    (
        any::<u16>(),
        types,
        any::<[u8; 4]>(),
        any::<[u8; 8]>(),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..4),
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(id, property_type, reserved, union, bytes, values, guid)| {
                let data = match tags::layout_of(property_type) {
                    Some(tags::Layout::Static) => ValueData::None,
                    Some(tags::Layout::Counted) => ValueData::Counted(bytes.into()),
                    Some(tags::Layout::Guid) => ValueData::Guid(guid),
                    Some(tags::Layout::MultiCounted) => {
                        ValueData::MultiCounted(values.into_iter().map(Into::into).collect())
                    }
                    Some(tags::Layout::MultiFixed(size)) => {
                        let whole = bytes.len() - bytes.len() % size;
                        ValueData::MultiFixed(bytes[..whole].into())
                    }
                    None => unreachable!("only defined types are sampled"),
                };
                Property::from_parts(tags::tag(id, property_type), reserved, union, data)
                    .expect("data fits type")
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn entries_survive_write_then_parse(
        entries in prop::collection::vec(entry_strategy(), 0..20),
        (major, minor) in version(),
        footer in any::<[u8; 8]>(),
    ) {
        let mut file = AutocompleteFile::new(major, minor);
        file.rows = entries.iter().map(Row::from_entry).collect();
        file.footer = footer;
        let bytes = file.to_bytes().expect("known version");
        let parsed = parse(&bytes).expect("own output parses");
        prop_assert_eq!((parsed.major_version, parsed.minor_version), (major, minor));
        let back: Vec<Entry> = parsed.rows.iter().map(Row::entry).collect();
        prop_assert_eq!(back, entries);
        prop_assert_eq!(parsed, file);
    }

    #[test]
    fn raw_properties_and_opaque_parts_survive_write_then_parse(
        rows in prop::collection::vec(prop::collection::vec(property_strategy(), 0..8), 0..6),
        (major, _) in version(),
        minor in any::<u32>(),
        extra_info in prop::collection::vec(any::<u8>(), 0..16),
        footer in any::<[u8; 8]>(),
        trailing in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let file = AutocompleteFile {
            major_version: major,
            minor_version: minor,
            rows: rows.into_iter().map(|properties| Row { properties }).collect(),
            extra_info,
            footer,
            trailing,
        };
        let bytes = file.to_bytes().expect("known version");
        let parsed = parse(&bytes).expect("own output parses");
        prop_assert_eq!(&parsed, &file);
        prop_assert_eq!(parsed.to_bytes().expect("writes"), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(file) = parse(&bytes) {
            prop_assert_eq!(file.to_bytes().expect("parsed major is known"), bytes);
        }
    }

    #[test]
    fn damaged_real_shaped_files_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        use_stream in any::<bool>(),
    ) {
        let mut bytes = if use_stream { common::writer_made_stream() } else { common::writer_made_nk2() };
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(file) = parse(&bytes) {
            let _ = file.rows.iter().map(Row::entry).count();
            prop_assert_eq!(file.to_bytes().expect("parsed major is known"), bytes);
        }
    }

    #[test]
    fn merge_keeps_one_row_per_recipient_with_its_highest_weight(
        entries in prop::collection::vec(entry_strategy(), 0..30),
    ) {
        let rows: Vec<Row> = entries.iter().map(Row::from_entry).collect();
        let mut best: HashMap<String, i32> = HashMap::new();
        let mut anonymous = 0;
        for row in &rows {
            match identity(row) {
                Some(key) => {
                    let weight = best.entry(key).or_insert(i32::MIN);
                    *weight = (*weight).max(row.weight());
                }
                None => anonymous += 1,
            }
        }
        let merged = merge_rows(rows);
        prop_assert_eq!(merged.len(), best.len() + anonymous);
        for row in &merged {
            if let Some(key) = identity(row) {
                prop_assert_eq!(Some(&row.weight()), best.get(&key));
            }
        }
        prop_assert!(merged.windows(2).all(|pair| pair[0].weight() >= pair[1].weight()));
    }
}
