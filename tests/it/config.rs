//! Configuration: problems name their key, the shipped file stays valid, the CLI.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use gateway::{config, load};

fn problems(toml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), crate::support::SECRET).unwrap();
    // The documented TLS examples name tls/server.crt and tls/server.key.
    if toml.contains("tls/server.crt") {
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        crate::support::pki::Pki::new("docs CA")
            .leaf(&["localhost"])
            .write(&dir.path().join("tls"), "server");
    }
    // An empty environment: no `secret_env` name is ever set.
    match load::from_str_with_env(toml, dir.path(), &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn assert_problem(toml: &str, key: &str, words: &str) {
    let p = problems(toml);
    assert!(
        p.iter().any(|p| p.starts_with(key) && p.contains(words)),
        "no problem at {key} mentioning {words:?} in {p:#?}"
    );
}

const BASE: &str = "[tokens]\nsecret_file = \"secret\"\n";

#[test]
fn shipped_gateway_toml_is_valid_and_runs_the_seed_flow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = load::load(&root.join("gateway.toml")).unwrap_or_else(|e| panic!("{e}"));
    let c = loaded.config;
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.login.as_ref().unwrap().path, "/auth");
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.routes[0].path, "/protected");
    assert_eq!(c.tokens.lifetime.as_secs(), 300);
    assert_eq!(c.tokens.leeway.as_secs(), 10);
    assert_eq!(c.tokens.prefix, "JWT");
    // Without GATEWAY_SECRET the shipped file falls back to a generated secret, loudly.
    let text = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    let bare = load::from_str_with_env(&text, root, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert!(bare
        .warnings
        .iter()
        .any(|w| w.key == "tokens.missing_secret"));
}

#[test]
fn unknown_keys_are_refused() {
    let p = problems(&format!(
        "{BASE}[[routes]]\npath = \"/api\"\n\
         upstream = \"http://127.0.0.1:1\"\nauht = \"required\"\n"
    ));
    assert!(
        p.iter()
            .any(|p| p == "routes[0].auht: unknown key `auht` (hint: did you mean `auth`?)"),
        "{p:?}"
    );
    let p = problems("[tokens]\nsecret_file = \"secret\"\nalgorithms = \"HS256\"\n");
    assert!(p.iter().any(|p| p.contains("algorithms")), "{p:?}");
    let p = problems("listen = \"127.0.0.1:1\"\n");
    assert!(p.iter().any(|p| p.contains("listen")), "{p:?}");
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let toml = format!(
        "[server]\nlisten = \"nowhere\"\n{BASE}lifetime = \"five minutes\"\nalgorithm = \"none\"\n\
         [[routes]]\npath = \"/api\"\nupstream = \"ftp://x\"\n\
         [[routes]]\npath = \"/api/\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"requierd\"\n"
    );
    let p = problems(&toml);
    for (key, words) in [
        ("server.listen", "not an address"),
        ("tokens.lifetime", "not a duration"),
        ("tokens.algorithm", "unsupported algorithm `none`"),
        ("routes[0].auth", "missing"),
        ("routes[0].upstream", "no http:// or https:// scheme"),
        ("routes[1].path", "overlaps routes[0]"),
        ("routes[1].auth", "unknown value `requierd`"),
    ] {
        assert!(
            p.iter().any(|p| p.starts_with(key) && p.contains(words)),
            "{key}: {words} not in {p:#?}"
        );
    }
    assert!(
        p.iter().all(|p| p.contains("hint:")),
        "every problem carries a hint: {p:#?}"
    );
}

#[test]
fn secrets_are_checked_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short"), "hunter2-is-short").unwrap();
    let err = load::from_str("[tokens]\nsecret_file = \"short\"\n", dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("tokens.secret_file") && text.contains("at least 32"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the secret leaked into the message"
    );
    // Explicitly allowed legacy secret.
    assert!(load::from_str(
        "[tokens]\nsecret_file = \"short\"\nallow_short_secret = true\n",
        dir.path()
    )
    .is_ok());
    // Unset env var and the default "refuse".
    assert_problem(
        "[tokens]\nsecret_env = \"GATEWAY_TEST_SURELY_UNSET_VAR\"\n",
        "tokens.secret_env",
        "not set",
    );
    assert_problem(
        "[tokens]\nsecret_file = \"missing-file\"\n",
        "tokens.secret_file",
        "cannot read",
    );
    assert_problem("[tokens]\n", "tokens", "no signing secret");
}

