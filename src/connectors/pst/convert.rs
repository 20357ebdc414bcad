//! A PST message → RFC 5322 bytes, composed with `mail-builder`.
//!
//! Received mail keeps its original headers (PidTagTransportMessageHeaders) and gets only a
//! rebuilt MIME body; everything else gets headers built from properties. The output is a
//! pure function of the PST: boundaries, Date and a missing Message-ID are derived from the
//! message's own data, never from the clock or a random source, so a rerun gives the same
//! bytes and a target's duplicate check recognises them.

use std::borrow::Cow;
use std::collections::HashMap;

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::{MessageBuilder, Writer};
use sha2::{Digest, Sha256};

use super::messaging::{binary, int, text, time, Attachment, Item};
use super::props::{id, PropValue};
use super::rtf;
use super::strings::encoding_for_code_page;
use super::template::{Holes, Template, TemplateWriter};

/// Caller-supplied knowledge the PST lacks.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// legacyExchangeDN (case-insensitive) → SMTP address, e.g. from the plan's users, for
    /// senders and recipients stored only as Exchange (EX) addresses.
    pub ex_to_smtp: HashMap<String, String>,
}

impl ConvertOptions {
    pub fn with_ex_map(map: impl IntoIterator<Item = (String, String)>) -> Self {
        ConvertOptions {
            ex_to_smtp: map
                .into_iter()
                .map(|(dn, smtp)| (dn.to_ascii_lowercase(), smtp))
                .collect(),
        }
    }
}

/// What conversion needs besides the item.
pub(crate) struct Context<'a> {
    pub store_code_page: Option<u32>,
    pub store_record_key: &'a [u8],
    pub options: &'a ConvertOptions,
}

/// Converts an item to RFC 5322 bytes, as a [`Template`]: large attachment data stays in the
/// file until the message is written out. `seed` names the item uniquely within the store
/// (its node id path), for derived boundaries and Message-IDs. Notes about what could not be
/// read or carried over (embedded messages' included) go to `notes`.
pub(crate) fn to_rfc5322(
    item: &Item,
    ctx: &Context<'_>,
    seed: &str,
    notes: &mut Vec<String>,
) -> Template {
    compose(item, ctx, seed, notes, true)
}

/// The header section [`to_rfc5322`] writes, with an empty body: the same Message-ID, Date
/// and Subject fields (the message's identity) without decoding bodies or attachments.
pub(crate) fn header_section(item: &Item, ctx: &Context<'_>, seed: &str) -> Vec<u8> {
    compose(item, ctx, seed, &mut Vec::new(), false)
        .into_plain()
        .unwrap_or_default()
}

