//! `[[oidc]]` (OpenID Connect providers a browser logs in with) and `[oauth2]` (what all of
//! them share: the paths, the flow cookie's key, its lifetime) → typed config, every
//! problem with its key path.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use http::Uri;

use super::file::{OAuth2File, OidcFile};
use super::report::{resolve, Report, MIN_SECRET_BYTES};
use super::{BrowserConfig, Env, OAuth2Config, OidcConfig, Secret, SecretOrigin, UpstreamTls};

/// Claims the flow checks itself: none of them can be the identity.
const RESERVED: [&str; 7] = ["exp", "iat", "nbf", "aud", "iss", "nonce", ""];

/// The longest `identity_prefix`: it is part of every identity header.
const MAX_PREFIX: usize = 64;

/// Validates `[oauth2]` and `[[oidc]]`. `taken` are the paths other endpoints answer
/// (login, refresh, logout, JWKS): the OAuth2 paths may not shadow them. `identity_claim`
/// is `[tokens] identity_claim`: no provider claim may be carried under its name.
#[allow(clippy::too_many_arguments)]
pub(super) fn oidc(
    r: &mut Report,
    shared: Option<&OAuth2File>,
    list: &[OidcFile],
    base: &Path,
    env: Env<'_>,
    taken: &[&str],
    browser: Option<&BrowserConfig>,
    identity_claim: &str,
) -> (Option<OAuth2Config>, Vec<OidcConfig>) {
    let providers = providers(r, list, base, env, identity_claim);
    if !list.is_empty() && browser.is_none() {
        r.problem(
            "oidc",
            "an OIDC login begins a browser session, but no route has browser = true",
            "add browser = true to the routes browsers navigate to (see [browser])",
        );
    }
    let mut taken = taken.to_vec();
    if let Some(b) = browser {
        taken.extend([b.login_page.as_str(), b.logout_path.as_str()]);
    }
    let taken = taken.as_slice();
    let oauth2 = match shared {
        Some(f) => oauth2(r, f, base, env, taken),
        None if !list.is_empty() => {
            r.problem(
                "oauth2",
                "[[oidc]] providers need an [oauth2] table",
                "add [oauth2] with cookie_key_env or cookie_key_file (the key that seals the \
                    login flow's cookie; every instance needs the same)",
            );
            None
        }
        None => None,
    };
    (oauth2, providers)
}

fn oauth2(
    r: &mut Report,
    f: &OAuth2File,
    base: &Path,
    env: Env<'_>,
    taken: &[&str],
) -> Option<OAuth2Config> {
    let path = f.path.clone().unwrap_or_else(|| "/oauth2".into());
    if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') || path.contains(['?', '#'])
    {
        r.problem(
            "oauth2.path",
            format!("`{path}` is not a path prefix"),
            "leave it out (default \"/oauth2\"); no trailing slash",
        );
    }
    for t in taken {
        if *t == path || t.starts_with(&format!("{path}/")) {
            r.problem(
                "oauth2.path",
                format!("`{path}` would shadow the endpoint at `{t}`"),
                "give the OIDC login its own prefix, e.g. \"/oauth2\"",
            );
        }
    }
    let public_origin = f.public_origin.as_ref().and_then(|text| {
        let ok = absolute(text)
            .filter(|u| matches!(u.path(), "" | "/") && u.query().is_none() && !text.contains('@'));
        if ok.is_none() {
            r.problem(
                "oauth2.public_origin",
                format!("`{text}` is not an origin (http(s)://host[:port], no path)"),
                format!(
                    "write e.g. \"https://app.example\" (each provider's redirect URI is then \
                        https://app.example{path}/NAME/callback), or leave it out to build it \
                        from each request's host"
                ),
            );
        }
        ok.map(|_| text.trim_end_matches('/').to_string())
    });
    let post_logout_url = f.post_logout_url.as_ref().and_then(|text| {
        if absolute(text).is_none() {
            r.problem(
                "oauth2.post_logout_url",
                format!("`{text}` is not an absolute http(s) URL"),
                "write e.g. \"https://app.example/\", or leave it out (the request's origin + /)",
            );
            return None;
        }
        Some(text.clone())
    });
    let flow_lifetime = r.duration(
        "oauth2.flow_lifetime",
        f.flow_lifetime.as_ref(),
        Duration::from_secs(600),
    );
    if flow_lifetime < Duration::from_secs(10) || flow_lifetime > Duration::from_secs(3600) {
        r.problem(
            "oauth2.flow_lifetime",
            "must be between 10s and 1h",
            "leave it out (default \"10m\"): the time a user has to log in at the provider",
        );
    }
    let cookie_key = secret(
        r,
        "oauth2",
        ("cookie_key_env", f.cookie_key_env.as_ref()),
        ("cookie_key_file", f.cookie_key_file.as_ref()),
        base,
        env,
    )?;
    if cookie_key.bytes.len() < MIN_SECRET_BYTES {
        r.problem(
            "oauth2.cookie_key_env",
            format!(
                "the cookie key is {} bytes; at least {MIN_SECRET_BYTES} are required",
                cookie_key.bytes.len()
            ),
            "generate one with `openssl rand -base64 48`",
        );
    }
    Some(OAuth2Config {
        path,
        public_origin,
        post_logout_url,
        flow_lifetime,
        cookie_key,
    })
}

