//! Bencode (the BitTorrent encoding rtpengine's ng protocol speaks), written small and strict.
//!
//! [`decode`] borrows every byte string from the datagram and refuses, with the byte offset at
//! fault: anything after the top-level value, integers with leading zeros or `-0`, integers
//! outside `i64`, string lengths past the end of the input, dictionary keys that are not byte
//! strings, duplicate keys, and nesting deeper than [`MAX_DEPTH`]. Dictionary keys need not be
//! sorted: the bencode spec asks for it, but Kamailio's rtpengine module sends its keys in the
//! order it adds them, and rtpengine accepts that. [`Value::encode`] always writes sorted keys.

use std::fmt;

/// Nesting limit (lists and dictionaries within each other); ng requests nest two deep.
pub const MAX_DEPTH: usize = 32;

/// A decoded value; byte strings borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Keys in the order they arrived.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

/// Why a datagram is not bencode: what and where (byte offset into the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad bencode at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes exactly one value spanning the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(d.err("trailing bytes after the value"));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'i') => {
                self.pos += 1;
                let n = self.integer(b'e')?;
                Ok(Value::Int(n))
            }
            Some(b'l') | Some(b'd') if depth >= MAX_DEPTH => Err(self.err("nested too deep")),
            Some(b'l') => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek() != Some(b'e') {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            Some(b'd') => {
                self.pos += 1;
                let mut items: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                while self.peek() != Some(b'e') {
                    if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        return Err(if self.peek().is_none() {
                            self.err("unexpected end of input")
                        } else {
                            self.err("dictionary key is not a byte string")
                        });
                    }
                    let at = self.pos;
                    let key = self.bytes()?;
                    if items.iter().any(|(k, _)| *k == key) {
                        return Err(DecodeError {
                            offset: at,
                            reason: "duplicate dictionary key",
                        });
                    }
                    let v = self.value(depth + 1)?;
                    items.push((key, v));
                }
                self.pos += 1;
                Ok(Value::Dict(items))
            }
            Some(c) if c.is_ascii_digit() => Ok(Value::Bytes(self.bytes()?)),
            Some(_) => Err(self.err("expected i, l, d or a string length")),
        }
    }

    /// Digits (optionally negative) up to `end`, which is consumed.
    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let digits_at = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.input[digits_at..self.pos];
        if digits.is_empty() {
            return Err(self.err("expected digits"));
        }
        if self.peek() != Some(end) {
            return Err(if self.peek().is_none() {
                self.err("unexpected end of input")
            } else {
                self.err("unexpected byte in a number")
            });
        }
        let bad = |reason| DecodeError {
            offset: start,
            reason,
        };
        if digits.len() > 1 && digits[0] == b'0' {
            return Err(bad("leading zero in a number"));
        }
        if neg && digits == b"0" {
            return Err(bad("negative zero"));
        }
        // Digits only, so UTF-8; the range check is the parse's.
        let text = std::str::from_utf8(&self.input[start..self.pos]).map_err(|_| bad("number"))?;
        let n = text
            .parse::<i64>()
            .map_err(|_| bad("number out of range"))?;
        self.pos += 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.integer(b':')?;
        let len = usize::try_from(len).map_err(|_| DecodeError {
            offset: at,
            reason: "negative string length",
        })?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.input.len())
            .ok_or(DecodeError {
                offset: at,
                reason: "string runs past the end of the input",
            })?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

impl<'a> Value<'a> {
    /// The value of `key` in a dictionary (`None` for other values or a missing key).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A byte string that is UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Appends the encoding (dictionary keys sorted, as the spec requires) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => {
                out.push(b'i');
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(items) => {
                let mut sorted: Vec<&(&[u8], Value)> = items.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                out.push(b'd');
                for (k, v) in sorted {
                    encode_bytes(k, out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &[u8]) -> DecodeError {
        decode(input).expect_err("must be refused")
    }

    #[test]
    fn decodes_the_values_of_an_ng_request() {
        let v = decode(b"d7:command5:offer9:directionl1:A1:Be4:sizei-42ee").unwrap();
        assert_eq!(v.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(
            v.get("direction"),
            Some(&Value::List(vec![Value::Bytes(b"A"), Value::Bytes(b"B")]))
        );
        assert_eq!(v.get("size"), Some(&Value::Int(-42)));
        assert_eq!(v.get("missing"), None);
        assert_eq!(decode(b"0:").unwrap(), Value::Bytes(b""));
        assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(decode(b"le").unwrap(), Value::List(vec![]));
        assert_eq!(decode(b"de").unwrap(), Value::Dict(vec![]));
    }

    #[test]
    fn accepts_unsorted_keys_and_encodes_them_sorted() {
        // Kamailio's rtpengine module sends keys in insertion order.
        let v = decode(b"d7:command4:ping4:callli1eee").unwrap();
        assert_eq!(v.to_bytes(), b"d4:callli1ee7:command4:pinge".to_vec());
    }

    #[test]
    fn round_trips() {
        let v = Value::Dict(vec![
            (b"sdp", Value::Bytes(b"v=0\r\n")),
            (b"result", Value::Bytes(b"ok")),
            (b"n", Value::List(vec![Value::Int(-7), Value::Dict(vec![])])),
        ]);
        let bytes = v.to_bytes();
        assert_eq!(bytes, b"d1:nli-7edee6:result2:ok3:sdp5:v=0\r\ne".to_vec());
        let back = decode(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn refuses_malformed_input_with_the_offset() {
        assert_eq!(err(b"").reason, "unexpected end of input");
        assert_eq!(err(b"d7:command4:ping").reason, "unexpected end of input");
        assert_eq!(err(b"de!").offset, 2);
        assert_eq!(err(b"de!").reason, "trailing bytes after the value");
        assert_eq!(err(b"i03e").reason, "leading zero in a number");
        assert_eq!(err(b"i-0e").reason, "negative zero");
        assert_eq!(err(b"ie").reason, "expected digits");
        assert_eq!(err(b"i1x").reason, "unexpected byte in a number");
        assert_eq!(err(b"i99999999999999999999e").reason, "number out of range");
        assert_eq!(
            err(b"5:abc").reason,
            "string runs past the end of the input"
        );
        assert_eq!(err(b"99999999999999999999:a").reason, "number out of range");
        assert_eq!(err(b"-1:a").reason, "expected i, l, d or a string length");
        assert_eq!(
            err(b"di1ei2ee").reason,
            "dictionary key is not a byte string"
        );
        let dup = err(b"d1:ai1e1:ai2ee");
        assert_eq!((dup.offset, dup.reason), (7, "duplicate dictionary key"));
        assert_eq!(err(b"x").reason, "expected i, l, d or a string length");
        let deep = "l".repeat(MAX_DEPTH + 1) + &"e".repeat(MAX_DEPTH + 1);
        assert_eq!(err(deep.as_bytes()).reason, "nested too deep");
        let ok = "l".repeat(MAX_DEPTH) + &"e".repeat(MAX_DEPTH);
        assert!(decode(ok.as_bytes()).is_ok());
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let good = b"d7:command5:offer3:sdp10:v=0\r\no=- 19:directionl1:A1:Bee";
        for n in 0..=good.len() {
            let _ = decode(&good[..n]);
        }
        for i in 0..good.len() {
            for b in [0u8, b'e', b'i', b'd', b'l', b':', b'-', b'9', 0xff] {
                let mut m = good.to_vec();
                m[i] = b;
                let _ = decode(&m);
            }
        }
    }
}