fn compose(
    item: &Item,
    ctx: &Context<'_>,
    seed: &str,
    notes: &mut Vec<String>,
    with_body: bool,
) -> Template {
    let code_page = item_code_page(item, ctx);
    let mut skeleton = Skeleton::new(ctx.store_record_key, seed);
    let body = if with_body {
        body_part(item, ctx, code_page, seed, &mut skeleton)
    } else {
        MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            "",
        )
    };
    if with_body {
        // What the reader could not read of it (an attachment, its recipient table) is
        // missing from the message as much as what conversion could not carry over.
        notes.extend(item.problems.iter().cloned());
    }
    notes.append(&mut skeleton.notes);
    let headers =
        text(&item.props, id::TRANSPORT_MESSAGE_HEADERS, code_page).and_then(|h| kept_headers(&h));
    let mut out = TemplateWriter::new(&mut skeleton.holes);
    match headers {
        Some(kept) => {
            let mut head = kept.into_bytes();
            if !has_header(&head, "message-id") {
                head.extend_from_slice(b"Message-ID: ");
                head.extend_from_slice(message_id(item, ctx, seed, code_page).as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            if !has_header(&head, "date") {
                head.extend_from_slice(b"Date: ");
                head.extend_from_slice(Date::new(date_of(item)).to_rfc822().as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"MIME-Version: 1.0\r\n");
            out.write(&head);
            body.write_part(&mut out);
        }
        None => {
            let mut builder = MessageBuilder::new();
            let from = address_of(
                &item.props,
                [
                    id::SENT_REPRESENTING_NAME,
                    id::SENT_REPRESENTING_EMAIL,
                    id::SENT_REPRESENTING_ADDRTYPE,
                    id::SENT_REPRESENTING_SMTP_ADDRESS,
                ],
                code_page,
                ctx,
            );
            let sender = address_of(
                &item.props,
                [
                    id::SENDER_NAME,
                    id::SENDER_EMAIL,
                    id::SENDER_ADDRTYPE,
                    id::SENDER_SMTP_ADDRESS,
                ],
                code_page,
                ctx,
            );
            match (&from, &sender) {
                (Some(f), Some(s)) if f.email != s.email && !s.email.is_empty() => {
                    builder = builder.from(f.to_address()).sender(s.to_address());
                }
                (Some(f), _) => builder = builder.from(f.to_address()),
                (None, Some(s)) => builder = builder.from(s.to_address()),
                (None, None) => {}
            }
            let mut lists: [Vec<Address<'static>>; 3] = [Vec::new(), Vec::new(), Vec::new()];
            for row in &item.recipients {
                let kind = int(row, id::RECIPIENT_TYPE).unwrap_or(1) & 0x0F;
                let slot = match kind {
                    2 => 1,
                    3 => 2,
                    _ => 0,
                };
                if let Some(a) = address_of(
                    row,
                    [
                        id::DISPLAY_NAME,
                        id::EMAIL_ADDRESS,
                        id::ADDRTYPE,
                        id::SMTP_ADDRESS,
                    ],
                    code_page,
                    ctx,
                ) {
                    lists[slot].push(a.to_address());
                }
            }
            let [to, cc, bcc] = lists;
            if !to.is_empty() {
                builder = builder.to(Address::new_list(to));
            }
            if !cc.is_empty() {
                builder = builder.cc(Address::new_list(cc));
            }
            if !bcc.is_empty() {
                builder = builder.bcc(Address::new_list(bcc));
            }
            if let Some(subject) = subject(item, code_page) {
                builder = builder.subject(subject);
            }
            builder = builder.date(Date::new(date_of(item)));
            builder = builder.message_id(strip_angles(&message_id(item, ctx, seed, code_page)));
            if let Some(reply) = text(&item.props, id::IN_REPLY_TO_ID, code_page) {
                let ids = message_ids(&reply);
                if !ids.is_empty() {
                    builder = builder.in_reply_to(MessageId::new_list(ids.into_iter()));
                }
            }
            if let Some(references) = text(&item.props, id::INTERNET_REFERENCES, code_page) {
                let ids = message_ids(&references);
                if !ids.is_empty() {
                    builder = builder.references(MessageId::new_list(ids.into_iter()));
                }
            }
            builder = builder.header("MIME-Version", Raw::new("1.0"));
            builder.body(body).serialize(&mut out);
        }
    }
    out.finish()
}

/// The code page of a message's ANSI strings: its own, else the store's.
pub(crate) fn item_code_page(item: &Item, ctx: &Context<'_>) -> Option<u32> {
    int(&item.props, id::INTERNET_CPID)
        .or_else(|| int(&item.props, id::MESSAGE_CODEPAGE))
        .map(|c| c as u32)
        .filter(|c| encoding_for_code_page(*c).is_some())
        .or(ctx.store_code_page)
}

/// The subject without its `\x01<len>` prefix marker (MS-OXCMSG 2.2.1.46).
pub fn subject(item: &Item, code_page: Option<u32>) -> Option<String> {
    let raw = text(&item.props, id::SUBJECT, code_page)?;
    Some(strip_subject_prefix(&raw))
}

pub fn strip_subject_prefix(raw: &str) -> String {
    let mut chars = raw.chars();
    if chars.next() == Some('\u{1}') {
        chars.next();
        return chars.as_str().to_owned();
    }
    raw.to_owned()
}

/// Seconds since the epoch for `Date:`: client submit, else delivery, else creation time.
pub fn date_of(item: &Item) -> i64 {
    time(&item.props, id::CLIENT_SUBMIT_TIME)
        .or_else(|| time(&item.props, id::MESSAGE_DELIVERY_TIME))
        .or_else(|| time(&item.props, id::CREATION_TIME))
        .or_else(|| time(&item.props, id::LAST_MODIFICATION_TIME))
        .unwrap_or(0)
}

/// The message's Message-ID with angle brackets: its own, or one derived from the store's
/// record key, the message's search/record key and its node path (stable across runs).
pub(crate) fn message_id(
    item: &Item,
    ctx: &Context<'_>,
    seed: &str,
    code_page: Option<u32>,
) -> String {
    if let Some(own) = text(&item.props, id::INTERNET_MESSAGE_ID, code_page) {
        let own = own.trim();
        if !own.is_empty() && !own.contains(['\r', '\n']) {
            return if own.starts_with('<') {
                own.to_owned()
            } else {
                format!("<{own}>")
            };
        }
    }
    let mut hash = Sha256::new();
    hash.update(ctx.store_record_key);
    hash.update(binary(&item.props, id::SEARCH_KEY).unwrap_or_default());
    hash.update(binary(&item.props, id::RECORD_KEY).unwrap_or_default());
    hash.update(seed.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@pst.cutover.invalid>")
}

fn strip_angles(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

fn message_ids(text: &str) -> Vec<String> {
    let ids: Vec<String> = text
        .split('<')
        .filter_map(|part| part.split('>').next())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.contains('@') && !id.contains(char::is_whitespace))
        .map(str::to_owned)
        .collect();
    ids
}

/// The header block of PidTagTransportMessageHeaders without its MIME structure fields
/// (the body is rebuilt), CRLF line ends, ending in CRLF. None when it is not a header block.
fn kept_headers(raw: &str) -> Option<String> {
    let normalized = raw.replace("\r\n", "\n");
    let block = normalized.split("\n\n").next().unwrap_or("");
    if !block
        .lines()
        .next()
        .is_some_and(|l| l.contains(':') && !l.starts_with([' ', '\t']))
    {
        return None;
    }
    let mut out = String::new();
    let mut skipping = false;
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if !skipping {
                out.push_str(line);
                out.push_str("\r\n");
            }
            continue;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        skipping = matches!(
            name.as_str(),
            "content-type" | "content-transfer-encoding" | "mime-version" | "content-disposition"
        );
        if !skipping {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    (!out.is_empty()).then_some(out)
}

fn has_header(headers: &[u8], lowercase_name: &str) -> bool {
    headers.split(|b| *b == b'\n').any(|line| {
        let line = String::from_utf8_lossy(line).to_ascii_lowercase();
        line.starts_with(lowercase_name)
            && line[lowercase_name.len()..].trim_start().starts_with(':')
    })
}

/// A mailbox as it will be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    /// SMTP address; empty when the PST only has an unresolvable Exchange DN.
    pub email: String,
}

impl Mailbox {
    fn to_address(&self) -> Address<'static> {
        if self.email.is_empty() {
            // No SMTP address: an empty group keeps the name without inventing an address.
            let name = self.name.clone().unwrap_or_else(|| "unknown".into());
            return Address::new_group(Some(name), Vec::new());
        }
        Address::new_address(self.name.clone(), self.email.clone())
    }
}

/// Name, address, address type and SMTP address ids → a mailbox, resolving EX addresses.
pub(crate) fn address_of(
    bag: &super::ltp::PropertyBag,
    [name_id, email_id, type_id, smtp_id]: [u16; 4],
    code_page: Option<u32>,
    ctx: &Context<'_>,
) -> Option<Mailbox> {
    let name = text(bag, name_id, code_page).filter(|n| !n.trim().is_empty());
    let email = text(bag, email_id, code_page).unwrap_or_default();
    let kind = text(bag, type_id, code_page).unwrap_or_default();
    let smtp = text(bag, smtp_id, code_page).filter(|s| s.contains('@'));
    let resolved = if let Some(smtp) = smtp {
        smtp
    } else if kind.eq_ignore_ascii_case("SMTP") || (kind.is_empty() && email.contains('@')) {
        email.clone()
    } else if kind.eq_ignore_ascii_case("EX") {
        ctx.options
            .ex_to_smtp
            .get(&email.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    } else if email.contains('@') {
        email.clone()
    } else {
        String::new()
    };
    if name.is_none() && resolved.is_empty() {
        return None;
    }
    Some(Mailbox {
        name: name.filter(|n| *n != resolved),
        email: resolved.trim().to_owned(),
    })
}

/// What a message's MIME tree is built around: deterministic boundaries (a hash of the store
/// and the item, plus a counter), the holes left for attachment data, and notes about what
/// could not be carried over.
struct Skeleton {
    stem: String,
    next: usize,
    holes: Holes,
    notes: Vec<String>,
}

impl Skeleton {
    fn new(store_key: &[u8], seed: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(store_key);
        hash.update(seed.as_bytes());
        let digest = hash.finalize();
        let stem: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Skeleton {
            holes: Holes::new(),
            stem,
            next: 0,
            notes: Vec::new(),
        }
    }

    fn multipart<'i>(&mut self, subtype: &'static str, parts: Vec<MimePart<'i>>) -> MimePart<'i> {
        self.next += 1;
        let boundary = format!("=_cutover_{}_{}", self.stem, self.next);
        MimePart::new(
            ContentType::new(format!("multipart/{subtype}")).attribute("boundary", boundary),
            BodyPart::Multipart(parts),
        )
    }
}

/// The message body: text/plain, text/html (from PidTagHtml or RTF-encapsulated HTML),
/// text/rtf for other RTF, inline images in multipart/related, attachments in
/// multipart/mixed.
fn body_part<'i>(
    item: &'i Item,
    ctx: &Context<'_>,
    code_page: Option<u32>,
    seed: &str,
    skeleton: &mut Skeleton,
) -> MimePart<'i> {
    let plain = text(&item.props, id::BODY, code_page).filter(|b| !b.is_empty());
    let mut html = match item.props.get(id::HTML) {
        Some(PropValue::Binary(bytes)) | Some(PropValue::String8(bytes)) if !bytes.is_empty() => {
            Some(decode_html(bytes, code_page))
        }
        Some(PropValue::Unicode(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let mut rtf_part = None;
    if let Some(compressed) = binary(&item.props, id::RTF_COMPRESSED) {
        match rtf::decompress(&compressed) {
            Ok(raw) => {
                if rtf::encapsulates_html(&raw) {
                    if html.is_none() {
                        html = Some(rtf::html_from_rtf(&raw));
                    }
                } else if !rtf::encapsulates_text(&raw) && html.is_none() {
                    rtf_part = Some(raw);
                }
            }
            Err(err) => skeleton
                .notes
                .push(format!("RTF body not converted: {err}")),
        }
    }

    let mut inline = Vec::new();
    let mut attached = Vec::new();
    for (index, attachment) in item.attachments.iter().enumerate() {
        let child_seed = format!("{seed}/{index}");
        match attachment_part(
            attachment,
            ctx,
            code_page,
            &child_seed,
            index,
            html.as_deref(),
            skeleton,
        ) {
            Some((part, true)) => inline.push(part),
            Some((part, false)) => attached.push(part),
            None => {}
        }
    }

    let html_part = html.map(|h| {
        let part = MimePart::new(
            ContentType::new("text/html").attribute("charset", "utf-8"),
            h,
        );
        if inline.is_empty() {
            part
        } else {
            let mut parts = vec![part];
            parts.append(&mut inline);
            skeleton.multipart("related", parts)
        }
    });
    // Inline parts without an HTML body to refer to them become ordinary attachments.
    attached.splice(0..0, inline);
    let plain_part = plain.map(|p| {
        MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            p,
        )
    });
    let rtf_part = rtf_part.map(|r| {
        MimePart::new(
            ContentType::new("text/rtf"),
            BodyPart::Binary(Cow::Owned(r)),
        )
    });
    let mut alternatives: Vec<MimePart<'_>> = [plain_part, rtf_part, html_part]
        .into_iter()
        .flatten()
        .collect();
    let main = match alternatives.len() {
        0 => MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            "",
        ),
        1 => alternatives.remove(0),
        _ => skeleton.multipart("alternative", alternatives),
    };
    if attached.is_empty() {
        main
    } else {
        let mut parts = vec![main];
        parts.append(&mut attached);
        skeleton.multipart("mixed", parts)
    }
}

/// PidTagHtml is bytes in the message's code page (PidTagInternetCodepage); without one,
/// UTF-8 when the bytes are valid UTF-8, else Windows-1252.
fn decode_html(bytes: &[u8], code_page: Option<u32>) -> String {
    if code_page.and_then(encoding_for_code_page).is_none() {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return text.trim_end_matches('\0').to_owned();
        }
    }
    super::strings::decode_ansi(bytes, code_page)
        .trim_end_matches('\0')
        .to_owned()
}

/// One attachment as a MIME part; `true` when it is an inline image the HTML refers to.
fn attachment_part<'i>(
    attachment: &'i Attachment,
    ctx: &Context<'_>,
    code_page: Option<u32>,
    seed: &str,
    index: usize,
    html: Option<&str>,
    skeleton: &mut Skeleton,
) -> Option<(MimePart<'i>, bool)> {
    let props = &attachment.props;
    let name = attachment_name(attachment, code_page, index);
    if let Some(embedded) = &attachment.embedded {
        let mut inner_notes = Vec::new();
        let inner = to_rfc5322(embedded, ctx, seed, &mut inner_notes);
        skeleton
            .notes
            .extend(inner_notes.into_iter().map(|n| format!("{name}: {n}")));
        let encoding = if inner.has_8bit() { "8bit" } else { "7bit" };
        // Written as it is (a raw part): its own holes are filled where it lands.
        let part = MimePart::new(
            ContentType::new("message/rfc822"),
            BodyPart::Binary(Cow::Owned(skeleton.holes.token(inner))),
        )
        .attachment(name)
        .transfer_encoding(encoding);
        return Some((part, false));
    }
    // Data too large to hold is a hole, filled base64-encoded as the message is written out.
    // Held data is borrowed, not copied: the item outlives the conversion.
    let (data, streamed): (Cow<'i, [u8]>, bool) = match props.get(id::ATTACH_DATA) {
        Some(PropValue::Binary(bytes)) => (Cow::Borrowed(bytes), false),
        Some(PropValue::Stream(stream)) => {
            (Cow::Owned(skeleton.holes.base64(stream.clone())), true)
        }
        Some(PropValue::Unreadable(why)) => {
            skeleton
                .notes
                .push(format!("attachment {name:?} not readable: {why}"));
            return None;
        }
        _ => {
            let method = int(props, id::ATTACH_METHOD).unwrap_or(0);
            if method != 0 {
                skeleton.notes.push(format!(
                    "attachment {name:?} has no data (attach method {method}: by reference)"
                ));
            }
            return None;
        }
    };
    let content_type = text(props, id::ATTACH_MIME_TAG, code_page)
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| t.contains('/') && !t.contains(char::is_whitespace))
        .unwrap_or_else(|| guess_type(&name).to_owned());
    let cid = text(props, id::ATTACH_CONTENT_ID, code_page)
        .map(|c| strip_angles(&c))
        .filter(|c| !c.is_empty() && !c.contains(char::is_whitespace));
    let referenced = cid
        .as_deref()
        .is_some_and(|c| html.is_some_and(|h| h.contains(&format!("cid:{c}"))));
    let part = MimePart::new(ContentType::new(content_type), BodyPart::Binary(data));
    let (part, inline) = match cid {
        Some(cid) if referenced => (
            part.inline()
                .cid(cid)
                .header("Content-Description", Raw::new(header_safe(&name))),
            true,
        ),
        Some(cid) => (part.attachment(name).cid(cid), false),
        None => (part.attachment(name), false),
    };
    // Last, where mail-builder writes the header of a body it encodes itself: a hole's part
    // reads as it would with the data in memory.
    let part = if streamed {
        part.transfer_encoding("base64")
    } else {
        part
    };
    Some((part, inline))
}

fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || !c.is_ascii() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The attachment's file name: long name, short name, display name, else a numbered one.
pub fn attachment_name(attachment: &Attachment, code_page: Option<u32>, index: usize) -> String {
    let props = &attachment.props;
    [
        id::ATTACH_LONG_FILENAME,
        id::ATTACH_FILENAME,
        id::DISPLAY_NAME,
    ]
    .into_iter()
    .find_map(|pid| text(props, pid, code_page).filter(|n| !n.trim().is_empty()))
    .or_else(|| {
        attachment.embedded.as_ref().and_then(|e| {
            subject(e, code_page)
                .filter(|s| !s.is_empty())
                .map(|s| format!("{s}.eml"))
        })
    })
    .unwrap_or_else(|| format!("attachment-{}", index + 1))
}

fn guess_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "htm" | "html" => "text/html",
        "csv" => "text/csv",
        "rtf" => "application/rtf",
        "zip" => "application/zip",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "ppt" => "application/vnd.ms-powerpoint",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "eml" => "message/rfc822",
        "ics" => "text/calendar",
        "vcf" => "text/vcard",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prefix_is_stripped() {
        assert_eq!(strip_subject_prefix("\u{1}\u{4}RE: hi"), "RE: hi");
        assert_eq!(strip_subject_prefix("plain"), "plain");
        assert_eq!(strip_subject_prefix("\u{1}"), "");
    }

    #[test]
    fn transport_headers_lose_their_mime_fields() {
        let kept = kept_headers(
            "Received: from a\n\tby b\nContent-Type: multipart/mixed;\n\tboundary=x\nSubject: hi\n\nbody",
        )
        .unwrap();
        assert_eq!(kept, "Received: from a\r\n\tby b\r\nSubject: hi\r\n");
        assert!(kept_headers("not headers").is_none());
    }

    #[test]
    fn message_id_lists_parse() {
        assert_eq!(message_ids("<a@b> <c@d>"), vec!["a@b", "c@d"]);
        assert!(message_ids("garbage").is_empty());
    }
}
