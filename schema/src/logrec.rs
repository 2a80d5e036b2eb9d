//! Log records as they travel from a data-plane core to controld: a batch
//! is an array of fixed-size records (plain little-endian structs, read in
//! place with `zerocopy`, no parsing) plus one string arena the records
//! point into. A core fills a batch without allocating per record; controld
//! reads each record straight out of the received frame.
//!
//! Every field is an unaligned little-endian integer, so a record can be
//! read from any offset of a Cap'n Proto `Data` blob.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// What a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// One HTTP request through the proxy.
    Traffic = 0,
    /// A recognized activity (download, upload, login, blocked activity…).
    Activity = 1,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        match v {
            0 => Some(Kind::Traffic),
            1 => Some(Kind::Activity),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Traffic => "traffic",
            Kind::Activity => "activity",
        }
    }
}

/// The policy action applied to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    Allow = 0,
    Block = 1,
    Monitor = 2,
    Protect = 3,
    Audit = 4,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Allow,
        Action::Block,
        Action::Monitor,
        Action::Protect,
        Action::Audit,
    ];
    pub fn from_u8(v: u8) -> Option<Action> {
        Action::ALL.get(v as usize).copied()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Monitor => "monitor",
            Action::Protect => "protect",
            Action::Audit => "audit",
        }
    }
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The string fields of a record, in arena-reference order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Field {
    User = 0,
    UserAgent,
    App,
    Host,
    Method,
    Url,
    SessionId,
    DeviceTags,
    Policy,
    Activity,
    FileName,
    /// What session control found in a file: type, label, matches.
    Detail,
}

/// Number of string fields.
pub const STRING_FIELDS: usize = 12;

/// Longest string kept per field (bytes); longer values are cut at a
/// character boundary so one hostile header cannot fill a batch.
pub const MAX_STRING: usize = 4096;

/// A string in the batch arena.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct StrRef {
    pub offset: U32,
    pub len: U32,
}

/// The fixed part of one record (164 bytes).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Record {
    /// When the request started (activity: when it was recognized).
    pub time_unix_us: U64,
    /// Unique per core run: the request id shown on error and block pages.
    pub request_id: U64,
    /// Bytes received from the client for this request (head and body as
    /// they arrived on the wire).
    pub bytes_up: U64,
    /// Bytes sent to the client for this request (head and body).
    pub bytes_down: U64,
    /// Size of the file of an activity (0 when none).
    pub file_size: U64,
    pub duration_us: U32,
    /// Client address; IPv4 as an IPv4-mapped IPv6 address.
    pub client_ip: [u8; 16],
    pub client_port: U16,
    pub status: U16,
    pub kind: u8,
    pub action: u8,
    pub tls: u8,
    /// The client's HTTP version: 0 (and in records from data planes
    /// older than HTTP/2 support) HTTP/1.x, 2 HTTP/2.
    pub protocol: u8,
    pub strings: [StrRef; STRING_FIELDS],
}

/// Bytes of one fixed record.
pub const RECORD_BYTES: usize = std::mem::size_of::<Record>();

/// Why a received batch was refused.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The record array is not `count` records long.
    Length { count: u32, bytes: usize },
    /// A string points outside the arena.
    StringOutOfArena { record: usize },
    /// A kind or action byte out of range.
    BadEnum { record: usize },
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Length { count, bytes } => write!(
                f,
                "{count} records announced but {bytes} bytes of records sent ({RECORD_BYTES} each)"
            ),
            BatchError::StringOutOfArena { record } => {
                write!(f, "record {record}: a string points outside the arena")
            }
            BatchError::BadEnum { record } => {
                write!(f, "record {record}: kind or action out of range")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// A received batch, borrowed from the frame it arrived in.
pub struct BatchView<'a> {
    records: &'a [Record],
    arena: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Checks every record's enums and string references once, so reading
    /// fields afterwards cannot fail.
    pub fn new(count: u32, records: &'a [u8], arena: &'a [u8]) -> Result<Self, BatchError> {
        let length = BatchError::Length {
            count,
            bytes: records.len(),
        };
        if records.len() != count as usize * RECORD_BYTES {
            return Err(length);
        }
        let records = <[Record]>::ref_from_bytes(records).map_err(|_| length)?;
        for (i, r) in records.iter().enumerate() {
            if Kind::from_u8(r.kind).is_none() || Action::from_u8(r.action).is_none() {
                return Err(BatchError::BadEnum { record: i });
            }
            for s in &r.strings {
                let end = s.offset.get() as u64 + s.len.get() as u64;
                if end > arena.len() as u64 {
                    return Err(BatchError::StringOutOfArena { record: i });
                }
            }
        }
        Ok(BatchView { records, arena })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = RecordView<'a>> + '_ {
        let arena = self.arena;
        self.records
            .iter()
            .map(move |fixed| RecordView { fixed, arena })
    }
}

/// One checked record.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    pub fixed: &'a Record,
    arena: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// A string field; invalid UTF-8 is shown with replacement characters.
    pub fn text(&self, field: Field) -> std::borrow::Cow<'a, str> {
        let bytes = self.bytes(field);
        match std::str::from_utf8(bytes) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(bytes),
        }
    }

    /// A string field's bytes as the core sent them.
    pub fn bytes(&self, field: Field) -> &'a [u8] {
        let s = self.fixed.strings[field as usize];
        let start = s.offset.get() as usize;
        // BatchView::new checked the range.
        &self.arena[start..start + s.len.get() as usize]
    }

    pub fn kind(&self) -> Kind {
        Kind::from_u8(self.fixed.kind).unwrap_or(Kind::Traffic)
    }

    pub fn action(&self) -> Action {
        Action::from_u8(self.fixed.action).unwrap_or(Action::Allow)
    }

    pub fn client_ip(&self) -> std::net::IpAddr {
        let v6 = std::net::Ipv6Addr::from(self.fixed.client_ip);
        match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(v6),
        }
    }
}

