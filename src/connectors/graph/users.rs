//! Users, licences and mailboxes: the typed requests of [`GraphClient`], as Microsoft's
//! Graph v1.0 reference documents them (`user`, `subscribedSku`, `assignLicense`,
//! `mailboxSettings`).

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{GraphClient, GraphError};

use crate::secrets::Secret;

/// The user properties cutover reads. `proxyAddresses` and `assignedLicenses` are only
/// returned when selected.
pub const USER_SELECT: &str =
    "id,userPrincipalName,displayName,mail,usageLocation,assignedLicenses,proxyAddresses";

/// A user as Graph returns it (the selected properties).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    pub id: String,
    pub user_principal_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    /// ISO 3166-1 alpha-2; a licence cannot be assigned without it.
    #[serde(default)]
    pub usage_location: Option<String>,
    #[serde(default)]
    pub assigned_licenses: Vec<AssignedLicense>,
    /// `SMTP:primary@…`, `smtp:alias@…`, `X500:…`. Read-only in Graph.
    #[serde(default)]
    pub proxy_addresses: Vec<String>,
}

impl GraphUser {
    /// Whether the SKU `sku_id` is assigned.
    pub fn has_licence(&self, sku_id: &str) -> bool {
        self.assigned_licenses
            .iter()
            .any(|l| l.sku_id.eq_ignore_ascii_case(sku_id))
    }

