//! The README's key rotation runbook, walked through with two real `gateway` processes.
//!
//! Reload is built in another issue: here an instance "reloads" by being restarted with the
//! new config. At every step, every token issued so far (and still meant to be valid) is
//! presented to both instances and must be accepted.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::support::*;

/// A `gateway run` child process; killed (by its PID, through `Child`) on drop.
struct Instance {
    child: Child,
    addr: SocketAddr,
}

impl Instance {
    fn start(config: &Path) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--log-format", "json", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway binary");
        // The bound address comes from the "listening" log line; the rest of the log is
        // drained by the thread so the child never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "listening" {
                        let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the gateway did not report its address")
            .parse()
            .unwrap();
        Instance { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn login(&self) -> String {
        let r = post_json(
            &self.url("/auth"),
            r#"{"username":"user1","password":"abcxyz"}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["access_token"].as_str().unwrap().to_string()
    }

    async fn accepts(&self, token: &str) -> bool {
        let r = get(
            &self.url("/protected"),
            &[("authorization", &jwt_header(token))],
        )
        .await;
        r.status == 200
    }

    async fn published_kids(&self) -> Vec<String> {
        let r = get(&self.url("/.well-known/jwks.json"), &[]).await;
        let mut kids: Vec<String> = r.json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        kids.sort();
        kids
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kid_of(token: &str) -> String {
    let h = token.split('.').next().unwrap();
    let v: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h).unwrap(),
    )
    .unwrap();
    v["kid"].as_str().unwrap().to_string()
}

/// Writes the config of one runbook step; `keys` are `[[keys]]` tables.
fn step(dir: &Path, name: &str, keys: &[String]) -> PathBuf {
    let mut b = gateway().respond_identity("/protected");
    for k in keys {
        b = b.table(k);
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, b.toml()).unwrap();
    path
}

/// Every token in `tokens` is accepted by every instance.
async fn all_accepted(when: &str, instances: &[&Instance], tokens: &[String]) {
    for (i, gw) in instances.iter().enumerate() {
        for t in tokens {
            assert!(
                gw.accepts(t).await,
                "{when}: instance {i} refused a valid token signed by {}",
                kid_of(t)
            );
        }
    }
}

#[tokio::test]
async fn rotating_the_signing_key_rejects_no_valid_token_at_any_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new) = (keypair(Algorithm::ES256), keypair(Algorithm::ES256));
    std::fs::write(d.join("old.pem"), &old.private).unwrap();
    std::fs::write(d.join("old.pub"), old.public.as_ref().unwrap()).unwrap();
    std::fs::write(d.join("new.pem"), &new.private).unwrap();
    std::fs::write(d.join("new.pub"), new.public.as_ref().unwrap()).unwrap();
    let es = Algorithm::ES256;
    let old_signs = key_table("old", es, "private_key_file = \"old.pem\"", true);
    let old_verifies = key_table("old", es, "public_key_file = \"old.pub\"", false);
    let new_verifies = key_table("new", es, "public_key_file = \"new.pub\"", false);
    let new_signs = key_table("new", es, "private_key_file = \"new.pem\"", true);

    // 0. Both instances sign and verify with the old key.
    let a = step(d, "0-old", std::slice::from_ref(&old_signs));
    let mut gw1 = Instance::start(&a);
    let mut gw2 = Instance::start(&a);
    let mut valid = vec![gw1.login().await, gw2.login().await];
    all_accepted("step 0", &[&gw1, &gw2], &valid).await;

    // 1. Add the new key as verify-only, one instance at a time.
    let b = step(d, "1-add-new", &[old_signs.clone(), new_verifies]);
    gw1 = Instance::start(&b);
    all_accepted("step 1, gw1 reloaded", &[&gw1, &gw2], &valid).await;
    valid.push(gw1.login().await);
    gw2 = Instance::start(&b);
    all_accepted("step 1, both reloaded", &[&gw1, &gw2], &valid).await;
    assert_eq!(gw2.published_kids().await, ["new", "old"]);
    assert!(valid.iter().all(|t| kid_of(t) == "old"));

    // 2. Switch signing to the new key, one instance at a time: the other one already
    //    verifies it (step 1), and both keep verifying the old one.
    let c = step(d, "2-switch", &[old_verifies, new_signs.clone()]);
    gw1 = Instance::start(&c);
    let signed_new = gw1.login().await;
    assert_eq!(kid_of(&signed_new), "new");
    valid.push(signed_new);
    all_accepted("step 2, gw1 reloaded", &[&gw1, &gw2], &valid).await;
    valid.push(gw2.login().await);
    gw2 = Instance::start(&c);
    valid.push(gw2.login().await);
    all_accepted("step 2, both reloaded", &[&gw1, &gw2], &valid).await;

    // 3. After the longest token lifetime every old-key token has expired: remove the old
    //    key. (The test cannot wait 300 s; it drops those tokens from the valid set and
    //    checks that they are now refused, i.e. the old key is really gone.)
    let (old_tokens, new_tokens): (Vec<String>, Vec<String>) =
        valid.into_iter().partition(|t| kid_of(t) == "old");
    assert_eq!((old_tokens.len(), new_tokens.len()), (4, 2));
    let e = step(d, "3-remove-old", std::slice::from_ref(&new_signs));
    gw1 = Instance::start(&e);
    gw2 = Instance::start(&e);
    let mut valid = new_tokens;
    valid.push(gw1.login().await);
    all_accepted("step 3", &[&gw1, &gw2], &valid).await;
    assert_eq!(gw1.published_kids().await, ["new"]);
    for t in &old_tokens {
        assert!(!gw2.accepts(t).await, "a removed key still verifies");
    }
}
