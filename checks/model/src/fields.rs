//! Field-by-field serialization that leaves absent values out of
//! human-readable formats (JSON) and keeps every field, in order, in
//! compact ones (bincode on the wire).
//!
//! bincode is not self-describing: a reader knows the fields only by
//! their position, so it needs every one of them. A jq user wants the
//! opposite: no `"message": ""`, no `"reached_ms": null`. serde tells a
//! `Serialize` impl which kind of format it is writing
//! (`Serializer::is_human_readable`: `true` for serde_json, `false` for
//! bincode 2, whose serde serializer and deserializers all say so), so the
//! types of this crate implement `Serialize` by hand with [`Fields`], and
//! derive `Deserialize` with `#[serde(default)]` on every field that may
//! be left out: a JSON reader fills in the default, bincode always finds
//! the field.

use std::collections::BTreeMap;

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

/// Values that count as absent in JSON.
pub(crate) trait Absent {
    fn is_absent(&self) -> bool;
}

impl Absent for String {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

impl<T> Absent for Option<T> {
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

impl<T> Absent for Vec<T> {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> Absent for BTreeMap<K, V> {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

/// A struct being serialized, knowing whether its format is human-readable.
pub(crate) struct Fields<S: Serializer> {
    state: S::SerializeStruct,
    human: bool,
}

impl<S: Serializer> Fields<S> {
    /// Start struct `name` with `len` fields (all of them; the count is
    /// what compact formats expect).
    pub(crate) fn new(serializer: S, name: &'static str, len: usize) -> Result<Self, S::Error> {
        let human = serializer.is_human_readable();
        Ok(Fields {
            state: serializer.serialize_struct(name, len)?,
            human,
        })
    }

    /// A field written in every format.
    pub(crate) fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        self.state.serialize_field(key, value)
    }

    /// Whether the format is human-readable (JSON).
    pub(crate) fn is_human(&self) -> bool {
        self.human
    }

    /// Leave a field out (only call this when [`Fields::is_human`]).
    pub(crate) fn skip(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.state.skip_field(key)
    }

    /// A field left out of human-readable formats when absent. Its
    /// `Deserialize` side must carry `#[serde(default)]`.
    pub(crate) fn optional<T: Serialize + Absent>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        if self.human && value.is_absent() {
            self.state.skip_field(key)
        } else {
            self.state.serialize_field(key, value)
        }
    }

    pub(crate) fn end(self) -> Result<S::Ok, S::Error> {
        self.state.end()
    }
}
