//! Outcome documents: what a SQL function decided, as `{"outcome": "created", "file": …}`.
//!
//! The SQL side tags its answers internally (the `outcome` member, anywhere in a `jsonb`
//! object). serde's derive for `#[serde(tag = "outcome")]` buffers the whole document into its
//! private `Content` tree before it knows the variant, then reads the variant from that tree: a
//! second deserializer for every type inside every outcome, about a fifth of the Worker's code.
//! Here the document is read twice instead, both times straight from its text with the one
//! `serde_json` reader every other document uses: first its `outcome` member alone, then the
//! chosen variant's members from the whole object (the `outcome` member is one it ignores).
//!
//! An outcome enum derives `Deserialize` *without* `tag` (externally tagged, variant names in
//! snake_case), implements [`Outcome`], and is read by [`from_slice`]: by `Db::outcome` and
//! `PlatformDb::outcome` for SQL functions, which is the only way an outcome is read.

use serde::de::{self, DeserializeOwned, DeserializeSeed, EnumAccess, VariantAccess, Visitor};
use serde::Deserialize;

/// An enum read from an internally tagged document by [`from_slice`]: derive `Deserialize`
/// with `rename_all = "snake_case"` and no `tag`; unit and struct variants (a newtype variant
/// reads the whole object as its one value).
pub trait Outcome: DeserializeOwned {}

/// Reads `doc`, a JSON object whose `outcome` member names the variant of `T`.
pub fn from_slice<T: Outcome>(doc: &[u8]) -> Result<T, serde_json::Error> {
    #[derive(Deserialize)]
    struct Tag {
        outcome: String,
    }
    let Tag { outcome } = serde_json::from_slice(doc)?;
    T::deserialize(Tagged { tag: &outcome, doc })
}

/// The document with its tag read: a deserializer that only reads enums.
struct Tagged<'a> {
    tag: &'a str,
    doc: &'a [u8],
}

impl<'a> Tagged<'a> {
    /// Runs `read` on a reader of the whole document and checks that nothing follows it.
    fn read<V>(
        &self,
        read: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::SliceRead<'a>>,
        ) -> Result<V, serde_json::Error>,
    ) -> Result<V, serde_json::Error> {
        let mut reader = serde_json::Deserializer::from_slice(self.doc);
        let value = read(&mut reader)?;
        reader.end()?;
        Ok(value)
    }
}

impl<'a> de::Deserializer<'a> for Tagged<'a> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'a>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom(
            "an outcome document is read into an enum only",
        ))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'a> EnumAccess<'a> for Tagged<'a> {
    type Error = serde_json::Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'a>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), Self::Error> {
        let variant = seed.deserialize(de::value::StrDeserializer::<serde_json::Error>::new(
            self.tag,
        ))?;
        Ok((variant, self))
    }
}

impl<'a> VariantAccess<'a> for Tagged<'a> {
    type Error = serde_json::Error;

    /// A variant without members: the rest of the object is not read.
    fn unit_variant(self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'a>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        self.read(|reader| seed.deserialize(reader))
    }

    fn tuple_variant<V: Visitor<'a>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom(
            "an outcome's variant has named members, not positions",
        ))
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.read(|reader| de::Deserializer::deserialize_struct(reader, "", fields, visitor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Decided {
        Created { id: u32, name: Option<String> },
        Wrapped(Inner),
        NotFound,
    }
    impl Outcome for Decided {}

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        version: i64,
    }

    fn read(doc: &str) -> Result<Decided, String> {
        from_slice(doc.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_tag_may_stand_anywhere_and_is_not_a_member() {
        let created = Decided::Created {
            id: 7,
            name: Some("a".into()),
        };
        assert_eq!(
            read(r#"{"outcome":"created","id":7,"name":"a"}"#),
            Ok(created)
        );
        // jsonb orders members by length: the tag often comes last.
        assert_eq!(
            read(r#"{"id":7,"name":null,"outcome":"created"}"#),
            Ok(Decided::Created { id: 7, name: None })
        );
        assert_eq!(
            read(r#"{"version":3,"outcome":"wrapped"}"#),
            Ok(Decided::Wrapped(Inner { version: 3 }))
        );
        assert_eq!(
            read(r#"{"outcome":"not_found","extra":[1,{"x":2}]}"#),
            Ok(Decided::NotFound)
        );
    }

    #[test]
    fn refuses_what_is_not_one_of_its_outcomes() {
        for (doc, says) in [
            (r#"{"outcome":"exploded"}"#, "unknown variant `exploded`"),
            (r#"{"id":7}"#, "missing field `outcome`"),
            (r#"{"outcome":"created","name":"a"}"#, "missing field `id`"),
            (r#"{"outcome":"created","id":"7"}"#, "invalid type"),
            (r#"{"outcome":3}"#, "invalid type"),
            (r#"{"outcome":"created","id":7} {}"#, "trailing characters"),
            (r#"["created"]"#, "invalid type"),
            ("", "EOF"),
        ] {
            let err = read(doc).expect_err(doc);
            assert!(err.contains(says), "{doc}: {err}");
        }
    }
}
