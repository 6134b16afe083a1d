//! RFC 4575 conference-info documents: the focus writes full-state documents, the tests
//! read the users out of what crossed the borders.

pub const CONTENT_TYPE: &str = "application/conference-info+xml";

/// A full-state document for conference `entity` with `users` (their URIs) connected.
pub fn full_state(entity: &str, version: u32, users: &[String]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<conference-info xmlns=\"urn:ietf:params:xml:ns:conference-info\" entity=\"{entity}\" \
state=\"full\" version=\"{version}\">\r\n\
 <conference-description><subject>Case 2</subject></conference-description>\r\n\
 <conference-state><user-count>{}</user-count></conference-state>\r\n <users>\r\n",
        users.len()
    );
    for u in users {
        s.push_str(&format!(
            "  <user entity=\"{u}\" state=\"full\">\r\n   <endpoint entity=\"{u}\">\
<status>connected</status></endpoint>\r\n  </user>\r\n"
        ));
    }
    s.push_str(" </users>\r\n</conference-info>\r\n");
    s
}

/// The `entity` of every `<user>` element of `doc`.
pub fn users(doc: &str) -> Vec<String> {
    doc.split("<user ")
        .skip(1)
        .filter_map(|el| attr(el, "entity"))
        .collect()
}

/// The `version` attribute of the document element.
pub fn version(doc: &str) -> Option<u32> {
    let el = doc.split("<conference-info").nth(1)?;
    attr(el, "version")?.parse().ok()
}

/// Value of attribute `name` in the start tag that `el` begins with.
fn attr(el: &str, name: &str) -> Option<String> {
    let tag = el.split('>').next()?;
    let pat = format!("{name}=\"");
    let start = tag.find(&pat)? + pat.len();
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].to_string())
}

/// Unit checks: what `full_state` writes, `users` and `version` read back.
pub fn self_test() -> Result<(), String> {
    let us = vec![
        "sip:alice@operator-a.example".to_string(),
        "sip:cindy@operator-b.example".to_string(),
    ];
    let d = full_state("sip:conf-1@operator-a.example", 3, &us);
    if users(&d) != us || version(&d) != Some(3) {
        return Err(format!(
            "read back {:?} {:?} from\n{d}",
            users(&d),
            version(&d)
        ));
    }
    if !users(&full_state("sip:c@x", 1, &[])).is_empty() {
        return Err("users in an empty conference".into());
    }
    Ok(())
}