#[test]
fn token_rules_are_checked() {
    assert_problem(
        &format!("{BASE}required_claims = [\"iat\"]\n"),
        "tokens.required_claims",
        "\"exp\" must be required",
    );
    assert_problem(
        &format!("{BASE}identity_claim = \"exp\"\n"),
        "tokens.identity_claim",
        "cannot hold the identity",
    );
    assert_problem(
        &format!("{BASE}errors = \"xml\"\n"),
        "tokens.errors",
        "unknown error style",
    );
    assert_problem(&format!("{BASE}[login]\n"), "login", "no users");
}

#[test]
fn users_are_checked() {
    let toml = format!(
        "{BASE}[[users]]\nid = 1.5\nusername = \"a\"\npassword_hash = \"plain\"\n\
         [[users]]\nid = 2\nusername = \"b\"\n\
         password_hash = \"$2a$12$abcdefghijklmnopqrstuu5Xj4Rr0lR1MVtN4vNbYgIDm2p3n8Pdm\"\n"
    );
    let p = problems(&toml);
    for (key, words) in [
        ("users[0].id", "integer or a non-empty string"),
        ("users[0].password_hash", "not a PHC"),
        // bcrypt is accepted as $2b$/$2y$ only (tests/it/users_file.rs).
        ("users[1].password_hash", "$2b$ and $2y$"),
    ] {
        assert!(
            p.iter().any(|p| p.starts_with(key) && p.contains(words)),
            "{key} not in {p:#?}"
        );
    }
}

