//! Writer-made PSTs shaped like the real files in `$CUTOVER_REAL_FIXTURES` (see MANIFEST.md
//! there): a Portuguese store, a CJK folder name, nested embedded messages, a distribution
//! list with three members, a recurring appointment, an autocomplete stream in the Inbox's
//! associated messages, a draft, a message without a sub-node tree.
#![allow(dead_code)]

#[path = "../support/pst_writer.rs"]
pub mod pst_writer;

use std::path::{Path, PathBuf};

use pst_writer::*;

/// The folder of real files, when CI provides it (a set variable pointing at a missing file
/// fails loudly).
pub fn real_folder() -> Option<PathBuf> {
    let folder = PathBuf::from(std::env::var_os("CUTOVER_REAL_FIXTURES")?);
    assert!(
        folder.join("MANIFEST.md").is_file(),
        "CUTOVER_REAL_FIXTURES is set but {} has no MANIFEST.md",
        folder.display()
    );
    Some(folder)
}

pub fn real_psts() -> Vec<PathBuf> {
    let Some(folder) = real_folder() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("read the real fixtures folder")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pst"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .pst in {}", folder.display());
    files
}

pub const T0: i64 = 1_589_224_672; // 2020-05-11 19:17:52 UTC

pub fn mail(
    subject: &str,
    from: (&str, &str),
    to: &[(&str, &str)],
    body: &str,
    at: i64,
) -> MessageSpec {
    let mut props = vec![
        unicode(0x001A, "IPM.Note"),
        unicode(0x0037, subject),
        unicode(0x0042, from.0),
        unicode(0x0064, "SMTP"),
        unicode(0x0065, from.1),
        unicode(0x0C1A, from.0),
        unicode(0x0C1E, "SMTP"),
        unicode(0x0C1F, from.1),
        time(0x0039, at),
        time(0x0E06, at + 60),
        int32(0x0E07, 0x01),
        int32(0x0E08, 1000),
        unicode(0x1000, body),
    ];
    let local: String = subject
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    props.push(unicode(0x1035, &format!("<m{local}-{at}@test.example>")));
    MessageSpec {
        props,
        recipients: to
            .iter()
            .map(|(name, address)| {
                vec![
                    int32(0x0C15, 1),
                    unicode(0x3001, name),
                    unicode(0x3002, "SMTP"),
                    unicode(0x3003, address),
                    unicode(0x39FE, address),
                ]
            })
            .collect(),
        attachments: Vec::new(),
        no_subnodes: false,
    }
}

pub fn file(name: &str, bytes: &[u8], mime: &str) -> AttachmentSpec {
    AttachmentSpec {
        props: vec![
            unicode(0x3707, name),
            unicode(0x3704, name),
            unicode(0x370E, mime),
            binary(0x3701, bytes),
            int32(0x0E20, bytes.len() as i32),
        ],
        embedded: None,
    }
}

pub fn embedded(message: MessageSpec, name: &str) -> AttachmentSpec {
    AttachmentSpec {
        props: vec![unicode(0x3001, name)],
        embedded: Some(Box::new(message)),
    }
}

/// Bytes that look like an image and do not compress to nothing.
pub fn pseudo_image(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = b"\xFF\xD8\xFF\xE0".to_vec();
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
    out.truncate(len);
    out
}

