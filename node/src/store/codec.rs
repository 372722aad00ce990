//! The versioned value codec: one format byte, then bincode.
//!
//! Why bincode: values are written on every apply and every log append, so the encoding must be
//! compact and cheap; the format byte lets a later release migrate old values instead of
//! misreading them.

/// The format of every value written by this build.
pub const VALUE_FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty value")]
    Empty,
    #[error("value has format {found}, this build reads format {VALUE_FORMAT}")]
    Version { found: u8 },
    #[error("bincode: {0}")]
    Bincode(#[from] bincode::Error),
}

pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    out.push(VALUE_FORMAT);
    bincode::serialize_into(&mut out, value)?;
    Ok(out)
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&VALUE_FORMAT, rest)) => Ok(bincode::deserialize(rest)?),
        Some((&found, _)) => Err(CodecError::Version { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let v = (42u64, "x".to_string());
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes[0], VALUE_FORMAT);
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), v);
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(matches!(decode::<(u64, String)>(&other), Err(CodecError::Version { found: 9 })));
        assert!(matches!(decode::<(u64, String)>(&[]), Err(CodecError::Empty)));
    }
}
