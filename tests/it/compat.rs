//! The Flask-JWT wire contract for protected requests (every row of the error table).

use serde_json::json;

use crate::support::*;

const TOKEN: &str = "Invalid token";

async fn seed() -> Gateway {
    gateway().respond_identity("/protected").start().await
}

async fn call(gw: &Gateway, auth: Option<&str>) -> Resp {
    match auth {
        Some(a) => get(&gw.url("/protected"), &[("authorization", a)]).await,
        None => get(&gw.url("/protected"), &[]).await,
    }
}

#[tokio::test]
async fn valid_token_answers_with_the_identity() {
    let gw = seed().await;
    let r = call(&gw, Some(&jwt_header(&token()))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"identity": 1}));
    // The prefix is compared case-insensitively and any whitespace separates.
    let r = call(&gw, Some(&format!("jwt\t {}", token()))).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn missing_token_gets_the_challenge() {
    let gw = seed().await;
    for auth in [None, Some(""), Some("   ")] {
        let r = call(&gw, auth).await;
        r.assert_error(
            401,
            "Authorization Required",
            "Request does not contain an access token",
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("JWT realm=\"Login Required\"")
        );
    }
}

#[tokio::test]
async fn header_shape_errors() {
    let gw = seed().await;
    let t = token();
    let cases = [
        (format!("Bearer {t}"), "Unsupported authorization type"),
        (t.clone(), "Unsupported authorization type"),
        ("JWT".to_string(), "Token missing"),
        ("JWT ".to_string(), "Token missing"),
        (format!("JWT {t} extra"), "Token contains spaces"),
        ("JWT a b".to_string(), "Token contains spaces"),
    ];
    for (auth, description) in cases {
        let r = call(&gw, Some(&auth)).await;
        r.assert_error(401, "Invalid JWT header", description);
        assert!(
            r.header("www-authenticate").is_none(),
            "challenge only when the token is missing"
        );
    }
    // Two Authorization headers.
    let h = jwt_header(&t);
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &h), ("authorization", &h)],
    )
    .await;
    r.assert_error(401, "Invalid JWT header", "Token contains spaces");
}

#[tokio::test]
async fn segment_and_encoding_errors() {
    let gw = seed().await;
    for bad in ["abc", "abc.def"] {
        call(&gw, Some(&jwt_header(bad)))
            .await
            .assert_error(401, TOKEN, "Not enough segments");
    }
    let t = token();
    let (head, _) = t.split_once('.').unwrap();
    call(
        &gw,
        Some(&jwt_header(&format!("!!!.{}", &t[head.len() + 1..]))),
    )
    .await
    .assert_error(401, TOKEN, "Invalid header padding");
    let r = call(
        &gw,
        Some(&jwt_header(&format!(
            "{}.{}",
            b64(b"not json"),
            &t[head.len() + 1..]
        ))),
    )
    .await;
    assert_eq!(
        r.json()["description"].as_str().unwrap().split(':').next(),
        Some("Invalid header string")
    );
    assert_eq!(r.json()["error"], TOKEN);
}