#[test]
fn users_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), crate::support::SECRET).unwrap();
    let hash = gateway::auth::users::hash_password(b"pw").unwrap();
    std::fs::write(
        dir.path().join("users.toml"),
        format!("[[users]]\nid = 7\nusername = \"u\"\npassword_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let loaded = load::from_str(
        "users_file = \"users.toml\"\n[tokens]\nsecret_file = \"secret\"\n[login]\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(loaded.config.users.len(), 1);
    assert_eq!(loaded.config.users[0].id, config::UserId::Int(7));
}

fn cli(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_remove("GATEWAY_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_subcommand_exit_codes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = root.join("gateway.toml");
    let (code, out, err) = cli(&["check", "--config", shipped.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("warning: tokens.missing_secret"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"x\"\n[tokens]\nsecret_env = \"GATEWAY_TEST_SURELY_UNSET_VAR\"\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["check", "--config", bad.to_str().unwrap()], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("server.listen") && err.contains("tokens.secret_env"),
        "{err}"
    );

    // `run` refuses the same config the same way, before binding anything.
    let (code, _, err) = cli(&["run", "--config", bad.to_str().unwrap()], "");
    assert_eq!(code, 2);
    assert!(err.contains("server.listen"), "{err}");
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    let (code, out, _) = cli(&["hash-password"], "correct horse\n");
    assert_eq!(code, 0);
    let hash = out.trim();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(hash).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"correct horse", &parsed)
        .is_ok());
    assert!(argon2::Argon2::default()
        .verify_password(b"correct horse\n", &parsed)
        .is_err());
    let (code, _, _) = cli(&["hash-password"], "");
    assert_ne!(code, 0);
}

/// The ```toml blocks of a Markdown file in the repository.
fn toml_blocks(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    text.split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

/// A block without its own `[tokens]` is a fragment: it is loaded after [`BASE`].
fn complete(block: &str) -> String {
    if block.contains("[tokens]") {
        block.to_string()
    } else {
        format!("{BASE}{block}")
    }
}

#[test]
fn readme_config_examples_are_valid() {
    let blocks = toml_blocks("README.md");
    assert!(blocks.len() >= 2, "README lost its TOML examples");
    for block in blocks {
        let p = problems(&complete(&block));
        assert!(
            p.is_empty(),
            "README example does not load:\n{block}\n{p:#?}"
        );
    }
}

/// Every config the migration guide shows loads as written: its `secret_env` names are set
/// (as the guide tells the reader to) and its elided `"$argon2id$..."` stands for a hash
/// `gateway hash-password` printed.
#[test]
fn migration_guide_config_examples_are_valid() {
    let blocks = toml_blocks("docs/migrating-from-flask-jwt.md");
    let sections = ["[tokens]", "[[keys]]", "[login.remote]", "[forward_auth]"];
    for section in sections {
        assert!(
            blocks.iter().any(|b| b.contains(section)),
            "the guide lost its {section} example"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), crate::support::SECRET).unwrap();
    let secret = String::from_utf8(crate::support::SECRET.to_vec()).unwrap();
    for block in blocks {
        let text = complete(&block).replace(
            "\"$argon2id$...\"",
            &format!("\"{}\"", crate::support::HASH1),
        );
        let loaded = load::from_str_with_env(&text, dir.path(), &|_| Some(secret.clone()));
        if let Err(e) = loaded {
            panic!("guide example does not load:\n{block}\n{:#?}", e.problems);
        }
    }
}

#[test]
fn proxy_engine_keys_are_checked() {
    let toml = format!(
        "{BASE}[[routes]]\npath = \"/a\"\nupstream = \"nope\"\nauth = \"required\"\n\
         [[routes]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n\
         require = {{ roles = [\"x\"] }}\n\
         [[routes]]\npath = \"/c\"\nupstream = \"pool\"\nauth = \"required\"\nmethods = [\"GET\"]\n\
         claim_headers = {{ \"X-Identity\" = \"sub\" }}\n\
         [[routes]]\npath = \"/c/\"\nupstream = \"pool\"\nauth = \"required\"\n\
         methods = [\"GET\", \"POST\"]\n\
         [[routes]]\nhost = \"bad host\"\npath = \"/d\"\nupstream = \"pool\"\nauth = \"public\"\n\
         strip_prefix = true\nrewrite_prefix = \"/x\"\n\
         [upstreams.pool]\nservers = [\"http://127.0.0.1:1\", \"https://127.0.0.1:2\"]\n\
         balance = \"random\"\nretries = 50\n\
         [upstreams.pool.health]\npath = \"healthz\"\nhealthy_threshold = 0\n\
         [upstreams.pool.tls]\nca_file = \"missing.pem\"\n"
    );
    let p = problems(&toml);
    for (key, words) in [
        ("routes[0].upstream", "no upstream named `nope`"),
        ("routes[1]", "need auth = \"required\""),
        (
            "routes[2].claim_headers.\"X-Identity\"",
            "cannot carry a claim",
        ),
        ("routes[3].path", "overlaps routes[2]"),
        ("routes[4].host", "not a host name"),
        ("routes[4]", "strip_prefix and rewrite_prefix both set"),
        ("upstreams.pool.servers", "mix http:// and https://"),
        ("upstreams.pool.balance", "unknown value `random`"),
        ("upstreams.pool.retries", "more than 10"),
        ("upstreams.pool.health.path", "must start with /"),
        ("upstreams.pool.health", "thresholds must be at least 1"),
        ("upstreams.pool.tls.ca_file", "does not exist"),
    ] {
        assert!(
            p.iter().any(|p| p.starts_with(key) && p.contains(words)),
            "{key}: {words} not in {p:#?}"
        );
    }
}

#[test]
fn route_names_are_checked_and_name_the_route_in_messages() {
    let toml = format!(
        "{BASE}[[routes]]\nname = \"orders\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n\
         [[routes]]\nname = \"orders\"\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n\
         [[routes]]\nname = \"no spaces\"\npath = \"/c\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n\
         [[routes]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n"
    );
    let p = problems(&toml);
    for (key, words) in [
        ("routes[1].name", "already the name of routes[0]"),
        ("routes[2].name", "not a route name"),
        ("routes[3].path", "overlaps routes[0] (`orders`)"),
    ] {
        assert!(
            p.iter().any(|p| p.starts_with(key) && p.contains(words)),
            "{key}: {words} not in {p:#?}"
        );
    }
    // Without a name the key path names the route; with one, the name does.
    let named = format!(
        "{BASE}[[routes]]\nname = \"orders\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n\
         [[routes]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), crate::support::SECRET).unwrap();
    let c = load::from_str(&named, dir.path()).unwrap().config;
    let names: Vec<(&str, &str)> = c
        .routes
        .iter()
        .map(|r| (r.at.as_str(), r.name.as_str()))
        .collect();
    assert_eq!(names, [("routes[0]", "orders"), ("routes[1]", "routes[1]")]);
}

#[test]
fn browser_mode_problems_name_their_key() {
    let users = "[login]\n[[users]]\nid = 1\nusername = \"u\"\npassword_hash = \"$argon2id$x\"\n";
    let route = |extra: &str| {
        format!(
            "[[routes]]\npath = \"/app\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"required\"\n\
             browser = true\n{extra}"
        )
    };
    let public = format!(
        "{BASE}{users}[[routes]]\npath = \"/app\"\nupstream = \"http://127.0.0.1:1\"\n\
         auth = \"public\"\nbrowser = true\n"
    );
    assert_problem(&public, "routes[0].browser", "public route");
    assert_problem(
        &format!("{BASE}{}", route("")),
        "browser",
        "needs a login endpoint",
    );
    for (table, key, words) in [
        (
            "login_page = \"login\"",
            "browser.login_page",
            "plain absolute path",
        ),
        (
            "login_page = \"/auth\"",
            "browser.login_page",
            "already login.path",
        ),
        (
            "logout_path = \"//x\"",
            "browser.logout_path",
            "plain absolute path",
        ),
        (
            "logout_path = \"/out\"",
            "browser.logout_path",
            "not below refresh.path",
        ),
        (
            "secure_cookies = \"yes\"",
            "browser.secure_cookies",
            "unknown value `yes`",
        ),
        (
            "renew_before = \"soon\"",
            "browser.renew_before",
            "not a duration",
        ),
        (
            "template = \"missing.html\"",
            "browser.template",
            "cannot read",
        ),
        (
            "tmeplate = \"x\"",
            "browser.tmeplate",
            "did you mean `template`",
        ),
        (
            "csrf_header = \"X CSRF\"",
            "browser.csrf_header",
            "not a header name",
        ),
        (
            "csrf_header = \"Cookie\"",
            "browser.csrf_header",
            "the gateway or HTTP itself owns",
        ),
    ] {
        let toml = format!("{BASE}{users}{}[refresh]\n[browser]\n{table}\n", route(""));
        assert_problem(&toml, key, words);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), crate::support::SECRET).unwrap();
    std::fs::write(dir.path().join("page.html"), "<p>{% if x %}</p>").unwrap();
    let toml = format!(
        "{BASE}{users}{}[browser]\ntemplate = \"page.html\"\n",
        route("")
    );
    let err = load::from_str_with_env(&toml, dir.path(), &|_| None).unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.key == "browser.template" && p.message.contains("not a valid template")),
        "{err}"
    );
    // A renewal window over half the token's lifetime is kept under it, with a warning.
    let users = format!(
        "[login]\n[[users]]\nid = 1\nusername = \"u\"\npassword_hash = \"{}\"\n",
        crate::support::HASH1
    );
    let toml = format!(
        "[tokens]\nsecret_file = \"secret\"\nlifetime = \"60s\"\n{users}{}[refresh]\n",
        route("")
    );
    let loaded = load::from_str_with_env(&toml, dir.path(), &|_| None).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.key == "browser.renew_before" && w.message.contains("30s")),
        "{:?}",
        loaded.warnings
    );
}
