//! The import bucket: versioned, private, encrypted, announcing new objects to EventBridge.

use serde_json::json;

use super::ids;
use crate::cfn::{kind, skip_checkov, Handle, Template};

/// Adds the import bucket.
pub(super) fn add(t: &mut Template) -> Handle<kind::Bucket> {
    let bucket: Handle<kind::Bucket> = t.add(
        ids::IMPORT_BUCKET,
        "AWS::S3::Bucket",
        json!({
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true},
            "VersioningConfiguration": {"Status": "Enabled"},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": true}},
            "LifecycleConfiguration": {"Rules": [{"Id": "expire-old-versions", "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]},
        }),
    );
    let r = t.resource(&bucket);
    skip_checkov(
        r,
        "CKV_AWS_18",
        "Access logging needs a second bucket; imports are logged by the import function.",
    );
    skip_checkov(
        r,
        "CKV_AWS_144",
        "Cross-region replication is a disaster-recovery choice per deployment.",
    );
    skip_checkov(
        r,
        "CKV_AWS_145",
        "SSE-S3 encryption; a CMK is a per-deployment choice.",
    );

    bucket
}
