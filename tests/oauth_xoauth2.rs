//! XOAUTH2 with a token cutover obtains itself: the client-credentials flow against a local
//! token endpoint (Microsoft's is unreachable offline), the token cached and refreshed before
//! expiry, provider errors reported without the secret, and the token accepted by a real
//! Dovecot over IMAPS.
mod support;

use cutover::connectors::imap::ImapClient;
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::connectors::oauth::{TokenSource, M365_MAIL_SCOPE};
use cutover::plan::model::Tls;
use cutover::secrets::Secret;
use support::dovecot::Dovecot;
use support::token_endpoint::{ok_token, token_endpoint};

#[test]
fn client_credentials_request_and_cache() {
    let endpoint = token_endpoint(vec![
        ok_token("first-token", 3599),
        ok_token("second-token", 3599),
    ]);
    let source = TokenSource::new(
        &endpoint.url,
        "app-id",
        Secret::new("client-secret-value"),
        M365_MAIL_SCOPE,
    )
    .unwrap();
    assert_eq!(source.token().unwrap().expose(), "first-token");
    assert_eq!(
        source.token().unwrap().expose(),
        "first-token",
        "cached while valid"
    );
    let requests = endpoint.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let form = &requests[0];
    for field in [
        "grant_type=client_credentials",
        "client_id=app-id",
        "client_secret=client-secret-value",
        "scope=https%3A%2F%2Foutlook.office365.com%2F.default",
    ] {
        assert!(form.contains(field), "{field} in {form}");
    }
}

#[test]
fn tokens_about_to_expire_are_fetched_again() {
    let endpoint = token_endpoint(vec![ok_token("short-lived", 60), ok_token("fresh", 3599)]);
    let source =
        TokenSource::new(&endpoint.url, "app-id", Secret::new("s"), M365_MAIL_SCOPE).unwrap();
    assert_eq!(source.token().unwrap().expose(), "short-lived");
    assert_eq!(
        source.token().unwrap().expose(),
        "fresh",
        "60 s left is inside the refresh margin"
    );
    assert_eq!(endpoint.requests.lock().unwrap().len(), 2);
}

#[test]
fn provider_errors_name_the_code_not_the_secret() {
    let endpoint = token_endpoint(vec![support::token_endpoint::invalid_client()]);
    let source = TokenSource::new(
        &endpoint.url,
        "app-id",
        Secret::new("wrong-secret-value"),
        M365_MAIL_SCOPE,
    )
    .unwrap();
    let err = source.token().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HTTP 401")
            && text.contains("invalid_client")
            && text.contains("AADSTS7000215"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-value"));
    assert!(!err.is_transient(), "a bad secret is not retried");
    assert!(!format!("{source:?}").contains("wrong-secret-value"));
}

#[test]
fn plain_http_only_to_loopback() {
    // The host is what the URL parser says it is: user info and look-alike names are other
    // hosts, and the client secret must not go there in clear.
    for url in [
        "http://login.example.com/token",
        "http://127.0.0.1@attacker.example/token",
        "http://localhost.attacker.example/token",
        "http://127.0.0.1.attacker.example/token",
    ] {
        let refused = TokenSource::new(url, "app", Secret::new("s"), M365_MAIL_SCOPE).unwrap_err();
        assert!(refused.to_string().contains(url), "{url}: {refused}");
    }
    for url in [
        "http://127.0.0.1:9/token",
        "http://localhost:9/token",
        "http://[::1]:9/token",
    ] {
        assert!(
            TokenSource::new(url, "app", Secret::new("s"), M365_MAIL_SCOPE).is_ok(),
            "{url}"
        );
    }
}

#[tokio::test]
async fn dovecot_accepts_the_fetched_token_over_xoauth2() {
    let dovecot = Dovecot::shared();
    let user = dovecot.add_user("oauth");
    // Dovecot checks an XOAUTH2 bearer token against its passdb, so the token endpoint issues
    // the user's password as the access token.
    let endpoint = token_endpoint(vec![ok_token(&user.password, 3599)]);
    let url = endpoint.url.clone();
    let token = tokio::task::spawn_blocking(move || {
        TokenSource::new(&url, "app-id", Secret::new("s"), M365_MAIL_SCOPE)
            .unwrap()
            .token()
            .unwrap()
    })
    .await
    .unwrap();
    let imaps = Endpoint::new("127.0.0.1", dovecot.imaps_port, Tls::Implicit)
        .with_ca_file(dovecot.ca_file());
    let mut client =
        ImapClient::connect(&imaps, &Credentials::xoauth2(&user.login, token.expose()))
            .await
            .expect("XOAUTH2 login with the fetched token");
    assert!(client
        .list()
        .await
        .unwrap()
        .iter()
        .any(|m| m.name.eq_ignore_ascii_case("INBOX")));
    client.logout().await.unwrap();
}
