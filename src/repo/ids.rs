//! Ids of stored objects: BLAKE3 of the stored (sealed) bytes, so a store
//! or a copy can be verified without any key.

use std::fmt;

macro_rules! object_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Id of a ", $what, ": BLAKE3 of its stored bytes.")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn of_bytes(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom(concat!("invalid ", $what, " id")))
            }
        }
    };
}

object_id!(PackId, "pack");
object_id!(SnapshotId, "snapshot");
object_id!(IndexId, "index file");

impl PackId {
    /// Store name: `data/<first two hex digits>/<id>`.
    pub fn object_name(&self) -> String {
        let h = self.to_hex();
        format!("data/{}/{}", &h[..2], h)
    }
}

impl SnapshotId {
    pub fn object_name(&self) -> String {
        format!("snapshots/{}", self.to_hex())
    }
}

impl IndexId {
    pub fn object_name(&self) -> String {
        format!("index/{}", self.to_hex())
    }
}
