//! The secrets: values are generated or set with put-secret-value, never in the template.

use serde_json::json;

use super::ids;
use crate::cfn::{kind, skip_checkov, Handle, Template};

/// The stack's secrets.
pub(super) struct Secrets {
    pub(super) sst_secret: Handle<kind::Secret>,
    pub(super) api_secret: Handle<kind::Secret>,
    pub(super) hook_secret: Handle<kind::Secret>,
    pub(super) write_secret: Handle<kind::Secret>,
}

/// Adds the secrets.
pub(super) fn add(t: &mut Template) -> Secrets {
    let secret = |t: &mut Template, id: &str, description: &str| -> Handle<kind::Secret> {
        let h = t.add(
            id,
            "AWS::SecretsManager::Secret",
            json!({
                "Description": description,
                "GenerateSecretString": {"PasswordLength": 40, "ExcludePunctuation": true},
            }),
        );
        skip_checkov(
            t.resource(&h),
            "CKV_AWS_149",
            "Encrypted with the AWS-managed key; a CMK is a per-deployment choice.",
        );
        h
    };
    let sst_secret = secret(t, ids::SST_SECRET, "SST Cloud API token: set it with aws secretsmanager put-secret-value (scripts/deploy.sh prints how).");
    let api_secret = secret(
        t,
        ids::API_TOKEN_SECRET,
        "Bearer token of the meterflow API (generated).",
    );
    let hook_secret = secret(
        t,
        ids::WEBHOOK_SECRET,
        "Shared secret mbed Connector sends in x-webhook-secret (generated).",
    );

    let write_secret = secret(
        t,
        ids::WRITE_TOKEN_SECRET,
        "Token of the InfluxDB write API (Authorization: Token, or the password of 1.x clients) (generated).",
    );

    Secrets {
        sst_secret,
        api_secret,
        hook_secret,
        write_secret,
    }
}