fn providers(
    r: &mut Report,
    list: &[OidcFile],
    base: &Path,
    env: Env<'_>,
    tokens_identity: &str,
) -> Vec<OidcConfig> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, f) in list.iter().enumerate() {
        let at = format!("oidc[{i}]");
        let name = f.name.clone().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            r.problem(
                format!("{at}.name"),
                format!("`{name}` is not a name of 1 to 64 letters, digits, - or _"),
                "write e.g. \"corp\": it is part of the start path /oauth2/corp/start",
            );
        } else if !names.insert(name.clone()) {
            r.problem(
                format!("{at}.name"),
                format!("`{name}` is used by another [[oidc]] entry"),
                "give each provider its own name",
            );
        }
        let insecure_http = f.insecure_http.unwrap_or(false);
        let issuer = match f.issuer.as_deref().map(|t| (t, absolute(t))) {
            Some((text, Some(uri))) => {
                if uri.scheme_str() == Some("http") {
                    let host = uri.host().unwrap_or("");
                    if insecure_http {
                        r.warning(
                            format!("{at}.insecure_http"),
                            format!(
                                "the issuer `{}` is plain HTTP: anyone on the path can read \
                                    the client secret and forge logins",
                                bounded(text)
                            ),
                            "use the provider's https:// issuer and remove insecure_http",
                        );
                    } else if !is_loopback(host) {
                        r.problem(
                            format!("{at}.issuer"),
                            format!(
                                "`{}` is plain HTTP to a host that is not loopback",
                                bounded(text)
                            ),
                            "use the provider's https:// issuer (http:// is accepted only for \
                                127.0.0.1, ::1 and localhost; insecure_http = true overrides, \
                                for tests only)",
                        );
                    }
                }
                text.trim_end_matches('/').to_string()
            }
            Some((text, None)) => {
                r.problem(
                    format!("{at}.issuer"),
                    format!("`{text}` is not an absolute http(s) URL"),
                    "write the provider's issuer, e.g. \"https://idp.example/realms/main\": \
                        discovery reads <issuer>/.well-known/openid-configuration",
                );
                continue;
            }
            None => {
                r.problem(
                    format!("{at}.issuer"),
                    "missing",
                    "write the provider's issuer, e.g. \"https://idp.example/realms/main\"",
                );
                continue;
            }
        };
        let client_id = match &f.client_id {
            Some(c) if !c.is_empty() => c.clone(),
            _ => {
                r.problem(
                    format!("{at}.client_id"),
                    "missing or empty",
                    "the client id this gateway is registered with at the provider",
                );
                String::new()
            }
        };
        let client_secret = secret(
            r,
            &at,
            ("client_secret_env", f.client_secret_env.as_ref()),
            ("client_secret_file", f.client_secret_file.as_ref()),
            base,
            env,
        );
        let scopes = f
            .scopes
            .clone()
            .unwrap_or_else(|| vec!["openid".into(), "email".into()]);
        if !scopes.iter().any(|s| s == "openid") {
            r.problem(
                format!("{at}.scopes"),
                "must include \"openid\"",
                "write e.g. [\"openid\", \"email\", \"groups\"]",
            );
        }
        if let Some(bad) = scopes
            .iter()
            .find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
        {
            r.problem(
                format!("{at}.scopes"),
                format!("`{bad}` is not a scope token"),
                "scopes are single words such as \"email\"",
            );
        }
        let identity_claim = f.identity_claim.clone().unwrap_or_else(|| "sub".into());
        if RESERVED.contains(&identity_claim.as_str()) {
            r.problem(
                format!("{at}.identity_claim"),
                format!("`{identity_claim}` cannot hold the identity"),
                "leave it out (default \"sub\"), or name e.g. \"email\"",
            );
        }
        let email_claim = f.email_claim.clone().unwrap_or_else(|| "email".into());
        let groups_claim = f.groups_claim.clone().unwrap_or_else(|| "groups".into());
        let mut allowed_email_domains = Vec::new();
        for (j, d) in f
            .allowed_email_domains
            .iter()
            .flatten()
            .map(|d| d.to_ascii_lowercase())
            .enumerate()
        {
            if d.is_empty() || d.contains(['@', '/', ' ']) || d.starts_with('.') {
                r.problem(
                    format!("{at}.allowed_email_domains[{j}]"),
                    format!("`{d}` is not a domain"),
                    "write the part after @, e.g. \"example.com\"",
                );
            }
            allowed_email_domains.push(d);
        }
        let allowed_groups = f.allowed_groups.clone().unwrap_or_default();
        if allowed_groups.iter().any(String::is_empty) {
            r.problem(
                format!("{at}.allowed_groups"),
                "a group name is empty",
                "list the group names as the provider writes them",
            );
        }
        let claims = f.claims.clone().unwrap_or_default();
        if let Some(bad) = claims.iter().find(|c| {
            RESERVED.contains(&c.as_str()) || super::report::is_gateway_claim(c, tokens_identity)
        }) {
            r.problem(
                format!("{at}.claims"),
                format!("`{bad}` is checked by the login or set by the session; it is not carried"),
                "list claims such as \"email\" or \"groups\"",
            );
        }
        let allow_unverified_email = f.allow_unverified_email.unwrap_or(false);
        if allow_unverified_email
            && (identity_claim == email_claim || !allowed_email_domains.is_empty())
        {
            r.warning(
                format!("{at}.allow_unverified_email"),
                "an email the provider has not verified is accepted as the identity or for \
                    the allowed domains: anyone who can type an address there may log in as it",
                "remove allow_unverified_email unless the provider verifies every email itself",
            );
        }
        let identity_prefix = f.identity_prefix.clone().unwrap_or_default();
        if identity_prefix.len() > MAX_PREFIX
            || !identity_prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            r.problem(
                format!("{at}.identity_prefix"),
                format!("not up to {MAX_PREFIX} visible ASCII characters"),
                "write e.g. \"corp:\", or leave it out (default: no prefix)",
            );
        }
        let fetch_timeout = r.duration(
            &format!("{at}.fetch_timeout"),
            f.fetch_timeout.as_ref(),
            Duration::from_secs(5),
        );
        if fetch_timeout.is_zero() {
            r.problem(
                format!("{at}.fetch_timeout"),
                "must be more than 0s",
                "leave it out (default \"5s\")",
            );
        }
        let ca_file = f.ca_file.as_ref().and_then(|p| {
            let full = resolve(base, p);
            if full.is_file() {
                Some(full)
            } else {
                r.problem(
                    format!("{at}.ca_file"),
                    format!("{} does not exist", full.display()),
                    "fix the path (relative paths start at the config file's folder)",
                );
                None
            }
        });
        let Some(client_secret) = client_secret else {
            continue;
        };
        out.push(OidcConfig {
            at,
            label: f.label.clone().unwrap_or_else(|| name.clone()),
            name,
            issuer,
            client_id,
            client_secret,
            scopes,
            identity_claim,
            claims,
            email_claim,
            allowed_email_domains,
            allow_unverified_email,
            identity_prefix,
            allow_local_identity: f.allow_local_identity.unwrap_or(false),
            insecure_http,
            groups_claim,
            allowed_groups,
            fetch_timeout,
            tls: UpstreamTls {
                ca_file,
                ..UpstreamTls::default()
            },
        });
    }
    out
}

