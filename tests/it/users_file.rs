//! `users_file`: bcrypt hashes next to argon2id, per-user claims, re-read on reload.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::*;

struct FileGateway {
    addr: std::net::SocketAddr,
    reloader: Arc<gateway::server::reload::Reloader>,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FileGateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

const CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\nreload_poll = \"0s\"\n[tokens]\n\
    secret_file = \"secret\"\nuser_claims = [\"roles\"]\n[login]\n[[routes]]\npath = \"/whoami\"\n\
    respond = \"identity\"\nauth = \"required\"\n";

fn users(list: &[(&str, Value, &str, &str)]) -> String {
    let mut out = String::new();
    for (name, id, password, roles) in list {
        let hash = bcrypt::hash(password, 4).unwrap();
        out.push_str(&format!(
            "[[users]]\nid = {id}\nusername = \"{name}\"\npassword_hash = \"{hash}\"\n\
                claims = {{ roles = [\"{roles}\"] }}\n"
        ));
    }
    out
}

async fn start(users_toml: &str) -> FileGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    // users_file is a root key: it goes before the first table.
    let text = format!("users_file = \"users.toml\"\n{CONFIG}");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("users.toml"), users_toml).unwrap();
    let loaded = gateway::load::load(&path).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = gateway::start_file(&path, &loaded, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    tokio::spawn(started.serving);
    FileGateway {
        addr: started.addr,
        reloader: started.reloader.unwrap(),
        dir,
        _stop: stop,
    }
}

async fn login(gw: &FileGateway, user: &str, password: &str) -> Resp {
    post_json(
        &gw.url("/auth"),
        &json!({"username": user, "password": password}).to_string(),
    )
    .await
}

fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn bcrypt_users_log_in_with_their_claims() {
    let gw = start(&users(&[("flask", json!("f-1"), "from-flask", "editor")])).await;
    let r = login(&gw, "flask", "from-flask").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let claims = payload(r.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["identity"], "f-1");
    assert_eq!(claims["roles"], json!(["editor"]));
    assert_eq!(login(&gw, "flask", "wrong").await.status, 401);
}

#[tokio::test]
async fn a_reload_re_reads_the_users_file() {
    let gw = start(&users(&[("alice", json!(1), "a-pw", "ops")])).await;
    let r = login(&gw, "alice", "a-pw").await;
    assert_eq!(r.status, 200);
    let alice = r.json()["access_token"].as_str().unwrap().to_string();
    std::fs::write(
        gw.dir.path().join("users.toml"),
        users(&[("bob", json!(2), "b-pw", "dev")]),
    )
    .unwrap();
    gw.reloader.reload().unwrap();
    assert_eq!(login(&gw, "bob", "b-pw").await.status, 200);
    assert_eq!(login(&gw, "alice", "a-pw").await.status, 401);
    // Alice's unexpired token is cut off with her.
    let me = get(
        &gw.url("/whoami"),
        &[("authorization", &format!("JWT {alice}"))],
    )
    .await;
    assert_eq!(me.status, 401);
}

#[test]
fn only_2b_and_2y_bcrypt_hashes_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let good = bcrypt::hash("x", 10).unwrap();
    let a = good.replacen("$2b$", "$2a$", 1);
    let text = format!(
        "[tokens]\nsecret_env = \"X\"\nmissing_secret = \"generate\"\n[login]\n[[users]]\nid = 1\n\
            username = \"a\"\npassword_hash = \"{a}\"\n[[users]]\nid = 2\nusername = \"b\"\n\
            password_hash = \"$2b$10$short\"\n[[users]]\nid = 3\nusername = \"c\"\n\
            password_hash = \"{good}\"\n"
    );
    let err = gateway::load::from_str(&text, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("users[0].password_hash") && err.contains("$2b$ and $2y$"),
        "{err}"
    );
    assert!(
        err.contains("users[1].password_hash") && err.contains("not a valid bcrypt hash"),
        "{err}"
    );
    assert!(!err.contains("users[2]"), "{err}");
}
