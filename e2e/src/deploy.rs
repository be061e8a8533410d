//! A local deployment of the synthesised template: every resource the emulator can hold (tables,
//! queues, the bucket, secrets, the Timestream database and table) is created from the
//! template's own properties, with intrinsic functions resolved, so names and settings are never
//! typed twice. moto's CloudFormation cannot do this itself: it marks Timestream databases and
//! tables, secrets and Function URLs CREATE_COMPLETE without creating them, drops `Ref`s to
//! them and rejects `Fn::GetAtt` on them. Functions are not
//! created: their environment is resolved from the template and their handlers run in-process.
//! Everything else (roles, log groups, schedules, mappings, rules, alarms) is listed as played
//! by the driver.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use serde_json::{Map, Value};

/// What went wrong deploying.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The template uses something this deployer does not resolve.
    #[error("template: {0}")]
    Template(String),
    /// A parameter without a default was not given.
    #[error("parameter {0} has no default and was not given")]
    Parameter(String),
    /// The emulator refused a call.
    #[error("creating {logical} ({kind}): {message}")]
    Create {
        /// The resource's logical id.
        logical: String,
        /// Its type.
        kind: String,
        /// The SDK's error.
        message: String,
    },
}

/// A resource's physical identity: what `Ref` gives and the `Fn::GetAtt` attributes.
#[derive(Debug, Clone)]
struct Physical {
    reference: String,
    attributes: BTreeMap<&'static str, String>,
}

/// Why a value could not be resolved yet.
enum Unresolved {
    /// It refers to a resource not created yet (or never created).
    Waiting(String),
    /// It is malformed or unsupported.
    Invalid(String),
}

/// The resource types created in the emulator.
pub const EMULATED: [&str; 6] = [
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::S3::Bucket",
    "AWS::SecretsManager::Secret",
    "AWS::Timestream::Database",
    "AWS::Timestream::Table",
];

const ACCOUNT: &str = "123456789012";

/// A deployed stack.
#[derive(Debug)]
pub struct Deployment {
    /// The stack name (a prefix of every physical name).
    pub stack: String,
    region: String,
    template: Value,
    parameters: BTreeMap<String, String>,
    conditions: BTreeMap<String, bool>,
    created: BTreeMap<String, Physical>,
    /// Resources left to the driver: (logical id, type).
    pub played_by_driver: Vec<(String, String)>,
}

fn err(logical: &str, kind: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Create {
        logical: logical.to_owned(),
        kind: kind.to_owned(),
        message: e.to_string(),
    }
}