/// The rich sample: every feature the reader and converter handle.
pub fn sample(ansi: bool, crypt: u8) -> PstSpec {
    let mut spec = PstSpec {
        ansi,
        crypt,
        store_name: "cmachado@as.pt".into(),
        password: true,
        ..PstSpec::default()
    };
    let email1 = spec.named_id(PSETID_ADDRESS, 0x8083);
    let email1_name = spec.named_id(PSETID_ADDRESS, 0x8080);
    let email1_type = spec.named_id(PSETID_ADDRESS, 0x8082);
    let one_offs = spec.named_id(PSETID_ADDRESS, 0x8054);
    let list_name = spec.named_id(PSETID_ADDRESS, 0x8053);
    let start = spec.named_id(PSETID_APPOINTMENT, 0x820D);
    let end = spec.named_id(PSETID_APPOINTMENT, 0x820E);
    let location = spec.named_id(PSETID_APPOINTMENT, 0x8208);
    let recur = spec.named_id(PSETID_APPOINTMENT, 0x8216);

    // Received mail: transport headers kept, HTML body, a large attachment (data tree).
    let mut received = mail(
        "Teste 23:34",
        ("abcd", "abcd@as.pt"),
        &[("Carlos Machado", "cmachado@as.pt")],
        "Teste 23:34\r\n",
        T0,
    );
    received.props.push(unicode(
        0x007D,
        "Return-Path: <abcd@as.pt>\r\nReceived: from mx.as.pt\r\n\tby machbox (Postfix)\r\nFrom: abcd <abcd@as.pt>\r\nTo: cmachado@as.pt\r\nSubject: Teste 23:34\r\nDate: Mon, 11 May 2020 19:17:52 +0000\r\nMessage-ID: <teste-2334@as.pt>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"iso-8859-1\"\r\n\r\n",
    ));
    received.props.push(binary(
        0x1013,
        b"<html><body><p>Teste 23:34</p><img src=\"cid:logo@x\"></body></html>",
    ));
    received.attachments.push(file(
        "relatorio.pdf",
        &pseudo_image(20_000, 1),
        "application/pdf",
    ));
    let mut logo = file("logo.jpg", &pseudo_image(700, 2), "image/jpeg");
    logo.props.push(unicode(0x3712, "logo@x"));
    received.attachments.push(logo);

    // Built from properties: Cc, flagged, RTF-only body, subject prefix marker.
    let mut flagged = mail(
        "\u{1}\u{4}RE: Relatório",
        ("Ana Lima", "ana@as.pt"),
        &[("Carlos Machado", "cmachado@as.pt")],
        "",
        T0 + 3600,
    );
    flagged.props.retain(|p| p.id != 0x1000 && p.id != 0x0E07);
    flagged.props.push(int32(0x0E07, 0));
    flagged.props.push(int32(0x1090, 2));
    flagged.props.push(binary(
        0x1009,
        &cutover::connectors::pst::rtf::compress_for_tests(
            b"{\\rtf1\\ansi Ol\\'e1 {\\b mundo}}",
            true,
        ),
    ));
    flagged.props.push(unicode(0x1042, "<teste-2334@as.pt>"));
    flagged.recipients.push(vec![
        int32(0x0C15, 2),
        unicode(0x3001, "Rui"),
        unicode(0x3002, "EX"),
        unicode(0x3003, "/o=Org/ou=Admin/cn=Recipients/cn=rui"),
    ]);

    // Four levels of embedded messages.
    let mut inner = mail(
        "level 4",
        ("d", "d@as.pt"),
        &[("e", "e@as.pt")],
        "deepest",
        T0 - 400,
    );
    inner
        .attachments
        .push(file("deep.txt", b"deep text\r\n", "text/plain"));
    for level in (1..=3).rev() {
        let mut outer = mail(
            &format!("level {level}"),
            ("d", "d@as.pt"),
            &[("e", "e@as.pt")],
            &format!("level {level} body"),
            T0 - 100 * level,
        );
        outer
            .attachments
            .push(embedded(inner, &format!("level {}", level + 1)));
        inner = outer;
    }

    // A message with no sub-node tree at all.
    let mut bare = mail("sem anexos", ("abcd", "abcd@as.pt"), &[], "bare", T0 + 7200);
    bare.no_subnodes = true;

    let mut draft = mail(
        "rascunho",
        ("Carlos Machado", "cmachado@as.pt"),
        &[("abcd", "abcd@as.pt")],
        "nunca enviado",
        T0 + 100,
    );
    draft
        .props
        .retain(|p| p.id != 0x0E07 && p.id != 0x0E06 && p.id != 0x0039 && p.id != 0x1035);
    draft.props.push(int32(0x0E07, 0x09));
    draft.props.push(time(0x3007, T0 + 100));

    let autocomplete = MessageSpec {
        props: vec![
            unicode(0x001A, "IPM.Configuration.Autocomplete"),
            binary(0x7C09, b"autocomplete stream bytes"),
        ],
        no_subnodes: true,
        ..MessageSpec::default()
    };

    let contact = MessageSpec {
        props: vec![
            unicode(0x001A, "IPM.Contact"),
            unicode(0x3001, "Doe, John"),
            unicode(0x3A06, "John"),
            unicode(0x3A11, "Doe"),
            unicode(0x3A16, "Acme; Lda"),
            unicode(0x3A08, "+351 21 000 0000"),
            time(0x3A42, 315_532_800 - 3600),
            unicode(email1, "john@example.com"),
            unicode(email1_name, "John Doe (john@example.com)"),
            unicode(email1_type, "SMTP"),
        ],
        no_subnodes: true,
        ..MessageSpec::default()
    };
    let one_off = |name: &str, address: &str| -> Vec<u8> {
        let mut e = vec![0u8; 4];
        e.extend_from_slice(&[
            0x81, 0x2B, 0x1F, 0xA4, 0xBE, 0xA3, 0x10, 0x19, 0x9D, 0x6E, 0x00, 0xDD, 0x01, 0x0F,
            0x54, 0x02,
        ]);
        e.extend_from_slice(&[0, 0, 0x00, 0x80]);
        for field in [name, "SMTP", address] {
            e.extend(field.encode_utf16().flat_map(u16::to_le_bytes));
            e.extend_from_slice(&[0, 0]);
        }
        e
    };
    let list = MessageSpec {
        props: vec![
            unicode(0x001A, "IPM.DistList"),
            unicode(0x3001, "dist list"),
            unicode(list_name, "dist list"),
            mv_binary(
                one_offs,
                &[
                    one_off("contact1", "contact1@rjohnson.id.au"),
                    one_off("dist1", "dist1@rjohnson.id.au"),
                    one_off("dist2", "dist2@rjohnson.id.au"),
                ],
            ),
        ],
        no_subnodes: true,
        ..MessageSpec::default()
    };
    // Weekly on Monday and Wednesday, 10 occurrences, one deleted.
    let mut blob = Vec::new();
    for v in [0x3004u16, 0x3004, 0x200B, 1, 0] {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    let monday = ((T0 / 86_400 + 134_774) as u32) * 1440;
    for v in [
        monday,
        1,
        0,
        0b0000_1010,
        0x2022,
        10,
        0,
        1,
        monday + 7 * 1440,
        0,
        monday,
        monday + 30 * 1440,
    ] {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    let mut meeting = MessageSpec {
        props: vec![
            unicode(0x001A, "IPM.Appointment"),
            unicode(0x0037, "Reunião semanal"),
            time(start, T0),
            time(end, T0 + 1800),
            unicode(location, "Sala 2"),
            binary(recur, &blob),
            unicode(0x0042, "Carlos Machado"),
            unicode(0x0064, "SMTP"),
            unicode(0x0065, "cmachado@as.pt"),
            time(0x3008, T0 - 86_400),
        ],
        ..MessageSpec::default()
    };
    meeting.recipients.push(vec![
        int32(0x0C15, 1),
        unicode(0x3001, "Ana Lima"),
        unicode(0x3002, "SMTP"),
        unicode(0x3003, "ana@as.pt"),
    ]);
    meeting.recipients.push(vec![
        int32(0x0C15, 3),
        unicode(0x3001, "Sala 2"),
        unicode(0x3002, "SMTP"),
        unicode(0x3003, "sala2@as.pt"),
    ]);

    let mut sent_mail = mail(
        "enviado",
        ("Carlos Machado", "cmachado@as.pt"),
        &[("abcd", "abcd@as.pt")],
        "ok",
        T0 + 50,
    );
    sent_mail.attachments.push(embedded(
        mail("reencaminhado", ("x", "x@as.pt"), &[], "fwd", T0 - 10),
        "reencaminhado",
    ));

    spec.folders = vec![
        FolderSpec {
            name: "Caixa de Entrada".into(),
            container_class: Some("IPF.Note".into()),
            role: Some("inbox"),
            messages: vec![received, flagged, inner, bare],
            associated: vec![autocomplete],
            children: vec![FolderSpec {
                name: "Top Folder".into(),
                container_class: Some("IPF.Note".into()),
                children: vec![FolderSpec {
                    name: "Child Folder With Space at the End ".into(),
                    container_class: Some("IPF.Note".into()),
                    messages: vec![mail("filho", ("abcd", "abcd@as.pt"), &[], "x", T0 + 10)],
                    ..FolderSpec::default()
                }],
                ..FolderSpec::default()
            }],
        },
        FolderSpec {
            name: "Itens enviados".into(),
            container_class: Some("IPF.Note".into()),
            role: Some("sent"),
            messages: vec![sent_mail],
            ..FolderSpec::default()
        },
        FolderSpec {
            name: "Rascunhos".into(),
            container_class: Some("IPF.Note".into()),
            role: Some("drafts"),
            messages: vec![draft],
            ..FolderSpec::default()
        },
        FolderSpec {
            name: "Itens eliminados".into(),
            container_class: Some("IPF.Note".into()),
            role: Some("deleted"),
            ..FolderSpec::default()
        },
        FolderSpec {
            name: "E-mail de Lixo".into(),
            container_class: Some("IPF.Note".into()),
            role: Some("junk"),
            ..FolderSpec::default()
        },
        FolderSpec {
            name: "Contactos".into(),
            container_class: Some("IPF.Contact".into()),
            role: Some("contacts"),
            messages: vec![contact, list],
            ..FolderSpec::default()
        },
        FolderSpec {
            name: "Calendário".into(),
            container_class: Some("IPF.Appointment".into()),
            role: Some("calendar"),
            messages: vec![meeting],
            ..FolderSpec::default()
        },
        FolderSpec {
            name: "收件箱".into(),
            container_class: Some("IPF.Note".into()),
            messages: vec![mail("中文", ("李", "li@example.cn"), &[], "你好", T0 + 20)],
            ..FolderSpec::default()
        },
    ];
    if ansi {
        // ANSI files hold 8-bit strings: rewrite every Unicode property as Windows-1252.
        to_ansi(&mut spec);
    }
    spec
}

fn to_ansi(spec: &mut PstSpec) {
    fn message(m: &mut MessageSpec) {
        fix(&mut m.props);
        m.props.push(int32(0x3FFD, 1252));
        m.recipients.iter_mut().for_each(|r| fix(r));
        for a in &mut m.attachments {
            fix(&mut a.props);
            if let Some(e) = &mut a.embedded {
                message(e);
            }
        }
    }
    fn fix(props: &mut [Prop]) {
        for p in props.iter_mut() {
            if p.kind == 0x001F {
                let units: Vec<u16> = p
                    .value
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let text = String::from_utf16_lossy(&units);
                let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
                p.kind = 0x001E;
                p.value = bytes.into_owned();
            }
        }
    }
    fn folder(f: &mut FolderSpec) {
        f.messages.iter_mut().for_each(message);
        f.associated.iter_mut().for_each(message);
        f.children.iter_mut().for_each(folder);
        if f.name == "收件箱" {
            f.name = "Caixa 2".into();
            for m in &mut f.messages {
                for p in &mut m.props {
                    if p.id == 0x0037 {
                        p.value = b"chines".to_vec();
                    }
                }
            }
        }
    }
    spec.folders.iter_mut().for_each(folder);
}

/// Writes `spec` into `dir` as `name` and returns the path.
pub fn write_to(dir: &Path, name: &str, spec: &PstSpec) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pst_writer::write(spec)).expect("write test PST");
    path
}

