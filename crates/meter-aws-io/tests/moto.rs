//! SQS, CloudWatch and S3 against the local AWS emulator (moto), counting the requests sent.

use std::io::BufReader;

use chrono::{DateTime, Duration, Utc};
use meter_aws_io::{quarantine_key, CloudWatchMetrics, S3Objects, SqsJobs};
use meter_aws_testing::{unique, CountCalls};
use meter_core::collect::FetchJob;
use meter_core::decode::long_csv::LongCsvDecoder;
use meter_core::decode::DecodeOptions;
use meter_core::ports::{GetObject, ObjectError, ObjectStore};
use meter_core::ports::{MetricDatum, MetricPublisher};
use meter_core::MeterId;

#[tokio::test]
async fn jobs_go_ten_to_a_batch_and_an_oversized_one_is_reported() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let calls = CountCalls::default();
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    // 1,000 jobs over five queues of 200: moto's SQS slows down with every message one queue
    // holds (quadratically: 2,000 messages in one queue took a minute, 5,000 take several),
    // not the adapter; ten to a request is shown as well by 1,000 as by 10,000.
    let mut url = String::new();
    let mut jobs: Vec<FetchJob> = Vec::new();
    for q in 0..5 {
        url = meter_aws_testing::queue(&client, &unique("jobs")).await;
        jobs = (0..200)
            .map(|i| FetchJob {
                entries: vec![MeterId::new(&format!("id-{q}-{i}")).unwrap()],
            })
            .collect();
        let report = SqsJobs::new(client.clone(), &url)
            .send(&jobs)
            .await
            .unwrap();
        assert_eq!((report.written, report.failures.len()), (200, 0));
    }
    assert_eq!(
        calls.get("SendMessageBatch"),
        100,
        "1,000 jobs, ten to a request"
    );
    let queue = SqsJobs::new(client.clone(), &url);

    let huge = FetchJob {
        entries: (0..9000)
            .map(|i| MeterId::new(&format!("{i:0>120}")).unwrap())
            .collect(),
    };
    jobs.truncate(3);
    jobs.insert(1, huge);
    let report = queue.send(&jobs).await.unwrap();
    assert_eq!(report.written, 3);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].index, 1);
    assert!(
        report.failures[0].reason.contains("an SQS message holds"),
        "{}",
        report.failures[0].reason
    );

    let got = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    for m in got.messages() {
        let job = FetchJob::parse(m.body().unwrap()).unwrap();
        assert_eq!(job.entries.len(), 1);
    }
}

#[tokio::test]
async fn ten_thousand_values_take_ten_requests() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let calls = CountCalls::default();
    let client = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let metrics = CloudWatchMetrics::new(client.clone());
    let namespace = unique("MbedButtonPressHour");
    let start: DateTime<Utc> = (Utc::now() - Duration::hours(200))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let data: Vec<MetricDatum> = (0..10_000)
        .map(|i| MetricDatum {
            namespace: namespace.clone(),
            name: format!("ep-{}", i % 100),
            dimensions: vec![],
            time: start + Duration::hours(i / 100),
            value: 1.0,
            unit: "Count".into(),
        })
        .collect();
    let report = metrics.publish(&data).await.unwrap();
    assert_eq!((report.written, report.failures.len()), (10_000, 0));
    assert_eq!(calls.get("PutMetricData"), 10);
    // moto's statistics do not add up datums the way CloudWatch does; check what landed by name.
    let listed = client
        .list_metrics()
        .namespace(&namespace)
        .send()
        .await
        .unwrap();
    assert!(!listed.metrics().is_empty());
    assert!(listed
        .metrics()
        .iter()
        .all(|m| m.metric_name().is_some_and(|n| n.starts_with("ep-"))));
    assert!(
        listed.metrics().iter().all(|m| m.dimensions().is_empty()),
        "seed 002's layout: no dimensions"
    );
}

#[tokio::test]
async fn a_large_object_streams_through_the_decoder_and_a_report_lands_next_to_it() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("imports");
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let mut csv = String::from("meter,time,value\n");
    for i in 0..300_000 {
        csv.push_str(&format!(
            "m{},2024-01-01T00:{:02}:{:02}Z,{}\n",
            i % 7,
            (i / 60) % 60,
            i % 60,
            i % 13
        ));
    }
    let size = csv.len();
    client
        .put_object()
        .bucket(&bucket)
        .key("in/big file.csv")
        .body(csv.into_bytes().into())
        .send()
        .await
        .unwrap();
    let objects = S3Objects::new(client.clone());
    let object = objects
        .get(&bucket, "in/big file.csv", &GetObject::default())
        .await
        .unwrap();
    assert_eq!(object.size, Some(size as u64));
    let reader = object.body;
    let (ok, bad) = tokio::task::spawn_blocking(move || {
        let mut counts = (0usize, 0usize);
        for item in LongCsvDecoder::new(
            BufReader::new(reader),
            DecodeOptions::new("s3://x/in/big file.csv"),
        ) {
            match item {
                Ok(_) => counts.0 += 1,
                Err(_) => counts.1 += 1,
            }
        }
        counts
    })
    .await
    .unwrap();
    assert_eq!((ok, bad), (300_000, 0));
    let key = quarantine_key("in/big file.csv");
    objects
        .put(
            &bucket,
            &key,
            br#"{"rejected": []}"#.to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/json"));
    let err = objects
        .get(&bucket, "nope.csv", &GetObject::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ObjectError::NotFound { .. }), "{err}");
    // A range reads only its bytes; a version that is no longer current is told apart.
    let head = objects.get_bytes(&bucket, &key, 1024).await.unwrap();
    assert_eq!(head, br#"{"rejected": []}"#);
    let range = GetObject {
        range_start: Some(2),
        range_end: Some(10),
        ..GetObject::default()
    };
    let mut part = String::new();
    let body = objects.get(&bucket, &key, &range).await.unwrap().body;
    tokio::task::spawn_blocking(move || {
        let mut body = body;
        std::io::Read::read_to_string(&mut body, &mut part).map(|_| part)
    })
    .await
    .unwrap()
    .map(|p| assert_eq!(p, "rejected"))
    .unwrap();
    let stale = GetObject {
        if_version: Some("\"0000\"".into()),
        ..GetObject::default()
    };
    let err = objects.get(&bucket, &key, &stale).await.err().unwrap();
    assert!(matches!(err, ObjectError::VersionChanged { .. }), "{err}");
    let page = objects.list(&bucket, "quarantine/", None).await.unwrap();
    assert_eq!(page.keys, vec![key.clone()]);
}
