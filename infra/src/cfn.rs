//! A small typed layer over CloudFormation: logical ids, intrinsic functions as [`Expr`], typed
//! [`Handle`]s that expose only the attributes their resource has, and a [`Template`] that
//! serialises deterministically (sorted resources; insertion-ordered properties).

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use serde_json::{json, Map, Value};

/// A CloudFormation value: a literal or an intrinsic function. Built only through the
/// constructors here and the handles' attribute methods, so every `Ref` and `GetAtt` the code
/// writes names something the template declares (the synthesis checks verify it).
#[derive(Debug, Clone, PartialEq)]
pub struct Expr(Value);

impl Expr {
    /// A literal.
    pub fn lit(v: impl Into<Value>) -> Self {
        Self(v.into())
    }
    /// `Fn::Sub` of a template string (`${Param}`, `${Resource.Attr}`, `${AWS::Region}`).
    pub fn sub(template: &str) -> Self {
        Self(json!({"Fn::Sub": template}))
    }
    /// `Ref` of a parameter.
    pub fn param(name: &str) -> Self {
        Self(json!({"Ref": name}))
    }
    /// A pseudo parameter such as `AWS::Region`.
    pub fn pseudo(name: &'static str) -> Self {
        Self(json!({"Ref": name}))
    }
    /// `AWS::NoValue`: drops the property.
    pub fn no_value() -> Self {
        Self::pseudo("AWS::NoValue")
    }
    /// `Fn::If`.
    pub fn when(condition: &str, then: Expr, otherwise: Expr) -> Self {
        Self(json!({"Fn::If": [condition, then.0, otherwise.0]}))
    }
    /// `Fn::Join`.
    pub fn join(sep: &str, parts: Vec<Expr>) -> Self {
        Self(json!({"Fn::Join": [sep, parts.into_iter().map(|p| p.0).collect::<Vec<_>>()]}))
    }
    /// The JSON.
    pub fn into_value(self) -> Value {
        self.0
    }
}

impl From<&str> for Expr {
    fn from(s: &str) -> Self {
        Self(Value::String(s.to_owned()))
    }
}

impl From<Expr> for Value {
    fn from(e: Expr) -> Self {
        e.0
    }
}

/// Resource kinds, as type markers for [`Handle`].
pub mod kind {
    macro_rules! kinds {
        ($($name:ident),*) => {$(
            /// A resource kind.
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
        )*};
    }
    kinds!(
        Queue,
        Table,
        Function,
        Role,
        Bucket,
        LogGroup,
        Secret,
        FunctionUrl,
        Rule,
        TsDatabase,
        TsTable,
        Topic,
        Other
    );
}

/// A resource of kind `K` in a template.
#[derive(Debug)]
pub struct Handle<K> {
    id: String,
    _kind: PhantomData<K>,
}

impl<K> Clone for Handle<K> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> Handle<K> {
    /// The logical id.
    pub fn id(&self) -> &str {
        &self.id
    }
    fn r(&self) -> Expr {
        Expr(json!({"Ref": self.id}))
    }
    fn att(&self, attr: &str) -> Expr {
        Expr(json!({"Fn::GetAtt": [self.id, attr]}))
    }
}

impl Handle<kind::Topic> {
    /// The ARN (the topic's `Ref`).
    pub fn arn(&self) -> Expr {
        self.r()
    }
}

impl Handle<kind::Queue> {
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
    /// The URL (the queue's `Ref`).
    pub fn url(&self) -> Expr {
        self.r()
    }
    /// The name.
    pub fn name(&self) -> Expr {
        self.att("QueueName")
    }
}

impl Handle<kind::Table> {
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
    /// The name (the table's `Ref`).
    pub fn name(&self) -> Expr {
        self.r()
    }
    /// The stream's ARN.
    pub fn stream_arn(&self) -> Expr {
        self.att("StreamArn")
    }
}

impl Handle<kind::Function> {
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
    /// The name (the function's `Ref`).
    pub fn name(&self) -> Expr {
        self.r()
    }
}

impl Handle<kind::Role> {
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
}

impl Handle<kind::Bucket> {
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
    /// The name (the bucket's `Ref`).
    pub fn name(&self) -> Expr {
        self.r()
    }
}

impl Handle<kind::LogGroup> {
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
    /// The name (the group's `Ref`).
    pub fn name(&self) -> Expr {
        self.r()
    }
}

impl Handle<kind::Secret> {
    /// The ARN (the secret's `Ref`).
    pub fn arn(&self) -> Expr {
        self.r()
    }
}

impl Handle<kind::FunctionUrl> {
    /// The URL.
    pub fn url(&self) -> Expr {
        self.att("FunctionUrl")
    }
}

impl Handle<kind::Rule> {
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
}

impl Handle<kind::TsDatabase> {
    /// The name (the database's `Ref`).
    pub fn name(&self) -> Expr {
        self.r()
    }
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
}

impl Handle<kind::TsTable> {
    /// The name.
    pub fn name(&self) -> Expr {
        self.att("Name")
    }
    /// The ARN.
    pub fn arn(&self) -> Expr {
        self.att("Arn")
    }
}