    /// Whether `address` is among the proxy addresses (any prefix, any case).
    pub fn has_address(&self, address: &str) -> bool {
        self.proxy_addresses.iter().any(|p| {
            p.split_once(':')
                .is_some_and(|(_, a)| a.eq_ignore_ascii_case(address))
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicense {
    pub sku_id: String,
    #[serde(default)]
    pub disabled_plans: Vec<String>,
}

/// A subscription of the tenant (`GET /subscribedSkus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSku {
    pub sku_id: String,
    /// `O365_BUSINESS_PREMIUM`, `EXCHANGESTANDARD`, …
    pub sku_part_number: String,
    /// `Enabled`, `Warning`, `Suspended`, `Deleted`, `LockedOut`.
    #[serde(default)]
    pub capability_status: String,
    #[serde(default)]
    pub consumed_units: i64,
    #[serde(default)]
    pub prepaid_units: PrepaidUnits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidUnits {
    #[serde(default)]
    pub enabled: i64,
    #[serde(default)]
    pub suspended: i64,
    #[serde(default)]
    pub warning: i64,
    #[serde(default)]
    pub locked_out: i64,
}

impl SubscribedSku {
    /// Seats that can still be assigned: enabled units not consumed.
    pub fn free(&self) -> i64 {
        (self.prepaid_units.enabled - self.consumed_units).max(0)
    }

    /// Whether new assignments are possible at all (not suspended, deleted or locked out).
    pub fn assignable(&self) -> bool {
        matches!(self.capability_status.as_str(), "Enabled" | "Warning")
    }
}

/// A user to create. The password travels only in the request body, never into an error.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub user_principal_name: &'a str,
    pub display_name: &'a str,
    /// The mail alias: the address's local part.
    pub mail_nickname: &'a str,
    pub usage_location: Option<&'a str>,
    pub password: &'a Secret,
}

/// Whether a user's mailbox answers yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxState {
    /// `mailboxSettings` answered: Exchange Online has the mailbox.
    Ready,
    /// Not (yet): Graph's error code and message, e.g. `MailboxNotEnabledForRESTAPI`
    /// while a licensed user's mailbox is still being provisioned.
    Missing { code: String, message: String },
}

/// Error codes Graph gives for a user without an Exchange Online mailbox (yet).
const NO_MAILBOX_CODES: &[&str] = &["MailboxNotEnabledForRESTAPI", "ErrorNonExistentMailbox"];

/// Characters escaped in a path segment: all but RFC 3986 `pchar`.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `/users/{id | userPrincipalName}`. A UPN starting with `$` is written
/// `/users('$…')`, as Graph's reference requires.
pub fn user_path(id_or_upn: &str) -> String {
    let encoded = utf8_percent_encode(id_or_upn, SEGMENT).to_string();
    if id_or_upn.starts_with('$') {
        format!("/users('{}')", encoded.replace('\'', "''"))
    } else {
        format!("/users/{encoded}")
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    method: &'static str,
    path: &str,
    body: Value,
) -> Result<T, GraphError> {
    serde_json::from_value(body).map_err(|e| GraphError::BadResponse {
        method,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn is_not_found(e: &GraphError) -> bool {
    e.status() == Some(404)
}

impl GraphClient {
    /// The user with this UPN (or object id), `None` when the directory has none.
    pub fn user(&self, id_or_upn: &str) -> Result<Option<GraphUser>, GraphError> {
        let path = format!("{}?$select={USER_SELECT}", user_path(id_or_upn));
        match self.get(&path) {
            Ok(body) => parse("GET", &path, body).map(Some),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Many users by UPN through `$batch`, in the order asked; `None` where absent.
    pub fn users(&self, upns: &[String]) -> Result<Vec<Option<GraphUser>>, GraphError> {
        let paths: Vec<String> = upns
            .iter()
            .map(|u| format!("{}?$select={USER_SELECT}", user_path(u)))
            .collect();
        let answers = self.batch_get(&paths)?;
        answers
            .into_iter()
            .zip(&paths)
            .map(|((status, body), path)| match status {
                200 => parse("GET", path, body).map(Some),
                404 => Ok(None),
                _ => Err(super::api_error("GET", path, status, &body, None)),
            })
            .collect()
    }

    /// `POST /users`: creates an enabled user who must change the password at first sign-in.
    pub fn create_user(&self, user: &NewUser<'_>) -> Result<GraphUser, GraphError> {
        let mut body = json!({
            "accountEnabled": true,
            "displayName": user.display_name,
            "mailNickname": user.mail_nickname,
            "userPrincipalName": user.user_principal_name,
            "passwordProfile": {
                "forceChangePasswordNextSignIn": true,
                "password": user.password.expose(),
            },
        });
        if let Some(location) = user.usage_location {
            body["usageLocation"] = json!(location);
        }
        let created = self.post("/users", &body)?;
        parse("POST", "/users", created)
    }

    /// `PATCH /users/{id}` with the given properties (`displayName`, `usageLocation`, …).
    pub fn update_user(&self, id: &str, properties: &Value) -> Result<(), GraphError> {
        self.patch(&user_path(id), properties).map(|_| ())
    }

    /// `GET /subscribedSkus`: the tenant's subscriptions with their seats.
    pub fn subscribed_skus(&self) -> Result<Vec<SubscribedSku>, GraphError> {
        let path = "/subscribedSkus";
        let body = self.get(path)?;
        parse("GET", path, body["value"].clone())
    }

    /// `POST /users/{id}/assignLicense` adding `sku_id` with all its service plans.
    pub fn assign_licence(&self, id: &str, sku_id: &str) -> Result<(), GraphError> {
        let body = json!({
            "addLicenses": [{ "skuId": sku_id, "disabledPlans": [] }],
            "removeLicenses": [],
        });
        self.post(&format!("{}/assignLicense", user_path(id)), &body)
            .map(|_| ())
    }

    /// Whether the user's Exchange Online mailbox answers (`GET /users/{id}/mailboxSettings`).
    pub fn mailbox_state(&self, id: &str) -> Result<MailboxState, GraphError> {
        match self.get(&format!("{}/mailboxSettings", user_path(id))) {
            Ok(_) => Ok(MailboxState::Ready),
            Err(GraphError::Api(e)) if NO_MAILBOX_CODES.contains(&e.code.as_str()) => {
                Ok(MailboxState::Missing {
                    code: e.code,
                    message: e.message,
                })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_paths_escape_what_a_segment_cannot_hold() {
        assert_eq!(user_path("carol@acme.co.uk"), "/users/carol@acme.co.uk");
        assert_eq!(
            user_path("guest_x.com#EXT#@acme.onmicrosoft.com"),
            "/users/guest_x.com%23EXT%23@acme.onmicrosoft.com"
        );
        assert_eq!(user_path("a b/c?d"), "/users/a%20b%2Fc%3Fd");
        assert_eq!(
            user_path("$o'neil@acme.co.uk"),
            "/users('$o''neil@acme.co.uk')"
        );
    }

    #[test]
    fn seats_and_addresses() {
        let sku = SubscribedSku {
            sku_id: "s".into(),
            sku_part_number: "O365_BUSINESS_BASIC".into(),
            capability_status: "Enabled".into(),
            consumed_units: 7,
            prepaid_units: PrepaidUnits {
                enabled: 10,
                ..PrepaidUnits::default()
            },
        };
        assert_eq!(sku.free(), 3);
        assert!(sku.assignable());
        let user = GraphUser {
            proxy_addresses: vec![
                "SMTP:alice@acme.co.uk".into(),
                "smtp:Accounts@acme.co.uk".into(),
            ],
            ..GraphUser::default()
        };
        assert!(user.has_address("accounts@ACME.co.uk"));
        assert!(!user.has_address("alice@acme.com"));
    }
}
