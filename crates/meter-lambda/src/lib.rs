//! What the meterflow Lambda functions share: configuration read once from the environment
//! (names from `meter_core::contract::cloud`), with errors that name the variable, and, with the
//! `history` feature, the history store the configuration selects (the `meter` CLI opens its
//! cloud stores through it too); and [`metrics`], the operational metrics each invocation
//! writes as CloudWatch embedded-metric log lines.

pub mod metrics;

use meter_core::contract::cloud as names;

/// A setting that is missing or malformed; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable's value is not one the function accepts.
    #[error("environment variable {name} is {value:?}: {why}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        why: &'static str,
    },
    /// A variable holds a document (a mapping) that cannot be read.
    #[error("environment variable {name}: {why}")]
    Malformed {
        /// The variable.
        name: &'static str,
        /// What is wrong, and where.
        why: String,
    },
}

/// Reads variables through a lookup function, so tests need not touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> std::fmt::Debug for Env<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: never printed.
        f.write_str("Env")
    }
}

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        Env(|k| std::env::var(k).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// A variable's value, `None` when unset or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A required variable.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// The first of several names that is set (a name and the seed's older spelling).
    pub fn either(&self, names: &[&'static str]) -> Result<String, ConfigError> {
        names
            .iter()
            .find_map(|n| self.optional(n))
            .ok_or(ConfigError::Missing(names[0]))
    }
}

/// Which history store a function uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryConfig {
    /// A DynamoDB readings table.
    Dynamo {
        /// The table.
        table: String,
    },
    /// A Timestream table.
    Timestream {
        /// The database.
        database: String,
        /// The table.
        table: String,
    },
}

impl HistoryConfig {
    /// From `HISTORY_STORE` (`dynamodb`, the default, or `timestream`) and the table variables;
    /// seed 000's `DATABASE_NAME` and `TABLE_NAME` are accepted for Timestream.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let kind = env
            .optional(names::ENV_HISTORY_STORE)
            .unwrap_or_else(|| "dynamodb".into());
        match kind.as_str() {
            "dynamodb" => Ok(Self::Dynamo {
                table: env.required(names::ENV_READINGS_TABLE)?,
            }),
            "timestream" => Ok(Self::Timestream {
                database: env.either(&[names::ENV_TIMESTREAM_DATABASE, "DATABASE_NAME"])?,
                table: env.either(&[names::ENV_TIMESTREAM_TABLE, "TABLE_NAME"])?,
            }),
            _ => Err(ConfigError::Invalid {
                name: names::ENV_HISTORY_STORE,
                value: kind,
                why: "use dynamodb or timestream",
            }),
        }
    }
}

/// The history store as both ports.
#[cfg(feature = "history")]
#[derive(Clone)]
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct History {
    /// Where readings are written.
    pub writer: std::sync::Arc<dyn meter_core::ports::ReadingWriter>,
    /// Where readings are read.
    pub reader: std::sync::Arc<dyn meter_core::ports::ReadingReader>,
}

#[cfg(feature = "history")]
impl History {
    /// Builds the store the configuration names. No request is sent: Timestream discovers its
    /// endpoint on first use, so a cold start that never touches it does not pay for that.
    pub fn new(sdk: &aws_config::SdkConfig, config: &HistoryConfig) -> Self {
        Self::build(sdk, config, false)
    }

    /// The same for a bulk write (an import): the writer defers what it can to its
    /// [`meter_core::ports::ReadingWriter::flush`] (DynamoDB's stored rollups).
    pub fn bulk(sdk: &aws_config::SdkConfig, config: &HistoryConfig) -> Self {
        Self::build(sdk, config, true)
    }

    fn build(sdk: &aws_config::SdkConfig, config: &HistoryConfig, bulk: bool) -> Self {
        use std::sync::Arc;
        match config {
            HistoryConfig::Dynamo { table } => {
                let store = meter_store_dynamodb::DynamoReadings::new(
                    aws_sdk_dynamodb::Client::new(sdk),
                    table,
                );
                let store = Arc::new(if bulk {
                    store.deferring_rollups()
                } else {
                    store
                });
                Self {
                    writer: store.clone(),
                    reader: store,
                }
            }
            HistoryConfig::Timestream { database, table } => {
                let store = Arc::new(meter_store_timestream::TimestreamReadings::new(
                    sdk,
                    meter_store_timestream::TimestreamConfig::new(database, table),
                ));
                Self {
                    writer: store.clone(),
                    reader: store,
                }
            }
        }
    }
}

