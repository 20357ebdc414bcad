use std::borrow::Cow;

use cutover::redact::redact;

fn r(text: &str) -> String {
    redact(text).into_owned()
}

#[test]
fn clean_text_is_borrowed_unchanged() {
    let text = "copy.alice.ionos-imap: folder INBOX.Sent: 421 server busy; token_type was bearer";
    assert!(matches!(redact(text), Cow::Borrowed(t) if t == text));
    // Prose that merely mentions the words is left alone.
    let text = "LOGIN failed: wrong password for alice@acme.co.uk";
    assert!(matches!(redact(text), Cow::Borrowed(_)));
}

#[test]
fn sas_signature_in_url_is_masked_and_the_rest_kept() {
    let url = "PUT https://acme.blob.core.windows.net/ingest/alice.pst?sv=2023-11-03&se=2026-01-01T00%3A00%3A00Z&sr=c&sp=rw&sig=abc%2Bdef%3D&comp=block";
    assert_eq!(
        r(url),
        "PUT https://acme.blob.core.windows.net/ingest/alice.pst?sv=2023-11-03&se=2026-01-01T00%3A00%3A00Z&sr=c&sp=rw&sig=REDACTED&comp=block"
    );
    assert_eq!(r("?sig=xyz"), "?sig=REDACTED");
    assert_eq!(r("upload failed (SIG=xyz)"), "upload failed (SIG=REDACTED)");
}

#[test]
fn bearer_tokens_are_masked() {
    assert_eq!(
        r("Authorization: Bearer eyJ0eXAiOi.JKV1Qi_-x.y+z/0== rejected"),
        "Authorization: Bearer REDACTED rejected"
    );
    assert_eq!(r("bearer abc123"), "bearer REDACTED");
}

#[test]
fn basic_auth_header_is_masked_but_the_word_basic_is_not() {
    assert_eq!(
        r("authorization: Basic YWxpY2U6aHVudGVyMg=="),
        "authorization: Basic REDACTED"
    );
    assert!(matches!(
        redact("basic authentication is disabled"),
        Cow::Borrowed(_)
    ));
}

#[test]
fn json_credentials_are_masked_and_json_stays_valid() {
    let body = r#"{"error":"invalid_client","client_secret": "s3cr\"et","access_token":"tok","refresh_token":"r","token_type":"Bearer","password":"hunter2"}"#;
    let out = r(body);
    assert_eq!(
        out,
        r#"{"error":"invalid_client","client_secret": "REDACTED","access_token":"REDACTED","refresh_token":"REDACTED","token_type":"Bearer","password":"REDACTED"}"#
    );
    let parsed: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
    assert_eq!(parsed["token_type"], "Bearer");
}

#[test]
fn query_and_form_credentials_are_masked() {
    assert_eq!(
        r("POST /token grant_type=client_credentials&client_id=abc&client_secret=xyz~1&scope=x"),
        "POST /token grant_type=client_credentials&client_id=abc&client_secret=REDACTED&scope=x"
    );
    assert_eq!(
        r("GET /cb?access_token=aaa&state=1"),
        "GET /cb?access_token=REDACTED&state=1"
    );
    assert_eq!(r("password=hunter2"), "password=REDACTED");
    assert_eq!(r("new_password=x; done"), "new_password=REDACTED; done");
}

#[test]
fn key_value_text_and_debug_output_are_masked() {
    assert_eq!(
        r(r#"Auth { client_id: "abc", client_secret: "xyz" }"#),
        r#"Auth { client_id: "abc", client_secret: "REDACTED" }"#
    );
    assert_eq!(r("password: hunter2"), "password: REDACTED");
    assert_eq!(r("Password = 'hunter2'"), "Password = 'REDACTED'");
}

#[test]
fn url_userinfo_and_azure_connection_string_are_masked() {
    assert_eq!(
        r("connect imaps://alice:hunter2@imap.ionos.co.uk:993 failed"),
        "connect imaps://alice:REDACTED@imap.ionos.co.uk:993 failed"
    );
    assert_eq!(
        r("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02x==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"),
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=REDACTED;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    );
}

#[test]
fn redaction_is_idempotent() {
    let text = "sig=abc Bearer t password=p imaps://u:p@h";
    let once = r(text);
    assert_eq!(r(&once), once);
    assert!(!once.contains("abc") && !once.contains(" t ") && !once.contains(":p@"));
}

#[test]
fn sas_signature_inside_an_encoded_url_is_masked() {
    // A SAS URL passed as a parameter of another URL, percent-encoded once and twice.
    let once = "redirect?next=https%3A%2F%2Facme.blob.core.windows.net%2Fingestiondata%3Fsv%3D2020-12-06%26sr%3Dc%26sig%3DVt5S4hVzlz%252BMcBk%253D%26se%3D2030";
    assert_eq!(
        r(once),
        "redirect?next=https%3A%2F%2Facme.blob.core.windows.net%2Fingestiondata%3Fsv%3D2020-12-06%26sr%3Dc%26sig%3DREDACTED%26se%3D2030"
    );
    assert_eq!(r("u=x%253Fsig%253Dabc%252Bd"), "u=x%253Fsig%253DREDACTED");
    // The portal's SAS URL as a whole, and in an SDK error echoing the request.
    let portal = "https://3c3e5952a2764023ad14984.blob.core.windows.net/ingestiondata?sv=2012-02-12&se=9999-12-31T23%3A59%3A59Z&sr=c&si=IngestionSasForAzCopy201601121920498117&sig=Vt5S4hVzlzMcBkuH8bH711atBffdrOS72TlV1mNdORg%3D";
    let masked = r(&format!(
        "error sending request for url ({portal}&comp=block&blockid=MDA%3D)"
    ));
    assert!(!masked.contains("Vt5S4"), "{masked}");
    assert!(masked.contains("sig=REDACTED&comp=block"), "{masked}");
}