/// The writer-made twins of the real fixtures, in a temp dir: Unicode and ANSI, each encoding.
pub fn twins(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ansi in [false, true] {
        for crypt in [0u8, 1, 2] {
            let name = format!(
                "sample-{}-{crypt}.pst",
                if ansi { "ansi" } else { "unicode" }
            );
            out.push(write_to(dir, &name, &sample(ansi, crypt)));
        }
    }
    out
}

/// A mail carrying `attachment_len` bytes of attachment data (a PDF-like binary), as Outlook
/// stores it: the data in a sub-node data tree, PidTagMessageSize counting it.
pub fn mail_with_attachment(
    subject: &str,
    at: i64,
    attachment_len: usize,
    seed: u32,
) -> MessageSpec {
    let mut m = mail(
        subject,
        ("Ana Lima", "ana@as.pt"),
        &[("Carlos Machado", "cmachado@as.pt")],
        "see the attached file\r\n",
        at,
    );
    m.props.retain(|p| p.id != 0x0E08 && p.id != 0x0E07);
    m.props.push(int32(0x0E08, (attachment_len + 2_000) as i32));
    // Read, and MSGFLAG_HASATTACH as Outlook sets it.
    m.props.push(int32(0x0E07, 0x01 | 0x10));
    m.attachments.push(file(
        &format!("{subject}.pdf"),
        &pseudo_image(attachment_len, seed),
        "application/pdf",
    ));
    m
}

/// A mail carrying `count` attachments of `each` bytes: as many photos from a phone, none
/// large, together large.
pub fn mail_with_attachments(subject: &str, at: i64, count: usize, each: usize) -> MessageSpec {
    let mut m = mail_with_attachment(subject, at, each, 0);
    for i in 1..count {
        m.attachments.push(file(
            &format!("photo {i}.jpg"),
            &pseudo_image(each, i as u32),
            "image/jpeg",
        ));
    }
    m.props.retain(|p| p.id != 0x0E08);
    m.props.push(int32(0x0E08, (count * each + 2_000) as i32));
    m
}
