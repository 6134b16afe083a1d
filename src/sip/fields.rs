//! Header fields as text: [`Header`] and [`Headers`] (wire order kept), canonical header names
//! (compact forms, RFC spellings) and comma-list splitting.

/// Compact header forms (RFC 3261 §7.3.3 and the IANA registry).
const COMPACT: &[(u8, &str)] = &[
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'e', "Content-Encoding"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'f', "From"),
    (b's', "Subject"),
    (b'k', "Supported"),
    (b't', "To"),
    (b'v', "Via"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b'b', "Referred-By"),
    (b'u', "Allow-Events"),
    (b'x', "Session-Expires"),
    (b'a', "Accept-Contact"),
    (b'j', "Reject-Contact"),
    (b'd', "Request-Disposition"),
    (b'y', "Identity"),
    (b'n', "Identity-Info"),
];

/// Well-known header names in their RFC spelling; matched case-insensitively.
const KNOWN: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Accept-Resource-Priority",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Answer-Mode",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-ID",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "Feature-Caps",
    "Flow-Timer",
    "From",
    "Geolocation",
    "Geolocation-Error",
    "Geolocation-Routing",
    "History-Info",
    "Identity",
    "Identity-Info",
    "Info-Package",
    "In-Reply-To",
    "Join",
    "Max-Breadth",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Access-Network-Info",
    "P-Asserted-Identity",
    "P-Asserted-Service",
    "P-Associated-URI",
    "P-Called-Party-ID",
    "P-Charging-Function-Addresses",
    "P-Charging-Vector",
    "P-Early-Media",
    "P-Preferred-Identity",
    "P-Preferred-Service",
    "P-Served-User",
    "P-Visited-Network-ID",
    "Path",
    "Permission-Missing",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Recv-Info",
    "Refer-Sub",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Resource-Priority",
    "Retry-After",
    "Route",
    "RSeq",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Session-ID",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Target-Dialog",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// The long form of a compact header name (`v` → `Via`); any other name unchanged.
fn expand_compact(name: &str) -> &str {
    if let [b] = name.as_bytes() {
        let lower = b.to_ascii_lowercase();
        if let Some((_, long)) = COMPACT.iter().find(|(c, _)| *c == lower) {
            return long;
        }
    }
    name
}

/// The well-known names grouped by length, so a lookup compares a handful of candidates
/// instead of the whole list (this runs for every header parsed and printed).
fn known_by_len() -> &'static [Vec<&'static str>] {
    static TABLE: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let longest = KNOWN.iter().map(|k| k.len()).max().unwrap_or(0);
        let mut t = vec![Vec::new(); longest + 1];
        for k in KNOWN {
            t[k.len()].push(*k);
        }
        t
    })
}

/// Canonical form of a header name: compact forms expanded, well-known names in their RFC
/// spelling, anything else returned unchanged.
pub fn canonical_name(name: &str) -> &str {
    let name = expand_compact(name);
    known_by_len()
        .get(name.len())
        .and_then(|same_len| same_len.iter().find(|k| k.eq_ignore_ascii_case(name)))
        .copied()
        .unwrap_or(name)
}

/// Whether a stored header name (canonical since parsing) is `query`: canonical forms differ
/// from the names they come from only by case and compact expansion, so comparing without case
/// after expanding the query is the same test as comparing canonical forms, without the lookup.
fn name_matches(header_name: &str, query: &str) -> bool {
    header_name.eq_ignore_ascii_case(expand_compact(query))
}

/// Splits a comma-separated header value, ignoring commas inside quoted strings and `<...>`.
/// Returns every element trimmed, including empty ones.
pub fn split_commas(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let mut in_quote = false;
    let mut in_angle = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b'"' if !in_angle => in_quote = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                out.push(value.get(start..i).unwrap_or("").trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value.get(start..).unwrap_or("").trim());
    out
}

/// One header field as it appeared on the wire, with its name in canonical long form
/// (compact forms expanded, known names in their RFC spelling, unknown names as received) and its
/// value unfolded and trimmed. A line carrying several comma-separated values stays one `Header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Header fields in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// Heap bytes of the header list: the vector and every name and value.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<Header>()
            + self
                .0
                .iter()
                .map(|h| h.name.capacity() + h.value.capacity())
                .sum::<usize>()
    }

    /// First value of the named header (case-insensitive name match, compact forms accepted).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| name_matches(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every value of the named header, in order, with comma-separated lines split into separate
    /// values (splitting respects quotes and `<...>`). For headers that are not comma-lists
    /// (e.g. WWW-Authenticate, Date) use [`Headers::lines`]. Empty elements are dropped.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|h| name_matches(&h.name, name))
            .flat_map(|h| split_commas(&h.value))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Each header line of that name, unsplit.
    pub fn lines<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let canon = canonical_name(name);
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(canon))
            .map(|h| h.value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of header lines with that name.
    pub fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|h| name_matches(&h.name, name))
            .count()
    }

    /// Appends a header line at the end.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: canonical_name(name).to_string(),
            value: value.into(),
        });
    }

    /// Inserts a header line before all others (used for Via).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name: canonical_name(name).to_string(),
                value: value.into(),
            },
        );
    }

    /// Replaces every line of that name with one line holding `value` (at the first one's
    /// position, or appended when absent).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| name_matches(&h.name, name)) {
            Some(pos) => {
                let mut i = 0;
                self.0.retain(|h| {
                    let keep = i == pos || !name_matches(&h.name, name);
                    i += 1;
                    keep
                });
                if let Some(h) = self.0.get_mut(pos) {
                    h.value = value;
                }
            }
            None => self.push(name, value),
        }
    }

    /// Removes every line of that name; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|h| !name_matches(&h.name, name));
        before - self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}
