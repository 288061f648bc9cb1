//! `[[keys]]`, `[[issuers]]`, `[jwks]` and route `issuers`: every problem names its key.

use jsonwebtoken::Algorithm;

use crate::support::{key_table, keypair};
use gateway::load;

fn problems(toml: &str, files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    match load::from_str(toml, dir.path()) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn assert_has(p: &[String], key: &str, words: &str) {
    assert!(
        p.iter().any(|p| p.starts_with(key) && p.contains(words)),
        "no problem at {key} mentioning {words:?} in {p:#?}"
    );
}

#[test]
fn key_problems_are_reported_at_once_with_their_key() {
    let es = keypair(Algorithm::ES256);
    let rsa = keypair(Algorithm::RS256);
    let toml = [
        "[tokens]\nsecret_file = \"secret\"\n".to_string(),
        "[[keys]]\nalgorithm = \"ES256\"\nprivate_key_file = \"es.pem\"\n".into(),
        key_table(
            "a",
            Algorithm::ES256,
            "private_key_file = \"rsa.pem\"",
            true,
        ),
        key_table("a", Algorithm::RS256, "public_key_file = \"rsa.pub\"", true),
        "[[keys]]\nid = \"b\"\nalgorithm = \"none\"\nsecret_env = \"X\"\n".into(),
        "[[keys]]\nid = \"c\"\nalgorithm = \"ES384\"\nprivate_key_file = \"es.pem\"\n".into(),
        "[[keys]]\nid = \"d\"\nalgorithm = \"HS256\"\nsecret_file = \"short\"\n".into(),
        "[[keys]]\nid = \"e\"\nalgorithm = \"ES256\"\n".into(),
        "[[keys]]\nid = \"f\"\nalgorithm = \"ES256\"\nprivate_key_file = \"missing.pem\"\n".into(),
        "[[keys]]\nid = \"g\"\nalgorithm = \"ES256\"\nprivat_key_file = \"x\"\n".into(),
    ]
    .concat();
    let files = [
        ("es.pem", es.private.as_str()),
        ("rsa.pem", rsa.private.as_str()),
        ("rsa.pub", rsa.public.as_deref().unwrap()),
        ("short", "too-short"),
    ];
    // An unknown key fails the whole parse first (serde), with its line.
    let p = problems(&toml, &files);
    assert!(p.iter().any(|p| p.contains("privat_key_file")), "{p:?}");
    let toml = toml.replace("privat_key_file = \"x\"\n", "");
    let p = problems(&toml, &files);
    for (key, words) in [
        ("tokens.secret_file", "replaces the [tokens] secret"),
        ("keys[0].id", "missing"),
        ("keys[1].private_key_file", "ES256"),
        ("keys[2].id", "used by an earlier key"),
        ("keys[2].sign", "a public key cannot sign"),
        ("keys[3].algorithm", "unsupported algorithm `none`"),
        ("keys[4].private_key_file", "ES384"),
        ("keys[5].secret_file", "at least 32"),
        ("keys[6]", "exactly one of"),
        ("keys[7].private_key_file", "cannot read"),
        ("keys", "exactly one must"),
    ] {
        assert_has(&p, key, words);
    }
    assert!(p.iter().all(|p| p.contains("hint:")), "{p:#?}");
    assert!(
        !p.iter()
            .any(|p| p.contains("too-short") || p.contains("PRIVATE KEY")),
        "key material leaked into a message: {p:#?}"
    );
}

#[test]
fn issuer_and_route_problems_name_their_key() {
    let toml = "[tokens]\nsecret_file = \"secret\"\nissuer = \"https://idp2\"\n\
                [[routes]]\npath = \"/a\"\nrespond = \"identity\"\nauth = \"required\"\n\
                issuers = [\"https://nobody\"]\n\
                [[issuers]]\nissuer = \"https://idp\"\njwks_url = \"ftp://idp/certs\"\n\
                [[issuers]]\nissuer = \"https://idp2\"\naudiences = [\"api\"]\n\
                [[issuers]]\naudiences = [\"api\"]\njwks_file = \"x.json\"\n\
        [[issuers]]\nissuer = \"https://idp3\"\naudiences = [\"api\"]\njwks_file = \"x.json\"\n\
                cache_ttl = \"soon\"\n\
                [jwks]\npath = \"keys\"\n";
    let p = problems(
        toml,
        &[("secret", "integration-test-secret-0123456789abcdef")],
    );
    for (key, words) in [
        ("routes[0].issuers[0]", "not an [[issuers]] entry"),
        ("issuers[0].audiences", "at least one"),
        ("issuers[0].jwks_url", "is not an http:// or https:// URL"),
        ("issuers[1]", "exactly one of jwks_url and jwks_file"),
        ("issuers[1].issuer", "this gateway's own [tokens] issuer"),
        ("issuers[2].issuer", "missing"),
        ("issuers[3].cache_ttl", "not a duration"),
        ("jwks.path", "not an absolute path"),
    ] {
        assert_has(&p, key, words);
    }
}
