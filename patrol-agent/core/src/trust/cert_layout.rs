//! The bytes of a [`CertBody`], version by version. The body's first
//! field is its version, and it says how the rest is laid out:
//!
//! ```text
//! version 1: Scope = { name, sweep, profiles, labels, checks,
//!                      node_filter, max_deadline_ms }
//! version 2: Scope = { name, sweep, profiles, labels, checks,
//!                      node_filter, max_deadline_ms, share: Option<u16> }
//! ```
//!
//! Everything else is the same in both. A body is encoded in the layout of
//! its own version, so a version 1 certificate encodes to the very bytes
//! its CA signed and its signature still checks; decoding reads the
//! version first and the rest in its layout. A version 1 body cannot hold
//! a share: encoding one that has one is an error (and `issue` never makes
//! one, see [`CertBody::version_for`]).

use std::collections::BTreeMap;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::{self, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cert::{CertBody, Role, CERT_VERSION};
use super::names::NamePatterns;
use super::scope::Scope;

const FIELDS: &[&str] = &[
    "version",
    "serial",
    "role",
    "name",
    "public_key",
    "not_before",
    "not_after",
    "issuer",
];

/// Version 1's [`Role`], borrowed, for encoding: the same variants in the
/// same order, an operator's scope without a share.
#[derive(Serialize)]
#[serde(rename = "Role")]
enum RoleV1Ref<'a> {
    Ca,
    Node,
    Operator(ScopeV1Ref<'a>),
    Issuer(&'a NamePatterns),
}

#[derive(Serialize)]
#[serde(rename = "Scope")]
struct ScopeV1Ref<'a> {
    name: &'a str,
    sweep: bool,
    profiles: &'a [String],
    labels: &'a [String],
    checks: &'a [String],
    node_filter: &'a BTreeMap<String, String>,
    max_deadline_ms: u64,
}

/// Version 1's [`Role`], for decoding.
#[derive(Deserialize)]
#[serde(rename = "Role")]
enum RoleV1 {
    Ca,
    Node,
    Operator(ScopeV1),
    Issuer(NamePatterns),
}

#[derive(Deserialize)]
#[serde(rename = "Scope")]
struct ScopeV1 {
    name: String,
    sweep: bool,
    profiles: Vec<String>,
    labels: Vec<String>,
    checks: Vec<String>,
    node_filter: BTreeMap<String, String>,
    max_deadline_ms: u64,
}

impl From<RoleV1> for Role {
    fn from(role: RoleV1) -> Role {
        match role {
            RoleV1::Ca => Role::Ca,
            RoleV1::Node => Role::Node,
            RoleV1::Operator(s) => Role::Operator(Scope {
                name: s.name,
                sweep: s.sweep,
                profiles: s.profiles,
                labels: s.labels,
                checks: s.checks,
                node_filter: s.node_filter,
                max_deadline_ms: s.max_deadline_ms,
                share: None,
            }),
            RoleV1::Issuer(names) => Role::Issuer(names),
        }
    }
}

/// `role` in version 1's layout; None when it does not fit (a share).
fn role_v1(role: &Role) -> Option<RoleV1Ref<'_>> {
    Some(match role {
        Role::Ca => RoleV1Ref::Ca,
        Role::Node => RoleV1Ref::Node,
        Role::Operator(s) if s.share.is_some() => return None,
        Role::Operator(s) => RoleV1Ref::Operator(ScopeV1Ref {
            name: &s.name,
            sweep: s.sweep,
            profiles: &s.profiles,
            labels: &s.labels,
            checks: &s.checks,
            node_filter: &s.node_filter,
            max_deadline_ms: s.max_deadline_ms,
        }),
        Role::Issuer(names) => RoleV1Ref::Issuer(names),
    })
}

impl CertBody {
    /// The lowest version that holds `role`: 2 for an operator scope with
    /// a share, else 1, so every certificate that needs nothing new stays
    /// readable by agents that read version 1 only.
    pub fn version_for(role: &Role) -> u8 {
        match role {
            Role::Operator(Scope { share: Some(_), .. }) => 2,
            _ => 1,
        }
    }
}

impl Serialize for CertBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("CertBody", FIELDS.len())?;
        s.serialize_field("version", &self.version)?;
        s.serialize_field("serial", &self.serial)?;
        if self.version == 1 {
            let role = role_v1(&self.role).ok_or_else(|| {
                ser::Error::custom("a version 1 certificate cannot carry a scope's share")
            })?;
            s.serialize_field("role", &role)?;
        } else {
            s.serialize_field("role", &self.role)?;
        }
        s.serialize_field("name", &self.name)?;
        s.serialize_field("public_key", &self.public_key)?;
        s.serialize_field("not_before", &self.not_before)?;
        s.serialize_field("not_after", &self.not_after)?;
        s.serialize_field("issuer", &self.issuer)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for CertBody {
    /// From a sequence of fields (bincode): the version first, the rest in
    /// its layout.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("CertBody", FIELDS, BodyVisitor)
    }
}

struct BodyVisitor;

/// The next field of a body, field `index`.
fn field<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
    seq: &mut A,
    index: usize,
) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::invalid_length(index, &"a certificate body of 8 fields"))
}

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = CertBody;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a certificate body")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CertBody, A::Error> {
        let version: u8 = field(&mut seq, 0)?;
        let serial = field(&mut seq, 1)?;
        let role = match version {
            1 => Role::from(field::<RoleV1, _>(&mut seq, 2)?),
            2 => field(&mut seq, 2)?,
            v => {
                return Err(de::Error::custom(format!(
                    "certificate version {v} (this build reads 1 to {CERT_VERSION})"
                )))
            }
        };
        Ok(CertBody {
            version,
            serial,
            role,
            name: field(&mut seq, 3)?,
            public_key: field(&mut seq, 4)?,
            not_before: field(&mut seq, 5)?,
            not_after: field(&mut seq, 6)?,
            issuer: field(&mut seq, 7)?,
        })
    }
}
