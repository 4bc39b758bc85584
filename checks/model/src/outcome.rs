//! The result of running one check: a status, what was observed, what was
//! expected, in words a report can show.
//!
//! These types travel on the wire (bincode 2 through serde) and in the
//! sweep JSON document. On the wire every field is written, in order (see
//! [`crate::fields`]); in JSON an observed value is a plain JSON value
//! (`0.31`, `"Linux"`, `{"load1": 0.31}`) and empty fields are left out.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::fields::Fields;

/// The verdict of one check on one node.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The observation met the expectation.
    Pass,
    /// The observation missed an expectation whose severity is `warn`.
    Warn,
    /// The observation missed an expectation whose severity is `fail`.
    Fail,
    /// The check could not observe (missing key, timeout, command failed).
    Error,
}

impl Status {
    /// Rank for "worst first" ordering: fail > error > warn > pass.
    pub fn badness(self) -> u8 {
        match self {
            Status::Pass => 0,
            Status::Warn => 1,
            Status::Error => 2,
            Status::Fail => 3,
        }
    }

    /// Lowercase name as shown in tables and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a missed expectation becomes.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    #[default]
    Fail,
}

/// A typed observed value.
///
/// In JSON it is the plain value: `None` is `null` (and an outcome leaves
/// `observed` out), a number is a JSON number (integral values without a
/// fraction; NaN and infinities as the strings `NaN`, `inf`, `-inf`), text
/// and versions are strings, a list is an array and named values are an
/// object in their order. JSON does not tell a version from text: a
/// version read back from JSON is `Text` with the same characters (the
/// report compares observed values as text, so nothing downstream
/// changes). On the wire (bincode) the variant is kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Observed {
    /// Nothing could be observed (the status is then `error`).
    #[default]
    None,
    Number(f64),
    Text(String),
    Version(String),
    List(Vec<Observed>),
    /// Named values, e.g. Nagios perfdata or per-mount disk usage.
    Named(Vec<(String, Observed)>),
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::None => f.write_str("(nothing)"),
            Observed::Number(n) => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    write!(f, "{}", *n as i64)
                } else {
                    write!(f, "{n}")
                }
            }
            Observed::Text(s) | Observed::Version(s) => f.write_str(s),
            Observed::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Observed::Named(items) => {
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                Ok(())
            }
        }
    }
}

/// The outcome of one check on one node. In JSON, `observed` is left out
/// when nothing was observed and the text fields when they are empty.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckOutcome {
    /// The check's `id` from the config.
    pub id: String,
    /// The check kind (`sysctl`, `process_count`, ...).
    pub kind: String,
    pub status: Status,
    pub severity: Severity,
    #[serde(default)]
    pub observed: Observed,
    /// The expectation in words, e.g. `>= 524288`.
    #[serde(default)]
    pub expected: String,
    /// A short human message, e.g. `observed 8192, expected >= 524288`.
    #[serde(default)]
    pub message: String,
    /// How long the check took, in microseconds.
    pub duration_us: u64,
    /// One line saying what the check is about (may be empty).
    #[serde(default)]
    pub description: String,
    /// One line saying how to fix a miss (may be empty).
    #[serde(default)]
    pub remediation: String,
}

impl Serialize for CheckOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::new(serializer, "CheckOutcome", 10)?;
        f.field("id", &self.id)?;
        f.field("kind", &self.kind)?;
        f.field("status", &self.status)?;
        f.field("severity", &self.severity)?;
        if f.is_human() && self.observed == Observed::None {
            f.skip("observed")?;
        } else {
            f.field("observed", &self.observed)?;
        }
        f.optional("expected", &self.expected)?;
        f.optional("message", &self.message)?;
        f.field("duration_us", &self.duration_us)?;
        f.optional("description", &self.description)?;
        f.optional("remediation", &self.remediation)?;
        f.end()
    }
}

