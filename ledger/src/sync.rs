//! Anti-entropy between ledgers: the text bodies of the `Heads` and `Want`
//! frames. A node sends a peer its heads (per payer: highest seq and count
//! held); the peer answers with the seq ranges it lacks, and the node
//! sends those receipts. So a receipt whose broadcast datagram was lost
//! still reaches every ledger.
//!
//! Body lines, US-ASCII, `\n`-separated:
//!
//! ```text
//! Heads: <payer node id> <max seq> <count>
//! Want:  <payer node id> <first seq> <last seq>
//! ```

use lppsp_core::NodeId;

use crate::{Head, SeqRange};

/// Most lines either body may hold; more is an error (payers in a
/// community are nodes, so this bounds the community at 4096 payers).
pub const MAX_SYNC_LINES: usize = 4096;
/// Most receipts sent for one `Want`, so one answer stays small.
pub const MAX_RECEIPTS_PER_WANT: usize = 1024;

/// Why a sync body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("more than {MAX_SYNC_LINES} lines")]
    TooManyLines,
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
}

fn three_fields(body: &[u8]) -> Result<Vec<(NodeId, u64, u64)>, SyncError> {
    let text = std::str::from_utf8(body).map_err(|e| SyncError::Line {
        line: 1,
        problem: format!("not text: {e}"),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
        if out.len() == MAX_SYNC_LINES {
            return Err(SyncError::TooManyLines);
        }
        let bad = |problem: &str| SyncError::Line {
            line: i + 1,
            problem: problem.to_string(),
        };
        let mut f = line.split(' ');
        let (Some(id), Some(a), Some(b), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(bad("expected three fields"));
        };
        let id = id.parse::<NodeId>().map_err(|_| bad("bad node id"))?;
        let a = a.parse::<u64>().map_err(|_| bad("bad number"))?;
        let b = b.parse::<u64>().map_err(|_| bad("bad number"))?;
        out.push((id, a, b));
    }
    Ok(out)
}

/// The body of a `Heads` frame.
pub fn encode_heads(heads: &[Head]) -> Vec<u8> {
    let mut out = String::new();
    for h in heads.iter().take(MAX_SYNC_LINES) {
        out.push_str(&format!("{} {} {}\n", h.payer, h.max_seq, h.count));
    }
    out.into_bytes()
}

/// Reads a `Heads` body.
pub fn decode_heads(body: &[u8]) -> Result<Vec<Head>, SyncError> {
    let mut heads: Vec<Head> = three_fields(body)?
        .into_iter()
        .map(|(payer, max_seq, count)| Head {
            payer,
            max_seq,
            count,
        })
        .collect();
    // `Ledger::wanted` looks payers up by binary search.
    heads.sort_by_key(|h| h.payer);
    heads.dedup_by_key(|h| h.payer);
    Ok(heads)
}

/// The body of a `Want` frame.
pub fn encode_want(ranges: &[SeqRange]) -> Vec<u8> {
    let mut out = String::new();
    for r in ranges.iter().take(MAX_SYNC_LINES) {
        out.push_str(&format!(
            "{} {} {}\n",
            r.payer,
            r.seqs.start(),
            r.seqs.end()
        ));
    }
    out.into_bytes()
}

/// Reads a `Want` body; a range whose end is before its start is an error.
pub fn decode_want(body: &[u8]) -> Result<Vec<SeqRange>, SyncError> {
    three_fields(body)?
        .into_iter()
        .enumerate()
        .map(|(i, (payer, first, last))| {
            if last < first {
                return Err(SyncError::Line {
                    line: i + 1,
                    problem: "range ends before it starts".into(),
                });
            }
            Ok(SeqRange {
                payer,
                seqs: first..=last,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 8])
    }

    #[test]
    fn heads_and_wants_round_trip() {
        let heads = vec![
            Head {
                payer: id(2),
                max_seq: 9,
                count: 7,
            },
            Head {
                payer: id(1),
                max_seq: 3,
                count: 3,
            },
        ];
        let mut back = decode_heads(&encode_heads(&heads)).unwrap();
        back.sort_by_key(|h| h.payer);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].payer, id(1));
        assert_eq!((back[1].max_seq, back[1].count), (9, 7));
        let want = vec![SeqRange {
            payer: id(3),
            seqs: 4..=6,
        }];
        assert_eq!(decode_want(&encode_want(&want)).unwrap(), want);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(decode_heads(b"zz 1 2\n").is_err());
        assert!(decode_heads(b"0101010101010101 1\n").is_err());
        assert!(decode_heads(b"0101010101010101 1 2 3\n").is_err());
        assert!(decode_heads(&[0xff, 0xfe]).is_err());
        assert!(decode_want(b"0101010101010101 5 4\n").is_err());
        let many = "0101010101010101 1 1\n".repeat(MAX_SYNC_LINES + 1);
        assert_eq!(decode_want(many.as_bytes()), Err(SyncError::TooManyLines));
        assert!(decode_heads(b"").unwrap().is_empty());
    }
}