#[tokio::test]
async fn algorithm_is_pinned_before_the_signature() {
    let gw = seed().await;
    let payload = claims(json!(1)).to_string();
    let none = format!(
        "{}.{}.",
        b64(br#"{"typ":"JWT","alg":"none"}"#),
        b64(payload.as_bytes())
    );
    let no_alg = format!(
        "{}.{}.c2ln",
        b64(br#"{"typ":"JWT"}"#),
        b64(payload.as_bytes())
    );
    // Right secret, other HMAC algorithms: still refused.
    let hs384 = sign_with(
        jsonwebtoken::Algorithm::HS384,
        r#"{"typ":"JWT","alg":"HS384"}"#,
        &payload,
        SECRET,
    );
    let hs512 = sign_with(
        jsonwebtoken::Algorithm::HS512,
        r#"{"typ":"JWT","alg":"HS512"}"#,
        &payload,
        SECRET,
    );
    // `None`, `NONE`: every spelling.
    let none_upper = format!(
        "{}.{}.",
        b64(br#"{"typ":"JWT","alg":"NONE"}"#),
        b64(payload.as_bytes())
    );
    for t in [none, no_alg, hs384, hs512, none_upper] {
        call(&gw, Some(&jwt_header(&t))).await.assert_error(
            401,
            TOKEN,
            "The specified alg value is not allowed",
        );
    }
}

#[tokio::test]
async fn bad_signatures() {
    let gw = seed().await;
    let other = sign_with(
        jsonwebtoken::Algorithm::HS256,
        r#"{"typ":"JWT","alg":"HS256"}"#,
        &claims(json!(1)).to_string(),
        b"another-secret-another-secret-123456",
    );
    call(&gw, Some(&jwt_header(&other))).await.assert_error(
        401,
        TOKEN,
        "Signature verification failed",
    );
    // Tampered payload: identity 2 under user 1's signature.
    let good = token();
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims(json!("alice")).to_string().as_bytes()),
        parts[2]
    );
    call(&gw, Some(&jwt_header(&forged))).await.assert_error(
        401,
        TOKEN,
        "Signature verification failed",
    );
}

#[tokio::test]
async fn time_claims() {
    let gw = seed().await;
    let t = now();
    let cases = [
        (
            json!({"exp": t - 60, "iat": t - 400, "nbf": t - 400, "identity": 1}),
            "Signature has expired",
        ),
        (
            json!({"exp": t + 300, "iat": t, "nbf": t + 60, "identity": 1}),
            "The token is not yet valid (nbf)",
        ),
        (
            json!({"exp": t + 300, "iat": t + 60, "nbf": t, "identity": 1}),
            "Issued At claim (iat) cannot be in the future.",
        ),
        // Expired and not yet valid: nbf is reported (Flask-JWT's order).
        (
            json!({"exp": t - 60, "iat": t - 400, "nbf": t + 60, "identity": 1}),
            "The token is not yet valid (nbf)",
        ),
    ];
    for (c, description) in cases {
        call(&gw, Some(&jwt_header(&mint(c))))
            .await
            .assert_error(401, TOKEN, description);
    }
    // Within the 10 s leeway both ways: accepted.
    let edge = mint(json!({"exp": t - 5, "iat": t + 5, "nbf": t + 5, "identity": 1}));
    assert_eq!(call(&gw, Some(&jwt_header(&edge))).await.status, 200);
}

#[tokio::test]
async fn required_claims_and_types() {
    let gw = seed().await;
    let t = now();
    let cases = [
        (
            json!({"iat": t, "nbf": t, "identity": 1}),
            "Token is missing the \"exp\" claim",
        ),
        (
            json!({"exp": null, "iat": t, "nbf": t, "identity": 1}),
            "Token is missing the \"exp\" claim",
        ),
        (
            json!({"exp": t + 300, "nbf": t, "identity": 1}),
            "Token is missing the \"iat\" claim",
        ),
        (
            json!({"exp": t + 300, "iat": t, "identity": 1}),
            "Token is missing the \"nbf\" claim",
        ),
        (
            json!({"exp": "soon", "iat": t, "nbf": t, "identity": 1}),
            "Expiration Time claim (exp) must be an integer.",
        ),
        (
            json!({"exp": t + 300, "iat": true, "nbf": t, "identity": 1}),
            "Issued At claim (iat) must be an integer.",
        ),
        (
            json!({"exp": t + 300, "iat": t, "nbf": [1], "identity": 1}),
            "Not Before claim (nbf) must be an integer.",
        ),
        (
            json!({"exp": t + 300, "iat": t, "nbf": t, "identity": 1, "aud": "someone"}),
            "Invalid audience",
        ),
        (
            json!({"exp": t + 300, "iat": t, "nbf": t}),
            "Token is missing the \"identity\" claim",
        ),
        (
            json!({"exp": t + 300, "iat": t, "nbf": t, "identity": [1]}),
            "Identity claim must be a string or an integer",
        ),
        (
            json!({"exp": t + 300, "iat": t, "nbf": t, "identity": {"id": 1}}),
            "Identity claim must be a string or an integer",
        ),
    ];
    for (c, description) in cases {
        call(&gw, Some(&jwt_header(&mint(c.clone()))))
            .await
            .assert_error(401, TOKEN, description);
    }
    for payload in ["[1,2]", "\"text\"", "42"] {
        call(&gw, Some(&jwt_header(&sign_raw(payload))))
            .await
            .assert_error(401, TOKEN, "Invalid payload string: must be a json object");
    }
    call(&gw, Some(&jwt_header(&sign_raw("{not json"))))
        .await
        .assert_error(401, TOKEN, "Invalid payload string: not JSON");
    // A duplicated claim never wins silently.
    let dup = format!(
        r#"{{"exp":{},"iat":{t},"nbf":{t},"identity":2,"identity":1}}"#,
        t + 300
    );
    call(&gw, Some(&jwt_header(&sign_raw(&dup))))
        .await
        .assert_error(401, TOKEN, "Invalid payload string: duplicate claim");
    // Numbers that are not integers are still NumericDates (RFC 7519).
    let float = mint(json!({"exp": (t + 300) as f64 + 0.5, "iat": t, "nbf": t, "identity": 1}));
    assert_eq!(call(&gw, Some(&jwt_header(&float))).await.status, 200);
}

#[tokio::test]
async fn unknown_user_is_cut_off() {
    let gw = seed().await;
    call(&gw, Some(&jwt_header(&mint(claims(json!(99))))))
        .await
        .assert_error(401, "Invalid JWT", "User does not exist");
    // The id keeps its JSON type: "1" is not user 1.
    call(&gw, Some(&jwt_header(&mint(claims(json!("1"))))))
        .await
        .assert_error(401, "Invalid JWT", "User does not exist");
    // A string id works as a string.
    let r = call(&gw, Some(&jwt_header(&mint(claims(json!("alice")))))).await;
    assert_eq!(r.json(), json!({"identity": "alice"}));
}

#[tokio::test]
async fn issued_tokens_round_trip_and_match_flask_jwt_shape() {
    let gw = seed().await;
    let t = gw.login("user1", PASSWORD).await;
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = base64_json(parts[0]);
    assert_eq!(header, r#"{"typ":"JWT","alg":"HS256"}"#);
    let payload: serde_json::Value = serde_json::from_str(&base64_json(parts[1])).unwrap();
    let text = base64_json(parts[1]);
    let at: Vec<usize> = ["\"exp\"", "\"iat\"", "\"nbf\"", "\"identity\""]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "claims out of Flask-JWT order: {text}"
    );
    assert_eq!(payload["identity"], json!(1));
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(payload["nbf"], payload["iat"]);
    let r = call(&gw, Some(&jwt_header(&t))).await;
    assert_eq!(r.json(), json!({"identity": 1}));
}

fn base64_json(segment: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment)
            .unwrap(),
    )
    .unwrap()
}
