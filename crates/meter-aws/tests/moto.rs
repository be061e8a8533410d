//! Secrets from the local AWS emulator (moto): Secrets Manager and SSM, read once and cached.

use meter_aws::AwsSecrets;
use meter_core::ports::{SecretStore, StoreError};

#[tokio::test]
async fn secrets_are_read_once_and_cached() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let name = format!("meterflow/test/{}", std::process::id());
    sm.create_secret()
        .name(&name)
        .secret_string("tok-1")
        .send()
        .await
        .unwrap();
    let param = format!("/meterflow/test/{}", std::process::id());
    ssm.put_parameter()
        .name(&param)
        .value("hook-1")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();

    let secrets = AwsSecrets::new(&sdk);
    assert_eq!(secrets.secret(&name).await.unwrap(), "tok-1");
    assert_eq!(secrets.secret(&param).await.unwrap(), "hook-1");
    assert_eq!(
        secrets.secret(&format!("ssm:{param}")).await.unwrap(),
        "hook-1"
    );
    // Cached for the process: a rotation is seen by the next cold start, not mid-flight.
    sm.put_secret_value()
        .secret_id(&name)
        .secret_string("tok-2")
        .send()
        .await
        .unwrap();
    assert_eq!(secrets.secret(&name).await.unwrap(), "tok-1");
    assert_eq!(AwsSecrets::new(&sdk).secret(&name).await.unwrap(), "tok-2");
    let missing = secrets
        .secret("meterflow/no-such-secret")
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::Refused { .. }), "{missing}");
    assert!(
        !format!("{secrets:?}").contains("tok"),
        "the cache is not printed"
    );
}