/// Builds a batch: records appended one by one, strings copied into the
/// arena. Reused across batches (`clear`), so steady-state logging does not
/// allocate.
#[derive(Default)]
pub struct BatchBuilder {
    records: Vec<u8>,
    arena: Vec<u8>,
    count: u32,
}

impl BatchBuilder {
    pub fn with_capacity(records: usize, arena: usize) -> BatchBuilder {
        BatchBuilder {
            records: Vec::with_capacity(records * RECORD_BYTES),
            arena: Vec::with_capacity(arena),
            count: 0,
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes held (records and arena).
    pub fn bytes(&self) -> usize {
        self.records.len() + self.arena.len()
    }

    pub fn records_bytes(&self) -> &[u8] {
        &self.records
    }

    pub fn arena(&self) -> &[u8] {
        &self.arena
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.arena.clear();
        self.count = 0;
    }

    /// Stores `value` in the arena and returns its reference; values over
    /// [`MAX_STRING`] are cut at a character boundary.
    pub fn string(&mut self, value: &[u8]) -> StrRef {
        let mut len = value.len().min(MAX_STRING);
        // Cut before a UTF-8 continuation byte so the kept prefix stays
        // valid text if the whole was.
        while len < value.len() && len > 0 && (value[len] & 0xC0) == 0x80 {
            len -= 1;
        }
        let offset = self.arena.len() as u32;
        self.arena.extend_from_slice(&value[..len]);
        StrRef {
            offset: U32::new(offset),
            len: U32::new(len as u32),
        }
    }

    /// Stores the concatenation of `parts` as one string (same limit).
    pub fn string_parts(&mut self, parts: &[&[u8]]) -> StrRef {
        let offset = self.arena.len();
        for part in parts {
            let room = MAX_STRING - (self.arena.len() - offset);
            let mut len = part.len().min(room);
            while len < part.len() && len > 0 && (part[len] & 0xC0) == 0x80 {
                len -= 1;
            }
            self.arena.extend_from_slice(&part[..len]);
        }
        StrRef {
            offset: U32::new(offset as u32),
            len: U32::new((self.arena.len() - offset) as u32),
        }
    }

    /// Appends a record whose string references came from [`string`].
    ///
    /// [`string`]: BatchBuilder::string
    pub fn push(&mut self, record: &Record) {
        self.records.extend_from_slice(record.as_bytes());
        self.count += 1;
    }
}

/// Client address as stored in a record.
pub fn ip_bytes(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_bytes_at_any_alignment() {
        let mut b = BatchBuilder::default();
        let mut r = Record {
            time_unix_us: U64::new(1_700_000_000_000_000),
            bytes_up: U64::new(77),
            status: U16::new(200),
            client_ip: ip_bytes("192.0.2.7".parse().unwrap()),
            ..Record::default()
        };
        r.strings[Field::Url as usize] = b.string(b"/a?b=c");
        r.strings[Field::App as usize] = b.string("bóx".as_bytes());
        b.push(&r);
        // One byte of offset: the view must not need alignment.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(b.records_bytes());
        let view = BatchView::new(1, &shifted[1..], b.arena()).unwrap();
        let rec = view.records().next().unwrap();
        assert_eq!(rec.text(Field::Url), "/a?b=c");
        assert_eq!(rec.text(Field::App), "bóx");
        assert_eq!(rec.text(Field::User), "");
        assert_eq!(rec.fixed.status.get(), 200);
        assert_eq!(rec.client_ip().to_string(), "192.0.2.7");
        assert_eq!(RECORD_BYTES, 164);
    }

    #[test]
    fn hostile_batches_are_refused() {
        let mut b = BatchBuilder::default();
        let mut r = Record::default();
        r.strings[0] = StrRef {
            offset: U32::new(u32::MAX),
            len: U32::new(2),
        };
        b.push(&r);
        assert_eq!(
            BatchView::new(1, b.records_bytes(), b.arena()).err(),
            Some(BatchError::StringOutOfArena { record: 0 })
        );
        assert!(matches!(
            BatchView::new(2, b.records_bytes(), b.arena()),
            Err(BatchError::Length { .. })
        ));
        let r = Record {
            kind: 9,
            ..Record::default()
        };
        let mut b = BatchBuilder::default();
        b.push(&r);
        assert_eq!(
            BatchView::new(1, b.records_bytes(), b.arena()).err(),
            Some(BatchError::BadEnum { record: 0 })
        );
    }

    #[test]
    fn long_strings_are_cut_on_a_character_boundary() {
        let mut b = BatchBuilder::default();
        let long = "é".repeat(MAX_STRING);
        let s = b.string(long.as_bytes());
        assert!(s.len.get() as usize <= MAX_STRING);
        assert!(std::str::from_utf8(&b.arena()[..s.len.get() as usize]).is_ok());
    }
}
