//! The fetch queue, the ingest queue (MQTT messages from IoT Core) and the dead-letter queues.

use serde_json::json;

use super::ids;
use crate::cfn::{kind, skip_checkov, Handle, Template};

/// The fetch function's timeout, which its queue's visibility timeout must cover.
pub(super) const FETCH_TIMEOUT: u32 = 120;
/// The ingest function's timeout (a batch of up to 1,000 small messages).
pub(super) const INGEST_TIMEOUT: u32 = 60;

/// The stack's queues.
pub(super) struct Queues {
    pub(super) fetch_dlq: Handle<kind::Queue>,
    pub(super) fetch_queue: Handle<kind::Queue>,
    pub(super) import_dlq: Handle<kind::Queue>,
    pub(super) stream_dlq: Handle<kind::Queue>,
    pub(super) schedule_dlq: Handle<kind::Queue>,
    pub(super) ingest_dlq: Handle<kind::Queue>,
    pub(super) ingest_queue: Handle<kind::Queue>,
}

fn queue(
    t: &mut Template,
    id: &str,
    visibility: u32,
    dlq: Option<&Handle<kind::Queue>>,
) -> Handle<kind::Queue> {
    let mut props = json!({
        "SqsManagedSseEnabled": true,
        "MessageRetentionPeriod": if dlq.is_none() { 1_209_600 } else { 345_600 },
        "VisibilityTimeout": visibility,
    });
    if let Some(d) = dlq {
        props["RedrivePolicy"] =
            json!({"deadLetterTargetArn": d.arn().into_value(), "maxReceiveCount": 5});
    }
    let h = t.add(id, "AWS::SQS::Queue", props);
    skip_checkov(t.resource(&h), "CKV_AWS_27", "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled); checkov recognises only KMS keys.");
    h
}

/// Adds the queues.
pub(super) fn add(t: &mut Template) -> Queues {
    let fetch_dlq = queue(t, ids::FETCH_DEAD_LETTER_QUEUE, 60, None);
    let fetch_queue = queue(t, ids::FETCH_QUEUE, 6 * FETCH_TIMEOUT, Some(&fetch_dlq));
    let import_dlq = queue(t, "ImportDeadLetterQueue", 60, None);
    let stream_dlq = queue(t, "StreamDeadLetterQueue", 60, None);
    let schedule_dlq = queue(t, "ScheduleDeadLetterQueue", 60, None);
    // MQTT messages from the IoT topic rule: messages that keep failing, and those the rule
    // itself could not deliver (its error action), wait in the dead-letter queue.
    let ingest_dlq = queue(t, ids::INGEST_DEAD_LETTER_QUEUE, 60, None);
    let ingest_queue = queue(t, ids::INGEST_QUEUE, 6 * INGEST_TIMEOUT, Some(&ingest_dlq));

    Queues {
        fetch_dlq,
        fetch_queue,
        import_dlq,
        stream_dlq,
        schedule_dlq,
        ingest_dlq,
        ingest_queue,
    }
}