/// One resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `AWS::Service::Type`.
    pub kind: &'static str,
    /// Properties.
    pub properties: Map<String, Value>,
    /// Explicit dependencies.
    pub depends_on: BTreeSet<String>,
    /// A condition it is created under.
    pub condition: Option<String>,
    /// Metadata (checkov skips, cfn-lint ignores, each with its reason).
    pub metadata: Map<String, Value>,
    /// `DeletionPolicy` / `UpdateReplacePolicy`.
    pub deletion_policy: Option<&'static str>,
}

/// A template.
#[derive(Debug, Default)]
pub struct Template {
    /// The description.
    pub description: String,
    /// Parameters by name.
    pub parameters: BTreeMap<String, Value>,
    /// Conditions by name.
    pub conditions: BTreeMap<String, Value>,
    /// Resources by logical id.
    pub resources: BTreeMap<String, Resource>,
    /// Outputs by name.
    pub outputs: BTreeMap<String, Value>,
    /// Template-level metadata.
    pub metadata: Map<String, Value>,
}

/// Turns a `json!` object of properties (values possibly [`Expr`] converted with `.into()`)
/// into a property map.
pub fn props(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl Template {
    /// Adds a resource and returns its handle. Ids must be unique; a repeat is reported by the
    /// synthesis checks (the later resource would silently replace the first).
    pub fn add<K>(&mut self, id: &str, kind: &'static str, properties: Value) -> Handle<K> {
        if self.resources.contains_key(id) {
            let dups = self
                .metadata
                .entry("DuplicateIds")
                .or_insert_with(|| json!([]));
            if let Some(list) = dups.as_array_mut() {
                list.push(json!(id));
            }
        }
        self.resources.insert(
            id.to_owned(),
            Resource {
                kind,
                properties: props(properties),
                depends_on: BTreeSet::new(),
                condition: None,
                metadata: Map::new(),
                deletion_policy: None,
            },
        );
        Handle {
            id: id.to_owned(),
            _kind: PhantomData,
        }
    }

    /// The resource behind a handle, to set its condition, dependencies or metadata.
    pub fn resource<K>(&mut self, h: &Handle<K>) -> &mut Resource {
        self.resources
            .get_mut(&h.id)
            .unwrap_or_else(|| unreachable!("a handle always names a resource of its template"))
    }

    /// Adds a parameter.
    pub fn parameter(&mut self, name: &str, spec: Value) -> Expr {
        self.parameters.insert(name.to_owned(), spec);
        Expr::param(name)
    }

    /// Adds an output.
    pub fn output(&mut self, name: &str, description: &str, value: Expr, condition: Option<&str>) {
        let mut o = json!({"Description": description, "Value": value.into_value()});
        if let Some(c) = condition {
            o["Condition"] = json!(c);
        }
        self.outputs.insert(name.to_owned(), o);
    }

    /// The template as JSON.
    pub fn to_json(&self) -> Value {
        let mut resources = Map::new();
        for (id, r) in &self.resources {
            let mut v = Map::new();
            v.insert("Type".into(), json!(r.kind));
            if let Some(c) = &r.condition {
                v.insert("Condition".into(), json!(c));
            }
            if !r.depends_on.is_empty() {
                v.insert("DependsOn".into(), json!(r.depends_on));
            }
            if let Some(p) = r.deletion_policy {
                v.insert("DeletionPolicy".into(), json!(p));
                v.insert("UpdateReplacePolicy".into(), json!(p));
            }
            if !r.metadata.is_empty() {
                v.insert("Metadata".into(), Value::Object(r.metadata.clone()));
            }
            if !r.properties.is_empty() {
                v.insert("Properties".into(), Value::Object(r.properties.clone()));
            }
            resources.insert(id.clone(), Value::Object(v));
        }
        let mut t = Map::new();
        t.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
        t.insert("Description".into(), json!(self.description));
        if !self.metadata.is_empty() {
            t.insert("Metadata".into(), Value::Object(self.metadata.clone()));
        }
        t.insert("Parameters".into(), json!(self.parameters));
        if !self.conditions.is_empty() {
            t.insert("Conditions".into(), json!(self.conditions));
        }
        t.insert("Resources".into(), Value::Object(resources));
        t.insert("Outputs".into(), json!(self.outputs));
        Value::Object(t)
    }
}

/// Adds a checkov skip, with its reason, to a resource's metadata.
pub fn skip_checkov(r: &mut Resource, id: &str, reason: &str) {
    let checkov = r
        .metadata
        .entry("checkov")
        .or_insert_with(|| json!({"skip": []}));
    if let Some(list) = checkov.get_mut("skip").and_then(Value::as_array_mut) {
        list.push(json!({"id": id, "comment": reason}));
    }
}

/// Adds a cfn-lint ignore, with its reason, to a resource's metadata.
pub fn ignore_cfn_lint(r: &mut Resource, check: &str, reason: &str) {
    let entry = r
        .metadata
        .entry("cfn-lint")
        .or_insert_with(|| json!({"config": {"ignore_checks": []}}));
    if let Some(list) = entry
        .pointer_mut("/config/ignore_checks")
        .and_then(Value::as_array_mut)
    {
        list.push(json!(check));
    }
    let reasons = r
        .metadata
        .entry("IgnoreReasons")
        .or_insert_with(|| json!({}));
    reasons[check] = json!(reason);
}