/// An axum router built on the first request that needs it (its authentication needs a
/// secret, and a cold start should not wait for one), then kept for the instance's life. A
/// failed build answers its error and is tried again by the next request. Each answer is
/// counted by class in a metric line (refused credentials, other 4xx, 5xx).
#[cfg(feature = "http")]
#[derive(Debug)]
pub struct LazyRouter {
    router: tokio::sync::OnceCell<axum::Router>,
    metrics: metrics::Emitter,
}

#[cfg(feature = "http")]
impl LazyRouter {
    /// A router not built yet, counting its answers in `metrics`.
    pub fn new(metrics: metrics::Emitter) -> Self {
        Self {
            router: tokio::sync::OnceCell::new(),
            metrics,
        }
    }

    /// Serves one Function URL request, building the router with `build` if it is not built.
    pub async fn serve<F, Fut>(
        &self,
        build: F,
        req: lambda_http::Request,
    ) -> Result<axum::response::Response, std::convert::Infallible>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<axum::Router, axum::response::Response>>,
    {
        use tower::ServiceExt;
        let answer = async {
            let router = match self.router.get_or_try_init(build).await {
                Ok(r) => r.clone(),
                Err(response) => return Ok(response),
            };
            router.oneshot(req).await
        };
        self.metrics
            .measure(answer, |r| match r {
                Ok(response) => metrics::http_counts(response.status().as_u16()),
                Err(never) => match *never {},
            })
            .await
    }
}

/// Events shaped as Lambda delivers them, for the functions' tests.
#[cfg(feature = "test-util")]
pub mod testing {
    use serde_json::{json, Value};

    /// A Function URL request (payload format 2.0, as AWS documents it).
    pub fn function_url_request(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> lambda_http::Request {
        let mut h = json!({
            "host": "abcdefg.lambda-url.us-east-1.on.aws",
            "user-agent": "test",
        });
        for (k, v) in headers {
            h[*k] = json!(v);
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "headers": h,
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abcdefg",
                "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abcdefg",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.7", "userAgent": "test"},
                "requestId": "id",
                "routeKey": "$default",
                "stage": "$default",
                "time": "23/Nov/2026:12:00:00 +0000",
                "timeEpoch": 1_795_435_200_000u64
            },
            "isBase64Encoded": false
        });
        if let Some(b) = body {
            event["body"] = Value::String(b.to_owned());
        }
        if !query.is_empty() {
            let params: serde_json::Map<String, Value> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect();
            event["queryStringParameters"] = Value::Object(params);
        }
        lambda_http::request::from_str(&event.to_string()).expect("a valid Function URL event")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env(move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_history_store_is_chosen_by_name_and_missing_settings_are_named() {
        assert_eq!(
            HistoryConfig::from_env(&env(&[("READINGS_TABLE", "r")])).unwrap(),
            HistoryConfig::Dynamo { table: "r".into() }
        );
        assert_eq!(
            HistoryConfig::from_env(&env(&[
                ("HISTORY_STORE", "timestream"),
                ("DATABASE_NAME", "mydb"),
                ("TIMESTREAM_TABLE", "meters"),
            ]))
            .unwrap(),
            HistoryConfig::Timestream {
                database: "mydb".into(),
                table: "meters".into()
            }
        );
        assert_eq!(
            HistoryConfig::from_env(&env(&[("READINGS_TABLE", " ")])).unwrap_err(),
            ConfigError::Missing("READINGS_TABLE")
        );
        let err = HistoryConfig::from_env(&env(&[("HISTORY_STORE", "influx")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable HISTORY_STORE is \"influx\": use dynamodb or timestream"
        );
        let err = HistoryConfig::from_env(&env(&[("HISTORY_STORE", "timestream")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TIMESTREAM_DATABASE"));
    }
}
