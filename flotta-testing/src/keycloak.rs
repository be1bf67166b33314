//! The Keycloak test instance (a real OIDC provider) that `scripts/keycloak.sh start`
//! runs on loopback over HTTPS, named by `FLOTTA_TEST_KEYCLOAK_URL`,
//! `FLOTTA_TEST_KEYCLOAK_CA` and `FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD`.
//!
//! Each test makes a realm of its own ([`Keycloak::create_realm`], from
//! `keycloak/realm.json`): users `alice` (group `team-a`) and `bob` (group `team-b`),
//! the public client `flotta` (authorization code with PKCE, device grant, password
//! grant for tests; a `groups` claim), `flotta-es256` (tokens signed with ES256),
//! `flotta-short` (tokens valid 3 s) and `other-app` (another audience).
//!
//! Tests that need it are marked `#[ignore = "needs Keycloak ..."]`, so a plain
//! `cargo test` reports them ignored, never passed; `scripts/test.sh` starts Keycloak
//! and runs the ignored tests. On CI (`CI=true`), a missing Keycloak is a failure:
//! see [`require_in_ci`].

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::postgres::on_ci;

/// The variable naming the instance's base URL.
pub const URL_VARIABLE: &str = "FLOTTA_TEST_KEYCLOAK_URL";
/// The variable naming the PEM file of the instance's TLS CA.
pub const CA_VARIABLE: &str = "FLOTTA_TEST_KEYCLOAK_CA";
/// The variable holding the password of its `admin` user.
pub const ADMIN_PASSWORD_VARIABLE: &str = "FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD";

const HOW_TO: &str = "start one with `eval \"$(scripts/keycloak.sh start)\"; export \
     FLOTTA_TEST_KEYCLOAK_URL FLOTTA_TEST_KEYCLOAK_CA FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD` \
     (scripts/test.sh does)";

/// The realm every test realm is made from; `REALM` is replaced by its name.
const REALM_TEMPLATE: &str = include_str!("keycloak/realm.json");

/// The passwords of the template's users.
pub const ALICE: (&str, &str) = ("alice", "alice-password");
/// Bob, of `team-b`.
pub const BOB: (&str, &str) = ("bob", "bob-password");

/// Fails on CI when no Keycloak is configured, so that its ignored tests cannot go
/// unrun there unnoticed.
pub fn require_in_ci() {
    if on_ci() && Keycloak::configured().is_none() {
        panic!("CI=true but {URL_VARIABLE} is not set: the OIDC tests would be skipped; {HOW_TO}");
    }
}

/// The running instance.
#[derive(Debug, Clone)]
pub struct Keycloak {
    url: String,
    ca_file: PathBuf,
    admin_password: String,
    http: reqwest::Client,
}

/// The tokens a grant returned.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The ID token (audience: the client).
    pub id_token: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the grant gave one.
    pub refresh_token: Option<String>,
}

/// A realm of the instance.
#[derive(Debug, Clone)]
pub struct Realm {
    keycloak: Keycloak,
    name: String,
}

impl Keycloak {
    /// The instance the environment names, if any.
    pub fn configured() -> Option<Self> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let url = var(URL_VARIABLE)?;
        let ca_file = PathBuf::from(var(CA_VARIABLE)?);
        let admin_password = var(ADMIN_PASSWORD_VARIABLE)?;
        let ca = std::fs::read_to_string(&ca_file)
            .unwrap_or_else(|e| panic!("{CA_VARIABLE} {}: {e}", ca_file.display()));
        let http = crate::client_trusting(&ca);
        Some(Self {
            url: url.trim_end_matches('/').to_owned(),
            ca_file,
            admin_password,
            http,
        })
    }

    /// The instance; panics saying how to start one when none is configured.
    pub fn get() -> Self {
        Self::configured().unwrap_or_else(|| {
            panic!("{URL_VARIABLE} is not set: this test needs Keycloak; {HOW_TO}")
        })
    }

    /// The PEM file of the CA of its TLS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.clone()
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An access token of the master realm's admin.
    async fn admin_token(&self) -> String {
        let tokens = self
            .grant(
                &format!("{}/realms/master/protocol/openid-connect/token", self.url),
                &[
                    ("grant_type", "password"),
                    ("client_id", "admin-cli"),
                    ("username", "admin"),
                    ("password", &self.admin_password),
                ],
            )
            .await
            .expect("admin token");
        tokens["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn grant(&self, url: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let response = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("POST {url}: {status}: {body}"));
        }
        Ok(body)
    }

    async fn admin_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let token = self.admin_token().await;
        let url = format!("{}/admin/realms{path}", self.url);
        let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new realm of its own, from the template.
    pub async fn create_realm(&self) -> Realm {
        let name = format!("flotta-{}", uuid::Uuid::new_v4().simple());
        let realm: Value = serde_json::from_str(&REALM_TEMPLATE.replace("REALM", &name))
            .expect("realm template is JSON");
        self.admin_request(reqwest::Method::POST, "", Some(realm))
            .await;
        Realm {
            keycloak: self.clone(),
            name,
        }
    }
}