impl Observed {
    /// A value read from a version-1 JSON document, which wrote observed
    /// values externally tagged (`"none"`, `{"number": 0.31}`,
    /// `{"named": [["load1", {"number": 0.31}]]}`): the same value as
    /// version 2 reads it. Only for documents whose `version` is 1.
    pub fn read_as_v1(self) -> Observed {
        let Observed::Named(mut items) = self else {
            return match self {
                Observed::Text(t) if t == "none" => Observed::None,
                other => other,
            };
        };
        if items.len() != 1 {
            return Observed::Named(items);
        }
        let (tag, value) = items.remove(0);
        match (tag.as_str(), value) {
            ("number", Observed::Number(n)) => Observed::Number(n),
            ("text", Observed::Text(t)) => Observed::Text(t),
            ("version", Observed::Text(v)) => Observed::Version(v),
            ("list", Observed::List(l)) => {
                Observed::List(l.into_iter().map(Observed::read_as_v1).collect())
            }
            ("named", Observed::List(pairs)) => Observed::Named(
                pairs
                    .into_iter()
                    .filter_map(|p| match p {
                        Observed::List(mut kv) if kv.len() == 2 => {
                            let v = kv.pop()?;
                            match kv.pop()? {
                                Observed::Text(k) => Some((k, v.read_as_v1())),
                                _ => None,
                            }
                        }
                        _ => None,
                    })
                    .collect(),
            ),
            (_, value) => Observed::Named(vec![(tag, value)]),
        }
    }
}

/// `Observed` as bincode has always carried it: the variant index, then
/// its content. Borrowed for writing, owned for reading.
#[derive(Serialize)]
#[serde(rename = "Observed", rename_all = "lowercase")]
enum WireRef<'a> {
    None,
    Number(f64),
    Text(&'a str),
    Version(&'a str),
    List(&'a [Observed]),
    Named(&'a [(String, Observed)]),
}

#[derive(Deserialize)]
#[serde(rename = "Observed", rename_all = "lowercase")]
enum Wire {
    None,
    Number(f64),
    Text(String),
    Version(String),
    List(Vec<Observed>),
    Named(Vec<(String, Observed)>),
}

/// Integral values up to 2^53 are exact in an f64 and print without `.0`.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

impl Serialize for Observed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            let wire = match self {
                Observed::None => WireRef::None,
                Observed::Number(n) => WireRef::Number(*n),
                Observed::Text(t) => WireRef::Text(t),
                Observed::Version(v) => WireRef::Version(v),
                Observed::List(l) => WireRef::List(l),
                Observed::Named(n) => WireRef::Named(n),
            };
            return wire.serialize(serializer);
        }
        match self {
            Observed::None => serializer.serialize_none(),
            Observed::Number(n) if !n.is_finite() => serializer.collect_str(n),
            Observed::Number(n) if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INTEGER => {
                serializer.serialize_i64(*n as i64)
            }
            Observed::Number(n) => serializer.serialize_f64(*n),
            Observed::Text(t) | Observed::Version(t) => serializer.serialize_str(t),
            Observed::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Observed::Named(items) => {
                let mut map = serializer.serialize_map(Some(items.len()))?;
                for (k, v) in items {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Observed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return Ok(match Wire::deserialize(deserializer)? {
                Wire::None => Observed::None,
                Wire::Number(n) => Observed::Number(n),
                Wire::Text(t) => Observed::Text(t),
                Wire::Version(v) => Observed::Version(v),
                Wire::List(l) => Observed::List(l),
                Wire::Named(n) => Observed::Named(n),
            });
        }
        deserializer.deserialize_any(PlainValue)
    }
}

/// Reads an observed value from a plain self-describing value.
struct PlainValue;

impl<'de> Visitor<'de> for PlainValue {
    type Value = Observed;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("null, a number, a string, an array or an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Observed, E> {
        Ok(Observed::None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Observed, E> {
        Ok(Observed::None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Observed, D::Error> {
        Observed::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Observed, E> {
        Ok(Observed::Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Observed, E> {
        Ok(Observed::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Observed, E> {
        Ok(Observed::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Observed, E> {
        Ok(Observed::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Observed, E> {
        Ok(match v {
            "NaN" => Observed::Number(f64::NAN),
            "inf" => Observed::Number(f64::INFINITY),
            "-inf" => Observed::Number(f64::NEG_INFINITY),
            _ => Observed::Text(v.to_string()),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Observed, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Observed::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Observed, A::Error> {
        let mut items = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(entry) = map.next_entry()? {
            items.push(entry);
        }
        Ok(Observed::Named(items))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Observed {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Observed".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let inner = generator.subschema_for::<Observed>();
        schemars::json_schema!({
            "description": "What the check observed, as a plain JSON value: null (nothing), a number, a string (text, a version, or NaN/inf/-inf), an array of observed values, or an object of named observed values.",
            "anyOf": [
                { "type": "null" },
                { "type": "number" },
                { "type": "string" },
                { "type": "array", "items": inner },
                { "type": "object", "additionalProperties": inner }
            ]
        })
    }
}