/// Whether `host` (as a URI writes it: IPv6 in brackets) is this machine.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// At most 200 characters of a configured URL, for messages.
fn bounded(text: &str) -> String {
    text.chars().take(200).collect()
}

/// An absolute `http://` or `https://` URL with a host.
fn absolute(text: &str) -> Option<Uri> {
    let uri: Uri = text.parse().ok()?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Some(uri),
        _ => None,
    }
}

/// A secret from exactly one of an environment variable and a file; never its value in a
/// message.
fn secret(
    r: &mut Report,
    at: &str,
    (env_key, env_name): (&str, Option<&String>),
    (file_key, file): (&str, Option<&String>),
    base: &Path,
    env: Env<'_>,
) -> Option<Secret> {
    match (env_name, file) {
        (Some(var), None) => match env(var) {
            Some(v) if !v.is_empty() => Some(Secret {
                bytes: v.into_bytes(),
                origin: SecretOrigin::Env(var.clone()),
            }),
            _ => {
                r.problem(
                    format!("{at}.{env_key}"),
                    format!("environment variable {var} is not set or empty"),
                    format!("export {var}=<the secret>, or use {file_key}"),
                );
                None
            }
        },
        (None, Some(path)) => {
            let full = resolve(base, path);
            match std::fs::read(&full) {
                Ok(mut bytes) => {
                    // Files written by `echo` end with a newline that is not part of it.
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    if bytes.is_empty() {
                        r.problem(
                            format!("{at}.{file_key}"),
                            format!("{} is empty", full.display()),
                            "write the secret into the file",
                        );
                        return None;
                    }
                    Some(Secret {
                        bytes,
                        origin: SecretOrigin::File(full.display().to_string()),
                    })
                }
                Err(e) => {
                    r.problem(
                        format!("{at}.{file_key}"),
                        format!("cannot read {}: {e}", full.display()),
                        "fix the path (relative paths start at the config file's folder)",
                    );
                    None
                }
            }
        }
        _ => {
            r.problem(
                at,
                format!("needs exactly one of {env_key} and {file_key}"),
                "secrets are never written inline in gateway.toml",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::check_str_with_env;

    /// Browser mode: a login, a user, a route with `browser = true`.
    const BROWSER: &str = concat!(
        "[login]\n[[users]]\nid = 1\nusername = \"u\"\npassword_hash = \"",
        "$argon2id$v=19$m=19456,t=2,p=1$wSaoz+WjVyDsS0mngmCCZw$",
        "lmrh+SyHdtpcel/Vv+nEzSbKyrsRTlKEFpoT+qiXaQw\"\n",
        "[[routes]]\npath = \"/app\"\nupstream = \"http://127.0.0.1:1\"\n",
        "auth = \"required\"\nbrowser = true\n",
    );

    fn problems(toml: &str) -> Vec<String> {
        checked(toml).map_or_else(|p| p, |_| Vec::new())
    }

    /// The warnings' keys of a config that passes, or its problems' keys.
    fn checked(toml: &str) -> Result<Vec<String>, Vec<String>> {
        checked_with("", toml)
    }

    fn checked_with(tokens: &str, toml: &str) -> Result<Vec<String>, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("secret"),
            "q8Xv2LpR7mNc4TzW9bKs1HdY6fGj3AeU0oIx",
        )
        .unwrap();
        let env = |name: &str| (name == "IDP_SECRET").then(|| "s3cret".to_string());
        let text = format!("[tokens]\nsecret_file = \"secret\"\n{tokens}{BROWSER}{toml}");
        match check_str_with_env(&text, dir.path(), &env) {
            // Only this section's warnings (the test secret file has its own).
            Ok(l) => Ok(l
                .warnings
                .iter()
                .map(|p| p.key.clone())
                .filter(|k| k.starts_with("oidc"))
                .collect()),
            Err(e) => Err(e.problems.iter().map(|p| p.key.clone()).collect()),
        }
    }

    fn provider(issuer: &str, more: &str) -> String {
        format!(
            "[oauth2]\ncookie_key_file = \"secret\"\n[[oidc]]\nname = \"corp\"\n\
             issuer = \"{issuer}\"\nclient_id = \"gateway\"\nclient_secret_env = \"IDP_SECRET\"\n{more}"
        )
    }

    #[test]
    fn plain_http_issuers_are_refused_unless_loopback_or_insecure_http() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:9000/realm",
            "http://localhost:8080",
            "https://idp.example",
        ] {
            assert_eq!(checked(&provider(ok, "")), Ok(Vec::new()), "{ok}");
        }
        for bad in [
            "http://idp.example",
            "http://10.0.0.5:8080",
            "http://localhost.evil.example",
            "http://[::2]",
        ] {
            assert_eq!(
                checked(&provider(bad, "")),
                Err(vec!["oidc[0].issuer".to_string()]),
                "{bad}"
            );
        }
        // The explicit opt-out passes, warned.
        assert_eq!(
            checked(&provider("http://idp.example", "insecure_http = true\n")),
            Ok(vec!["oidc[0].insecure_http".to_string()])
        );
    }

    #[test]
    fn claims_the_gateway_sets_cannot_be_carried_from_anywhere() {
        for c in ["sub", "jti", "idp", "sid", "identity", "nonce", "exp"] {
            let more = format!("claims = [\"{c}\"]\n");
            assert_eq!(
                checked(&provider("https://idp.example", &more)),
                Err(vec!["oidc[0].claims".to_string()]),
                "{c}"
            );
        }
        // The configured identity claim, whatever its name.
        assert_eq!(
            checked_with(
                "identity_claim = \"uid\"\n",
                &provider("https://idp.example", "claims = [\"uid\"]\n")
            ),
            Err(vec!["oidc[0].claims".to_string()])
        );
        for c in ["idp", "sid"] {
            let tokens = format!("user_claims = [\"{c}\"]\n");
            assert_eq!(
                checked_with(&tokens, ""),
                Err(vec!["tokens.user_claims[0]".to_string()]),
                "{c}"
            );
            let remote =
                format!("[login.remote]\nurl = \"http://127.0.0.1:1/check\"\nclaims = [\"{c}\"]\n");
            let p = problems(&remote);
            assert!(
                p.iter().any(|k| k == "login.remote.claims[0]"),
                "{c}: {p:?}"
            );
        }
    }

    #[test]
    fn accepting_unverified_emails_for_the_identity_or_domains_is_warned() {
        let https = "https://idp.example";
        for more in [
            "identity_claim = \"email\"\nallow_unverified_email = true\n",
            "allowed_email_domains = [\"example.com\"]\nallow_unverified_email = true\n",
        ] {
            assert_eq!(
                checked(&provider(https, more)),
                Ok(vec!["oidc[0].allow_unverified_email".to_string()]),
                "{more}"
            );
        }
        assert_eq!(
            checked(&provider(https, "allow_unverified_email = true\n")),
            Ok(Vec::new())
        );
    }

    #[test]
    fn identity_prefixes_are_short_visible_text() {
        let https = "https://idp.example";
        assert_eq!(
            checked(&provider(https, "identity_prefix = \"corp:\"\n")),
            Ok(Vec::new())
        );
        for bad in ["a b", "tab\\t", &"x".repeat(65)] {
            let more = format!("identity_prefix = \"{bad}\"\n");
            assert_eq!(
                checked(&provider(https, &more)),
                Err(vec!["oidc[0].identity_prefix".to_string()]),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_complete_provider_passes() {
        let ok = r#"
[oauth2]
cookie_key_file = "secret"
[[oidc]]
name = "corp"
issuer = "https://idp.example/realms/main/"
client_id = "gateway"
client_secret_env = "IDP_SECRET"
allowed_email_domains = ["Example.com"]
"#;
        assert_eq!(problems(ok), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let bad = r#"
[oauth2]
path = "/.well-known"
cookie_key_env = "UNSET"
public_origin = "https://gw.example/elsewhere"
[[oidc]]
name = "c o"
issuer = "idp.example"
client_id = "gateway"
client_secret_env = "IDP_SECRET"
[[oidc]]
name = "two"
issuer = "https://idp.example"
client_secret = "inline"
"#;
        let p = problems(bad);
        for key in [
            "oauth2.path",
            "oauth2.cookie_key_env",
            "oauth2.public_origin",
            "oidc[0].name",
            "oidc[0].issuer",
            "oidc[1].client_secret",
        ] {
            assert!(p.iter().any(|k| k == key), "{key} not in {p:?}");
        }
    }

    #[test]
    fn providers_need_browser_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("secret"),
            "q8Xv2LpR7mNc4TzW9bKs1HdY6fGj3AeU0oIx",
        )
        .unwrap();
        let env = |name: &str| (name == "IDP_SECRET").then(|| "s3cret".to_string());
        let text = "[tokens]\nsecret_file = \"secret\"\n[oauth2]\ncookie_key_file = \"secret\"\n\
            [[oidc]]\nname = \"a\"\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n\
            client_secret_env = \"IDP_SECRET\"\n";
        let e = check_str_with_env(text, dir.path(), &env).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["oidc"]);
        assert!(e.problems[0].hint.contains("browser = true"));
    }

    #[test]
    fn providers_need_the_shared_table_and_a_secret_source() {
        let p = problems(
            "[[oidc]]\nname = \"a\"\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n\
             scopes = [\"email\"]\nidentity_claim = \"nonce\"\n",
        );
        for key in [
            "oauth2",
            "oidc[0]",
            "oidc[0].scopes",
            "oidc[0].identity_claim",
        ] {
            assert!(p.iter().any(|k| k == key), "{key} not in {p:?}");
        }
    }
}