impl Realm {
    /// The issuer URL of its tokens.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{}", self.keycloak.url, self.name)
    }

    /// The realm's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instance.
    pub fn keycloak(&self) -> &Keycloak {
        &self.keycloak
    }

    /// Tokens for `user` through `client_id`'s password grant; the error says why
    /// Keycloak refused.
    pub async fn password_grant(
        &self,
        client_id: &str,
        user: (&str, &str),
    ) -> Result<Tokens, String> {
        let body = self
            .keycloak
            .grant(
                &format!("{}/protocol/openid-connect/token", self.issuer()),
                &[
                    ("grant_type", "password"),
                    ("client_id", client_id),
                    ("username", user.0),
                    ("password", user.1),
                    ("scope", "openid"),
                ],
            )
            .await?;
        let field = |name: &str| body[name].as_str().map(str::to_owned);
        Ok(Tokens {
            id_token: field("id_token").ok_or("no id_token")?,
            access_token: field("access_token").ok_or("no access_token")?,
            refresh_token: field("refresh_token"),
        })
    }

    /// Rotates the realm's RS256 signing key: a new generated key with a higher
    /// priority signs every token from now on; the old one stays published.
    pub async fn rotate_keys(&self) {
        let realm = self
            .keycloak
            .admin_request(reqwest::Method::GET, &format!("/{}", self.name), None)
            .await;
        let id = realm["id"].as_str().expect("realm id").to_owned();
        let component = json!({
            "name": format!("rsa-rotated-{}", uuid::Uuid::new_v4().simple()),
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": id,
            "config": { "priority": ["1000"], "algorithm": ["RS256"], "active": ["true"], "enabled": ["true"] },
        });
        self.keycloak
            .admin_request(
                reqwest::Method::POST,
                &format!("/{}/components", self.name),
                Some(component),
            )
            .await;
    }
}

impl Realm {
    /// Signs `user` in at Keycloak's login page for `authorization_url`, as a browser
    /// would (its cookies, its form), and returns where Keycloak then redirects: the
    /// client's redirect URI with the code. Redirects are not followed, so the
    /// caller decides what receives the code.
    pub async fn sign_in(
        &self,
        authorization_url: &str,
        user: (&str, &str),
    ) -> Result<String, String> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(
                flotta_client::tls_client_config(
                    &std::fs::read_to_string(&self.keycloak.ca_file).map_err(|e| e.to_string())?,
                    None,
                )
                .map_err(|e| e.to_string())?,
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let page = http
            .get(authorization_url)
            .send()
            .await
            .map_err(|e| format!("GET the login page: {e}"))?;
        let cookies = cookies_of(&page);
        let status = page.status();
        let html = page.text().await.map_err(|e| e.to_string())?;
        let action = form_action(&html, "kc-form-login")
            .ok_or_else(|| format!("no login form in Keycloak's answer ({status}): {html:.300}"))?;
        let answer = http
            .post(&action)
            .header(reqwest::header::COOKIE, cookies)
            .form(&[
                ("username", user.0),
                ("password", user.1),
                ("credentialId", ""),
            ])
            .send()
            .await
            .map_err(|e| format!("POST the login form: {e}"))?;
        let location = answer
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        match location {
            Some(location) => Ok(location),
            None => {
                let status = answer.status();
                let text = answer.text().await.unwrap_or_default();
                Err(format!(
                    "the login form answered {status} without a redirect: {text:.300}"
                ))
            }
        }
    }
}

