//! Security over the deployed stack: the webhook and the API refuse missing, wrong and
//! almost-right secrets, and no secret value (nor a caller's near miss) appears in any log line
//! the handlers or the AWS SDK print, captured at TRACE level.

use std::io::Write;
use std::sync::{Arc, Mutex};

use e2e::deploy::Deployment;
use e2e::{call, lookup};
use infra::stack::ids;
use infra::HistoryStore;
use meter_lambda::testing::function_url_request;

/// Every log line, as the function would print it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn secret(sdk: &aws_config::SdkConfig, dep: &Deployment, id: &str) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(dep.reference(id).unwrap())
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap()
}

/// Near misses of a secret: one character short, one extra, the last one changed, another case.
fn near_misses(s: &str) -> Vec<String> {
    let last = s.chars().last().unwrap();
    let changed = if last == 'x' { 'y' } else { 'x' };
    vec![
        s[..s.len() - 1].to_owned(),
        format!("{s}x"),
        format!("{}{changed}", &s[..s.len() - 1]),
        s.to_uppercase(),
        s.to_lowercase(),
    ]
    .into_iter()
    .filter(|m| m != s)
    .collect()
}

#[tokio::test]
async fn secrets_are_checked_exactly_and_never_logged() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on one thread (tokio's test runtime), so every task logs through this.
    let _guard = tracing::subscriber::set_default(subscriber);

    let stack = format!("secrets{}", std::process::id());
    let dep = Deployment::local(&sdk, &stack, HistoryStore::DynamoDb, None)
        .await
        .unwrap();
    let hook_secret = secret(&sdk, &dep, ids::WEBHOOK_SECRET).await;
    let api_token = secret(&sdk, &dep, ids::API_TOKEN_SECRET).await;

    let env = dep.function_env("webhook", &[]).unwrap();
    let hook = meter_fn_webhook::Webhook::new(
        &sdk,
        &meter_fn_webhook::Config::from_env(&lookup(&env)).unwrap(),
    );
    let body = r#"{"notifications":[{"ep":"b","path":"/3200/0/5501","ct":"text/plain","payload":"MQ==","max-age":0}]}"#;
    let press = |secret: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(s) = secret {
            headers.push(("x-webhook-secret", s));
        }
        function_url_request("PUT", "/webhook", "", &headers, Some(body))
    };
    let status = |r: Result<(u16, Vec<u8>), e2e::CallError>| r.unwrap().0;
    let webhook = |req| meter_fn_webhook::handle(&hook, req);
    assert_eq!(status(call(webhook, press(Some(&hook_secret))).await), 200);
    assert_eq!(status(call(webhook, press(None)).await), 401);
    for miss in near_misses(&hook_secret) {
        assert_eq!(
            status(call(webhook, press(Some(&miss))).await),
            401,
            "{miss}"
        );
    }

    let env = dep.function_env("api", &[]).unwrap();
    let api = meter_fn_api::Api::new(
        &sdk,
        &meter_fn_api::Config::from_env(&lookup(&env)).unwrap(),
    );
    let get =
        |path: &str, headers: &[(&str, &str)]| function_url_request("GET", path, "", headers, None);
    let api_call = |req| meter_fn_api::handle(&api, req);
    let bearer = format!("Bearer {api_token}");
    assert_eq!(
        status(call(api_call, get("/v1/meters", &[("authorization", &bearer)])).await),
        200
    );
    assert_eq!(status(call(api_call, get("/v1/meters", &[])).await), 401);
    for miss in near_misses(&api_token) {
        let b = format!("Bearer {miss}");
        assert_eq!(
            status(call(api_call, get("/v1/meters", &[("authorization", &b)])).await),
            401,
            "{miss}"
        );
        assert_eq!(
            status(
                call(
                    api_call,
                    get("/timeSeries-data", &[("x-security-token", &miss)])
                )
                .await
            ),
            401,
            "{miss}"
        );
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.lines().count() > 20 && text.contains("GetSecretValue"),
        "the capture sees the SDK's trace lines:\n{}",
        &text[..text.len().min(2000)]
    );
    for value in [hook_secret.clone(), api_token.clone()]
        .into_iter()
        .chain(near_misses(&hook_secret))
        .chain(near_misses(&api_token))
    {
        assert!(
            !text.contains(&value),
            "a secret (or a near miss) is in the logs: {}",
            text.lines()
                .find(|l| l.contains(&value))
                .unwrap_or_default()
        );
    }
}