/// An SDK error with its chain of causes (the SDKs' `Display` shows only the outermost).
fn describe<E: std::error::Error>(e: E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Deployment {
    /// Creates every emulated resource of `template` under `stack`, with `parameters` over the
    /// template's defaults.
    pub async fn deploy(
        sdk: &SdkConfig,
        template: Value,
        stack: &str,
        parameters: &[(&str, &str)],
    ) -> Result<Self, DeployError> {
        Self::deploy_only(sdk, template, stack, parameters, None).await
    }

    /// The stack as the end-to-end runs deploy it: the template variant for `history`, the
    /// code parameters marking the handlers as run in-process, and the API behind its bearer
    /// token (`ApiAuthType=NONE`); only the resources in `only`, when given.
    pub async fn local(
        sdk: &SdkConfig,
        stack: &str,
        history: infra::HistoryStore,
        only: Option<&[&str]>,
    ) -> Result<Self, DeployError> {
        let template = infra::synth(infra::StackOptions { history }).map_err(|p| {
            DeployError::Template(format!("the template fails its own checks: {p:?}"))
        })?;
        let keys: Vec<String> = meter_core::contract::cloud::FUNCTIONS
            .iter()
            .map(|f| infra::stack::code_key_parameter(f))
            .collect();
        let mut params: Vec<(&str, &str)> =
            keys.iter().map(|k| (k.as_str(), "in-process")).collect();
        params.push(("CodeBucket", "not-deployed"));
        params.push(("ApiAuthType", "NONE"));
        params.push(("HistoryStore", history.as_str()));
        Self::deploy_only(sdk, template, stack, &params, only).await
    }

    /// The same, creating only the resources named in `only` (when given; the others are
    /// listed as played by the driver).
    pub async fn deploy_only(
        sdk: &SdkConfig,
        template: Value,
        stack: &str,
        parameters: &[(&str, &str)],
        only: Option<&[&str]>,
    ) -> Result<Self, DeployError> {
        let region = sdk
            .region()
            .map_or("us-east-1".to_owned(), ToString::to_string);
        let mut d = Self::plan(template, stack, parameters, &region)?;
        let resources = d.template["Resources"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut pending: Vec<(String, Value)> = Vec::new();
        for (logical, r) in resources {
            if let Some(c) = r.get("Condition").and_then(Value::as_str) {
                if !d.conditions.get(c).copied().unwrap_or(false) {
                    continue;
                }
            }
            let kind = r["Type"].as_str().unwrap_or_default().to_owned();
            let wanted = only.is_none_or(|o| o.contains(&logical.as_str()));
            if EMULATED.contains(&kind.as_str()) && wanted {
                pending.push((logical, r));
            } else {
                d.played_by_driver.push((logical, kind));
            }
        }
        // Create in dependency order: each pass creates what refers only to created resources.
        while !pending.is_empty() {
            let mut waiting = Vec::new();
            let before = pending.len();
            for (logical, r) in pending {
                let props = r
                    .get("Properties")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                match d.resolve(&props) {
                    Ok(props) => {
                        let props = props.unwrap_or(Value::Object(Map::new()));
                        let kind = r["Type"].as_str().unwrap_or_default();
                        let physical = d.create(sdk, &logical, kind, &props).await?;
                        d.created.insert(logical, physical);
                    }
                    Err(Unresolved::Waiting(_)) => waiting.push((logical, r)),
                    Err(Unresolved::Invalid(m)) => {
                        return Err(DeployError::Template(format!("{logical}: {m}")))
                    }
                }
            }
            if waiting.len() == before {
                let names: Vec<_> = waiting.iter().map(|(l, _)| l.as_str()).collect();
                return Err(DeployError::Template(format!(
                    "cannot resolve the references of {}",
                    names.join(", ")
                )));
            }
            pending = waiting;
        }
        Ok(d)
    }

    /// The stack's parameters and conditions, before anything is created.
    fn plan(
        template: Value,
        stack: &str,
        parameters: &[(&str, &str)],
        region: &str,
    ) -> Result<Self, DeployError> {
        let mut params = BTreeMap::new();
        let declared = template["Parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, spec) in &declared {
            let given = parameters
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| (*v).to_owned());
            let value = given
                .or_else(|| spec.get("Default").and_then(text))
                .ok_or_else(|| DeployError::Parameter(name.clone()))?;
            params.insert(name.clone(), value);
        }
        if let Some((k, _)) = parameters.iter().find(|(k, _)| !declared.contains_key(*k)) {
            return Err(DeployError::Template(format!("no parameter {k}")));
        }
        let mut d = Self {
            stack: stack.to_owned(),
            region: region.to_owned(),
            template,
            parameters: params,
            conditions: BTreeMap::new(),
            created: BTreeMap::new(),
            played_by_driver: Vec::new(),
        };
        let conditions = d.template["Conditions"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, expr) in &conditions {
            let value = d.condition(expr)?;
            d.conditions.insert(name.clone(), value);
        }
        Ok(d)
    }

    /// The names of the created resources, by logical id, with their types.
    pub fn created(&self) -> Vec<(String, String, String)> {
        self.created
            .iter()
            .map(|(l, p)| {
                let kind = self.template["Resources"][l]["Type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (l.clone(), kind, p.reference.clone())
            })
            .collect()
    }

    /// What `Ref` gives for a created resource.
    pub fn reference(&self, logical: &str) -> Option<&str> {
        self.created.get(logical).map(|p| p.reference.as_str())
    }

    /// A created resource's attribute (`Arn`, `StreamArn`, `QueueName`, `Name`).
    pub fn attribute(&self, logical: &str, attribute: &str) -> Option<&str> {
        self.created
            .get(logical)
            .and_then(|p| p.attributes.get(attribute))
            .map(String::as_str)
    }

    /// A function's environment (`fetch`, `stream-metrics`, ...) as the template declares it,
    /// resolved, with `extra` variables added (stand-in URLs).
    pub fn function_env(
        &self,
        function: &str,
        extra: &[(&str, String)],
    ) -> Result<BTreeMap<String, String>, DeployError> {
        let logical = infra::stack::function_id(function);
        let vars = &self.template["Resources"][&logical]["Properties"]["Environment"]["Variables"];
        if vars.is_null() {
            return Err(DeployError::Template(format!(
                "{logical} has no environment"
            )));
        }
        let resolved = self.resolve(vars).map_err(|e| match e {
            Unresolved::Waiting(m) | Unresolved::Invalid(m) => {
                DeployError::Template(format!("{logical} environment: {m}"))
            }
        })?;
        let mut out = BTreeMap::new();
        if let Some(Value::Object(m)) = resolved {
            for (k, v) in m {
                let v = text(&v).ok_or_else(|| {
                    DeployError::Template(format!("{logical} {k}: not a string: {v}"))
                })?;
                out.insert(k, v);
            }
        }
        for (k, v) in extra {
            out.insert((*k).to_owned(), v.clone());
        }
        Ok(out)
    }

    fn condition(&self, expr: &Value) -> Result<bool, DeployError> {
        let bad = || DeployError::Template(format!("unsupported condition {expr}"));
        let (f, args) = expr
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(bad)?;
        let list = args.as_array();
        match f.as_str() {
            "Fn::Equals" => {
                let l = list.filter(|l| l.len() == 2).ok_or_else(bad)?;
                let side = |v: &Value| match self.resolve(v) {
                    Ok(Some(v)) => text(&v).ok_or_else(bad),
                    _ => Err(bad()),
                };
                Ok(side(&l[0])? == side(&l[1])?)
            }
            "Fn::Not" => Ok(!self.condition(list.and_then(|l| l.first()).ok_or_else(bad)?)?),
            "Fn::And" | "Fn::Or" => {
                let mut values = Vec::new();
                for c in list.ok_or_else(bad)? {
                    values.push(self.condition(c)?);
                }
                Ok(if f == "Fn::And" {
                    values.iter().all(|v| *v)
                } else {
                    values.iter().any(|v| *v)
                })
            }
            "Condition" => {
                let name = args.as_str().ok_or_else(bad)?;
                match self.conditions.get(name) {
                    Some(v) => Ok(*v),
                    None => {
                        let def = self.template["Conditions"].get(name).ok_or_else(bad)?;
                        self.condition(def)
                    }
                }
            }
            _ => Err(bad()),
        }
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(ACCOUNT.to_owned()),
            "AWS::StackName" => Some(self.stack.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            _ => None,
        }
    }

    fn reference_of(&self, name: &str) -> Result<Value, Unresolved> {
        if let Some(v) = self.parameters.get(name) {
            return Ok(Value::String(v.clone()));
        }
        if let Some(v) = self.pseudo(name) {
            return Ok(Value::String(v));
        }
        match self.created.get(name) {
            Some(p) => Ok(Value::String(p.reference.clone())),
            None => Err(Unresolved::Waiting(name.to_owned())),
        }
    }

    fn attribute_of(&self, logical: &str, attribute: &str) -> Result<Value, Unresolved> {
        let p = self
            .created
            .get(logical)
            .ok_or_else(|| Unresolved::Waiting(logical.to_owned()))?;
        p.attributes
            .get(attribute)
            .map(|v| Value::String(v.clone()))
            .ok_or_else(|| Unresolved::Invalid(format!("{logical} has no attribute {attribute}")))
    }

    /// Resolves intrinsic functions; `None` is `AWS::NoValue`.
    fn resolve(&self, v: &Value) -> Result<Option<Value>, Unresolved> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    if let Some(r) = self.resolve(i)? {
                        out.push(r);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(o) if o.len() == 1 => {
                let (k, arg) = o.iter().next().unwrap_or_else(|| unreachable!());
                match k.as_str() {
                    "Ref" => {
                        let name = arg.as_str().unwrap_or_default();
                        if name == "AWS::NoValue" {
                            return Ok(None);
                        }
                        self.reference_of(name).map(Some)
                    }
                    "Fn::GetAtt" => {
                        let parts: Vec<&str> = match arg {
                            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                            Value::String(s) => s.splitn(2, '.').collect(),
                            _ => vec![],
                        };
                        match parts.as_slice() {
                            [l, a] => self.attribute_of(l, a).map(Some),
                            _ => Err(Unresolved::Invalid(format!("Fn::GetAtt {arg}"))),
                        }
                    }
                    "Fn::If" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 3)
                            .ok_or_else(|| Unresolved::Invalid(format!("Fn::If {arg}")))?;
                        let c = a[0].as_str().unwrap_or_default();
                        let on = *self
                            .conditions
                            .get(c)
                            .ok_or_else(|| Unresolved::Invalid(format!("no condition {c}")))?;
                        self.resolve(if on { &a[1] } else { &a[2] })
                    }
                    "Fn::Join" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 2)
                            .ok_or_else(|| Unresolved::Invalid(format!("Fn::Join {arg}")))?;
                        let sep = a[0].as_str().unwrap_or_default();
                        let parts = self.resolve(&a[1])?.unwrap_or(Value::Array(vec![]));
                        let parts: Vec<String> = parts
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(text)
                            .collect();
                        Ok(Some(Value::String(parts.join(sep))))
                    }
                    "Fn::Sub" => {
                        let s = arg
                            .as_str()
                            .ok_or_else(|| Unresolved::Invalid(format!("Fn::Sub {arg}")))?;
                        self.substitute(s).map(|s| Some(Value::String(s)))
                    }
                    f if f.starts_with("Fn::") => {
                        Err(Unresolved::Invalid(format!("unsupported {f}")))
                    }
                    _ => self.resolve_map(o),
                }
            }
            Value::Object(o) => self.resolve_map(o),
            other => Ok(Some(other.clone())),
        }
    }

    fn resolve_map(&self, o: &Map<String, Value>) -> Result<Option<Value>, Unresolved> {
        let mut out = Map::new();
        for (k, v) in o {
            if let Some(r) = self.resolve(v)? {
                out.insert(k.clone(), r);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn substitute(&self, s: &str) -> Result<String, Unresolved> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| Unresolved::Invalid(format!("Fn::Sub {s}")))?;
            let name = &after[..end];
            let value = match name.split_once('.') {
                Some((l, a)) => self.attribute_of(l, a)?,
                None => self.reference_of(name)?,
            };
            out.push_str(&text(&value).unwrap_or_default());
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A physical name as CloudFormation makes one: stack and logical id (CloudFormation adds a
    /// random suffix; the stack name here is unique per run instead).
    fn name(&self, logical: &str) -> String {
        format!("{}-{logical}", self.stack)
    }

    async fn create(
        &self,
        sdk: &SdkConfig,
        logical: &str,
        kind: &str,
        p: &Value,
    ) -> Result<Physical, DeployError> {
        let e = |m: &dyn std::fmt::Display| err(logical, kind, m);
        let name = self.name(logical);
        let mut attributes = BTreeMap::new();
        let reference = match kind {
            "AWS::DynamoDB::Table" => {
                let ddb = aws_sdk_dynamodb::Client::new(sdk);
                let stream_arn = create_table(&ddb, &name, p).await.map_err(|m| e(&m))?;
                attributes.insert(
                    "Arn",
                    format!("arn:aws:dynamodb:{}:{ACCOUNT}:table/{name}", self.region),
                );
                if let Some(s) = stream_arn {
                    attributes.insert("StreamArn", s);
                }
                name
            }
            "AWS::SQS::Queue" => {
                let sqs = aws_sdk_sqs::Client::new(sdk);
                let mut req = sqs.create_queue().queue_name(&name);
                for (k, v) in p.as_object().into_iter().flatten() {
                    let v = match v {
                        Value::Object(_) => v.to_string(),
                        other => text(other).ok_or_else(|| e(&format!("{k}: {other}")))?,
                    };
                    let attr = aws_sdk_sqs::types::QueueAttributeName::from(k.as_str());
                    req = req.attributes(attr, v);
                }
                let url = req
                    .send()
                    .await
                    .map_err(|x| e(&describe(x)))?
                    .queue_url
                    .unwrap_or_default();
                attributes.insert(
                    "Arn",
                    format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", self.region),
                );
                attributes.insert("QueueName", name);
                attributes.insert("QueueUrl", url.clone());
                url
            }
            "AWS::S3::Bucket" => {
                let name = name.to_lowercase();
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(sdk)
                        .force_path_style(true)
                        .build(),
                );
                s3.create_bucket()
                    .bucket(&name)
                    .send()
                    .await
                    .map_err(|x| e(&describe(x)))?;
                if p["VersioningConfiguration"]["Status"] == "Enabled" {
                    s3.put_bucket_versioning()
                        .bucket(&name)
                        .versioning_configuration(
                            aws_sdk_s3::types::VersioningConfiguration::builder()
                                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|x| e(&describe(x)))?;
                }
                attributes.insert("Arn", format!("arn:aws:s3:::{name}"));
                name
            }
            "AWS::SecretsManager::Secret" => {
                let sm = aws_sdk_secretsmanager::Client::new(sdk);
                let generate = &p["GenerateSecretString"];
                let mut req = sm.create_secret().name(&name);
                if let Some(d) = p["Description"].as_str() {
                    req = req.description(d);
                }
                if generate.is_object() {
                    let password = sm
                        .get_random_password()
                        .set_password_length(generate["PasswordLength"].as_i64())
                        .set_exclude_punctuation(generate["ExcludePunctuation"].as_bool())
                        .send()
                        .await
                        .map_err(|x| e(&describe(x)))?
                        .random_password
                        .unwrap_or_default();
                    req = req.secret_string(password);
                }
                let out = req.send().await.map_err(|x| e(&describe(x)))?;
                let arn = out.arn.unwrap_or_default();
                attributes.insert("Id", arn.clone());
                arn
            }
            "AWS::Timestream::Database" => {
                let ts = aws_sdk_timestreamwrite::Client::new(sdk);
                ts.create_database()
                    .database_name(&name)
                    .send()
                    .await
                    .map_err(|x| e(&describe(x)))?;
                attributes.insert(
                    "Arn",
                    format!(
                        "arn:aws:timestream:{}:{ACCOUNT}:database/{name}",
                        self.region
                    ),
                );
                name
            }
            "AWS::Timestream::Table" => {
                use aws_sdk_timestreamwrite::types::{
                    MagneticStoreWriteProperties, RetentionProperties,
                };
                let ts = aws_sdk_timestreamwrite::Client::new(sdk);
                let db = p["DatabaseName"]
                    .as_str()
                    .ok_or_else(|| e(&"no DatabaseName"))?;
                let r = &p["RetentionProperties"];
                let num = |v: &Value| text(v).and_then(|s| s.parse::<i64>().ok());
                let retention = RetentionProperties::builder()
                    .set_memory_store_retention_period_in_hours(num(
                        &r["MemoryStoreRetentionPeriodInHours"]
                    ))
                    .set_magnetic_store_retention_period_in_days(num(
                        &r["MagneticStoreRetentionPeriodInDays"]
                    ))
                    .build()
                    .map_err(|x| e(&x))?;
                let magnetic = MagneticStoreWriteProperties::builder()
                    .enable_magnetic_store_writes(
                        p["MagneticStoreWriteProperties"]["EnableMagneticStoreWrites"]
                            .as_bool()
                            .unwrap_or(false),
                    )
                    .build()
                    .map_err(|x| e(&x))?;
                ts.create_table()
                    .database_name(db)
                    .table_name(&name)
                    .retention_properties(retention)
                    .magnetic_store_write_properties(magnetic)
                    .send()
                    .await
                    .map_err(|x| e(&describe(x)))?;
                attributes.insert(
                    "Arn",
                    format!(
                        "arn:aws:timestream:{}:{ACCOUNT}:database/{db}/table/{name}",
                        self.region
                    ),
                );
                attributes.insert("Name", name.clone());
                format!("{db}|{name}")
            }
            other => return Err(e(&format!("{other} is not emulated"))),
        };
        Ok(Physical {
            reference,
            attributes,
        })
    }
}

/// Creates a table from its template properties; answers its stream ARN when it has one.
async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    p: &Value,
) -> Result<Option<String>, String> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        SseSpecification, StreamSpecification, StreamViewType, TimeToLiveSpecification,
    };
    let ctx = |x: &dyn std::fmt::Display| x.to_string();
    let mut req = ddb.create_table().table_name(name);
    for a in p["AttributeDefinitions"].as_array().into_iter().flatten() {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().unwrap_or_default(),
                ))
                .build()
                .map_err(|x| ctx(&x))?,
        );
    }
    for k in p["KeySchema"].as_array().into_iter().flatten() {
        req = req.key_schema(
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
                .build()
                .map_err(|x| ctx(&x))?,
        );
    }
    if let Some(b) = p["BillingMode"].as_str() {
        req = req.billing_mode(BillingMode::from(b));
    }
    if let Some(v) = p["StreamSpecification"]["StreamViewType"].as_str() {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(v))
                .build()
                .map_err(|x| ctx(&x))?,
        );
    }
    if let Some(on) = p["SSESpecification"]["SSEEnabled"].as_bool() {
        req = req.sse_specification(SseSpecification::builder().enabled(on).build());
    }
    let out = req.send().await.map_err(describe)?;
    let ttl = &p["TimeToLiveSpecification"];
    if let Some(attr) = ttl["AttributeName"].as_str() {
        ddb.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                    .build()
                    .map_err(|x| ctx(&x))?,
            )
            .send()
            .await
            .map_err(describe)?;
    }
    Ok(out.table_description.and_then(|t| t.latest_stream_arn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::stack::{code_key_parameter, ids};
    use infra::{HistoryStore, StackOptions};
    use meter_core::contract::cloud as names;

    /// A plan of the real template with every emulated resource marked created under
    /// predictable names, as `deploy` would leave it.
    fn planned(history: HistoryStore) -> Deployment {
        let template = infra::synth(StackOptions { history }).unwrap();
        let keys: Vec<String> = names::FUNCTIONS
            .iter()
            .map(|f| code_key_parameter(f))
            .collect();
        let mut params: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "k")).collect();
        params.push(("CodeBucket", "b"));
        let mut d = Deployment::plan(template, "st", &params, "eu-west-1").unwrap();
        let resources = d.template["Resources"].as_object().cloned().unwrap();
        for (logical, r) in resources {
            if let Some(c) = r.get("Condition").and_then(Value::as_str) {
                if !d.conditions[c] {
                    continue;
                }
            }
            if EMULATED.contains(&r["Type"].as_str().unwrap()) {
                let mut attributes = BTreeMap::new();
                attributes.insert("Arn", format!("arn:{logical}"));
                attributes.insert("Name", format!("name-{logical}"));
                attributes.insert("StreamArn", format!("stream:{logical}"));
                d.created.insert(
                    logical.clone(),
                    Physical {
                        reference: format!("ref-{logical}"),
                        attributes,
                    },
                );
            }
        }
        d
    }

    #[test]
    fn a_function_environment_resolves_refs_attributes_and_conditions() {
        let d = planned(HistoryStore::DynamoDb);
        let env = d.function_env("fetch", &[]).unwrap();
        assert_eq!(env[names::ENV_HISTORY_STORE], "dynamodb");
        assert_eq!(
            env[names::ENV_READINGS_TABLE],
            format!("ref-{}", ids::READINGS_TABLE)
        );
        assert_eq!(
            env[names::ENV_REGISTRY_TABLE],
            format!("ref-{}", ids::REGISTRY_TABLE)
        );
        assert_eq!(
            env[meter_core::contract::ENV_SST_SECRET_ID],
            format!("ref-{}", ids::SST_SECRET)
        );
        // Fn::If with AWS::NoValue drops the variable.
        assert!(!env.contains_key(names::ENV_TIMESTREAM_DATABASE));
        assert!(!env.contains_key(names::ENV_TIMESTREAM_TABLE));

        let d = planned(HistoryStore::Timestream);
        let env = d.function_env("import", &[]).unwrap();
        assert_eq!(env[names::ENV_HISTORY_STORE], "timestream");
        assert_eq!(
            env[names::ENV_TIMESTREAM_TABLE],
            format!("name-{}", ids::TIMESTREAM_TABLE)
        );
        assert!(!env.contains_key(names::ENV_READINGS_TABLE));
        assert!(
            !d.created.contains_key(ids::READINGS_TABLE),
            "conditional resources follow the parameter"
        );
    }

    #[test]
    fn parameters_conditions_and_substitutions() {
        let d = planned(HistoryStore::DynamoDb);
        assert!(d.conditions["UseDynamoDB"]);
        assert!(!d.conditions["ApiIsPublic"]);
        let env = d.function_env("api", &[]).unwrap();
        assert_eq!(env[names::ENV_API_AUTH], "iam");
        assert_eq!(
            d.substitute(
                "arn:aws:x:${AWS::Region}:${AWS::AccountId}:${RegistryTable.Arn}/${AWS::StackName}"
            )
            .ok(),
            Some(format!(
                "arn:aws:x:eu-west-1:{ACCOUNT}:arn:RegistryTable/st"
            ))
        );
        let joined = d
            .resolve(&serde_json::json!({"Fn::Join": ["/", ["a", {"Ref": "CodeBucket"}]]}))
            .ok()
            .flatten();
        assert_eq!(joined, Some(Value::String("a/b".into())));
        assert!(matches!(
            d.resolve(&serde_json::json!({"Fn::GetAZs": ""})),
            Err(Unresolved::Invalid(_))
        ));
        assert!(matches!(
            d.resolve(&serde_json::json!({"Ref": "NotCreated"})),
            Err(Unresolved::Waiting(_))
        ));
    }

    #[test]
    fn a_missing_parameter_or_an_unknown_one_is_refused() {
        let template = infra::synth(StackOptions {
            history: HistoryStore::DynamoDb,
        })
        .unwrap();
        let e = Deployment::plan(template.clone(), "st", &[], "eu-west-1").unwrap_err();
        assert!(matches!(e, DeployError::Parameter(_)), "{e}");
        let keys: Vec<String> = names::FUNCTIONS
            .iter()
            .map(|f| code_key_parameter(f))
            .collect();
        let mut params: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "k")).collect();
        params.push(("CodeBucket", "b"));
        params.push(("Nope", "x"));
        let e = Deployment::plan(template, "st", &params, "eu-west-1").unwrap_err();
        assert_eq!(e.to_string(), "template: no parameter Nope");
    }
}
