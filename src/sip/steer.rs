//! Which shard a message belongs to, read off the raw bytes before anything parses them.
//!
//! A border with several engines (one per core, `[service] shards`) gives every message of a
//! dialog to the engine that owns the dialog. The key is the Call-ID alone: every request and
//! response of a dialog carries it, and so do its CANCEL, its ACKs and every retransmission, so
//! the owner is found without any table. An engine names the Call-IDs it creates on its other
//! leg with ones that steer back to itself ([`owned_call_id`]), so the far side's requests and
//! responses of that leg come home too; the Call-IDs the other side chose land wherever their
//! hash says, the same engine every time.
//!
//! The scan reads header lines up to the blank line, recognises `Call-ID` and its compact form
//! `i` without case, and takes the value without surrounding whitespace, as the parser does. A
//! message without a Call-ID goes to shard 0 (it is malformed: that engine answers or drops it).

/// FNV-1a, 64 bits: cheap over a short token and well spread; the steering of a foreign Call-ID
/// needs no secret (whoever could aim all calls at one engine could also send that many calls).
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard (`0..count`) that owns the dialog named by this Call-ID.
pub fn shard_of_call_id(call_id: &[u8], count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    (hash(call_id) % count as u64) as usize
}

/// The shard a raw SIP message (a datagram, or one framed stream message) goes to.
pub fn shard_of(message: &[u8], count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    call_id(message).map_or(0, |c| shard_of_call_id(c, count))
}

/// The Call-ID value of a raw message, without parsing anything else.
pub fn call_id(message: &[u8]) -> Option<&[u8]> {
    // The start line is skipped; a header line is `name HCOLON value` (RFC 3261 §7.3.1).
    let mut lines = message.split(|&b| b == b'\n').skip(1);
    lines.find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Some(None);
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
        is_call_id.then(|| Some(line[colon + 1..].trim_ascii()))
    })?
}

/// How many fresh tokens [`owned_call_id`] tries before it gives up. With a uniform hash the
/// chance that `64·count` tries all miss is about e^-64 whatever the count.
const TRIES_PER_SHARD: usize = 64;

/// A new Call-ID for a leg that shard `index` of `count` owns: `next` makes random tokens and
/// the first one that steers to `index` is taken. `None` only if none of `64·count` did (see
/// [`TRIES_PER_SHARD`]); the caller then keeps its last token and the leg's far-side messages
/// may land on another shard, which answers 481 to its in-dialog requests.
pub fn owned_call_id(
    index: usize,
    count: usize,
    mut next: impl FnMut() -> String,
) -> Result<String, String> {
    let mut last = next();
    if count <= 1 {
        return Ok(last);
    }
    for _ in 0..TRIES_PER_SHARD * count {
        if shard_of_call_id(last.as_bytes(), count) == index {
            return Ok(last);
        }
        last = next();
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        Call-ID:   a84b4c76e66710@pc33 \r\n\
        CSeq: 1 INVITE\r\n\r\nv=0\r\nCall-ID: not-a-header\r\n";

    #[test]
    fn call_id_is_read_like_the_parser_reads_it() {
        assert_eq!(call_id(INVITE), Some(&b"a84b4c76e66710@pc33"[..]));
        let compact = b"BYE sip:x SIP/2.0\r\ni: abc\r\n\r\n";
        assert_eq!(call_id(compact), Some(&b"abc"[..]));
        let lf_only = b"SIP/2.0 200 OK\nCALL-ID:xyz\n\n";
        assert_eq!(call_id(lf_only), Some(&b"xyz"[..]));
    }

    #[test]
    fn a_call_id_in_the_body_is_not_the_message_s() {
        let no_header = b"INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\nCall-ID: body\r\n";
        assert_eq!(call_id(no_header), None);
        assert_eq!(shard_of(no_header, 4), 0);
    }

    #[test]
    fn one_shard_takes_everything_without_scanning() {
        assert_eq!(shard_of(b"garbage", 1), 0);
        assert_eq!(shard_of(INVITE, 1), 0);
    }

    #[test]
    fn every_message_of_a_dialog_goes_to_one_shard() {
        let same = b"ACK sip:x SIP/2.0\r\nCall-ID: a84b4c76e66710@pc33\r\n\r\n";
        for n in 2..9 {
            assert_eq!(shard_of(INVITE, n), shard_of(same, n));
        }
    }

    #[test]
    fn foreign_call_ids_spread_over_the_shards() {
        let mut counts = [0usize; 4];
        for n in 0..4000 {
            counts[shard_of_call_id(format!("{n}-4711@192.0.2.1").as_bytes(), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn an_owned_call_id_steers_back_to_its_shard() {
        let mut n = 0u32;
        let mut next = || {
            n += 1;
            format!("{:016x}", u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        };
        for index in 0..5 {
            let id = owned_call_id(index, 5, &mut next).expect("found");
            assert_eq!(shard_of_call_id(id.as_bytes(), 5), index);
        }
        // A generator that can never hit gives up after a bounded number of tries.
        let mut tries = 0;
        let never = owned_call_id(1, 2, || {
            tries += 1;
            "same".to_string()
        });
        let stuck = shard_of_call_id(b"same", 2) != 1;
        assert_eq!(never.is_err(), stuck);
        assert!(tries <= 1 + TRIES_PER_SHARD * 2);
    }
}