impl Realm {
    /// Approves a device authorization as its user would on another device: opens
    /// `verification_url` (the `verification_uri_complete` a device-code grant
    /// printed), signs `user` in on Keycloak's login form and grants the consent
    /// Keycloak asks for. Cookies and redirects are carried as a browser would.
    pub async fn approve_device(
        &self,
        verification_url: &str,
        user: (&str, &str),
    ) -> Result<(), String> {
        let mut browser = Browser::new(&self.keycloak.ca_file)?;
        let (url, html) = browser.open(verification_url).await?;
        let action = form_action(&html, "kc-form-login")
            .ok_or_else(|| format!("no login form at {url}: {html:.300}"))?;
        let (url, html) = browser
            .submit(
                &url,
                &action,
                &[
                    ("username", user.0),
                    ("password", user.1),
                    ("credentialId", ""),
                ],
            )
            .await?;
        // The consent page ("Do you grant these access privileges?"), unless the
        // realm skips it.
        if let Some(action) = form_action(&html, "kc-oauth") {
            let code = hidden_input(&html, "code")
                .ok_or_else(|| format!("no code on the consent page at {url}"))?;
            let (url, html) = browser
                .submit(&url, &action, &[("code", &code), ("accept", "Yes")])
                .await?;
            if html.contains("kc-form-login") || html.contains("kc-oauth") {
                return Err(format!(
                    "Keycloak did not take the consent at {url}: {html:.300}"
                ));
            }
        } else if html.contains("kc-form-login") {
            return Err(format!("the login of {} was refused at {url}", user.0));
        }
        Ok(())
    }
}

/// A client that keeps cookies and follows redirects by hand, as a browser does.
struct Browser {
    http: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn new(ca_file: &std::path::Path) -> Result<Self, String> {
        let ca = std::fs::read_to_string(ca_file).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(
                flotta_client::tls_client_config(&ca, None).map_err(|e| e.to_string())?,
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Browser {
            http,
            cookies: std::collections::BTreeMap::new(),
        })
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Follows `response`'s redirects with GETs; the final address and page.
    async fn land(
        &mut self,
        mut url: reqwest::Url,
        mut response: reqwest::Response,
    ) -> Result<(reqwest::Url, String), String> {
        for _ in 0..10 {
            for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
                let Some((name, value)) = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.split(';').next())
                    .and_then(|pair| pair.split_once('='))
                else {
                    continue;
                };
                if value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
            if !response.status().is_redirection() {
                let html = response.text().await.map_err(|e| e.to_string())?;
                return Ok((url, html));
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("a redirect without a Location from {url}"))?;
            url = url
                .join(location)
                .map_err(|e| format!("redirect to {location}: {e}"))?;
            response = self.get(&url).await?;
        }
        Err(format!("more than 10 redirects, the last to {url}"))
    }

    /// A GET with the cookies kept so far.
    async fn get(&self, url: &reqwest::Url) -> Result<reqwest::Response, String> {
        self.http
            .get(url.clone())
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }

    async fn open(&mut self, url: &str) -> Result<(reqwest::Url, String), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let response = self.get(&url).await?;
        self.land(url, response).await
    }

    async fn submit(
        &mut self,
        page: &reqwest::Url,
        action: &str,
        form: &[(&str, &str)],
    ) -> Result<(reqwest::Url, String), String> {
        let url = page
            .join(action)
            .map_err(|e| format!("form action {action}: {e}"))?;
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        self.land(url, response).await
    }
}

/// The `value` of the hidden input `name` in `html`.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let input = &html[html.find(&format!("name=\"{name}\""))?..];
    let start = input.find("value=\"")? + "value=\"".len();
    let end = input[start..].find('"')?;
    Some(input[start..start + end].replace("&amp;", "&"))
}

/// The `name=value` pairs of a response's cookies, as a `Cookie` header.
fn cookies_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `action` of the form with id `id` in `html`, its entities decoded.
fn form_action(html: &str, id: &str) -> Option<String> {
    let form = &html[html.find(&format!("id=\"{id}\""))?..];
    let start = form.find("action=\"")? + "action=\"".len();
    let end = form[start..].find('"')?;
    Some(form[start..start + end].replace("&amp;", "&"))
}

/// The `kid` in a JWT's header.
pub fn key_id(jwt: &str) -> Option<String> {
    flotta_core::oidc::header_key_id(jwt)
}
