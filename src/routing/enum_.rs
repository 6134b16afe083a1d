//! ENUM (RFC 6116, GSMA IR.67 carrier ENUM), the pure part: the E.164 number a request is for
//! (`tel:` or `user=phone` URIs, RFC 3966 visual separators dropped), the domain to query under
//! each configured suffix, and the choice among the NAPTRs that come back: `E2U+sip` only,
//! order then preference, terminal rules only, rewritten by the RFC 3402 substitution
//! expression. The queries themselves are made by the service (`service::dns`).

use super::naptr::Naptr;
use crate::sip::Uri;

/// The E.164 number (`+` and digits only) a Request-URI addresses, if it addresses one: a
/// global `tel:` number, or a `sip:`/`sips:` URI with `user=phone` whose user part is one.
/// Visual separators (`-`, `.`, `(`, `)`, RFC 3966 §5.1.1) are dropped; parameters after `;`
/// are ignored. Local numbers (no `+`) have no E.164 form without a phone-context and give
/// `None`.
pub fn e164_of(uri: &Uri) -> Option<String> {
    let number = match uri {
        Uri::Other(s) => {
            let (scheme, rest) = s.split_once(':')?;
            if !scheme.eq_ignore_ascii_case("tel") {
                return None;
            }
            rest.split(';').next()?.to_string()
        }
        Uri::Sip(u) => {
            if !u
                .param("user")
                .flatten()
                .is_some_and(|v| v.eq_ignore_ascii_case("phone"))
            {
                return None;
            }
            u.user.as_deref()?.split(';').next()?.to_string()
        }
    };
    normalise(&number)
}

/// `+49 (30) 123-456` style text to `+4930123456`; `None` unless it is `+` followed by 1 to 15
/// digits once the visual separators are gone (E.164 allows at most 15).
pub fn normalise(number: &str) -> Option<String> {
    let rest = number.strip_prefix('+')?;
    let mut digits = String::with_capacity(rest.len() + 1);
    digits.push('+');
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (2..=16).contains(&digits.len()).then_some(digits)
}

/// The ENUM domain of `e164` under `suffix` (RFC 6116 §2.4): the digits reversed, one label each.
/// `+4930123456` under `e164.arpa` is `6.5.4.3.2.1.0.3.9.4.e164.arpa.`.
pub fn enum_domain(e164: &str, suffix: &str) -> String {
    let mut name = String::with_capacity(e164.len() * 2 + suffix.len() + 1);
    for d in e164.chars().rev().filter(char::is_ascii_digit) {
        name.push(d);
        name.push('.');
    }
    name.push_str(suffix.trim_end_matches('.'));
    name.push('.');
    name
}

/// What one NAPTR meant for the choice, for `palisade resolve` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Not an `E2U+sip` service.
    OtherService,
    /// A non-terminal rule (no `u` flag): RFC 6116 §2.4 leaves these undefined for ENUM; skipped.
    NonTerminal,
    /// The rewrite failed (bad expression, no match, not a SIP URI).
    Failed(String),
    /// The rule applied and gave this URI.
    Applied(String),
    /// A valid rule not reached: an earlier one applied.
    NotReached,
}

/// Applies the NAPTRs of one ENUM domain to the Application Unique String (`e164`, RFC 6116
/// §2.4): sorted by order then preference, the first terminal `E2U+sip` rule whose expression
/// matches and rewrites to a `sip:`/`sips:` URI wins. Returns each NAPTR (sorted) with what it
/// meant, and the winning URI.
pub fn choose(naptrs: &[Naptr], e164: &str) -> (Vec<(Naptr, RuleOutcome)>, Option<Uri>) {
    let mut sorted = naptrs.to_vec();
    sorted.sort_by_key(|n| (n.order, n.preference));
    let mut chosen: Option<Uri> = None;
    let mut out = Vec::with_capacity(sorted.len());
    for n in sorted {
        let outcome = if !is_e2u_sip(&n.services) {
            RuleOutcome::OtherService
        } else if !n.flags.eq_ignore_ascii_case("u") {
            RuleOutcome::NonTerminal
        } else if chosen.is_some() {
            RuleOutcome::NotReached
        } else {
            match substitute(&n.regexp, e164) {
                Err(e) => RuleOutcome::Failed(e),
                Ok(s) => match Uri::parse(&s) {
                    Some(u @ Uri::Sip(_)) => {
                        chosen = Some(u);
                        RuleOutcome::Applied(s)
                    }
                    _ => RuleOutcome::Failed(format!("{s:?} is not a SIP URI")),
                },
            }
        };
        out.push((n, outcome));
    }
    (out, chosen)
}

/// `E2U+sip`, also within a list of enumservices (`E2U+sip:foo`? no: RFC 6116 §3.4.3 subtypes
/// are `E2U+type:subtype`; `sip` has none, so the service field must be exactly this, compared
/// case-insensitively).
fn is_e2u_sip(services: &str) -> bool {
    services.eq_ignore_ascii_case("E2U+sip")
}

/// Most memory one NAPTR expression may compile to (the regex crate's default is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// An RFC 3402 §3.2 substitution expression `<delim>ERE<delim>repl<delim>flags` applied to
/// `input`. The delimiter is the first character (any but a digit, `\` or the flag `i`); a
/// delimiter inside a part is escaped with `\`. `\1`..`\9` in the replacement are the
/// sub-expressions, `\\` a backslash; the only flag is `i` (case-insensitive match).
pub fn substitute(expr: &str, input: &str) -> Result<String, String> {
    let mut chars = expr.chars();
    let delim = chars.next().ok_or("empty regexp")?;
    if delim.is_ascii_digit() || delim == '\\' || delim == 'i' {
        return Err(format!("{delim:?} cannot be the delimiter"));
    }
    // Split on unescaped delimiters; an escaped delimiter stands for itself.
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in chars {
        let part = parts.last_mut().expect("parts is never empty");
        if escaped {
            if c != delim {
                part.push('\\');
            }
            part.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim {
            parts.push(String::new());
        } else {
            part.push(c);
        }
    }
    if escaped {
        return Err("regexp ends in a lone backslash".into());
    }
    let [ere, repl, flags] = <[String; 3]>::try_from(parts).map_err(|p| {
        format!(
            "regexp has {} parts, want ERE, replacement and flags between three {delim:?}",
            p.len()
        )
    })?;
    let insensitive = match flags.as_str() {
        "" => false,
        "i" => true,
        f => return Err(format!("unknown regexp flags {f:?}")),
    };
    // The expression comes from DNS: bound what compiling it may cost.
    let re = regex::RegexBuilder::new(&ere)
        .case_insensitive(insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("bad ERE {ere:?}: {e}"))?;
    let caps = re
        .captures(input)
        .ok_or_else(|| format!("ERE {ere:?} does not match {input:?}"))?;
    let whole = caps.get(0).expect("group 0 always exists");
    // RFC 3402: the matched part is replaced; text outside the match stays.
    let mut out = String::with_capacity(input.len() + repl.len());
    out.push_str(&input[..whole.start()]);
    let mut rc = repl.chars();
    while let Some(c) = rc.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match rc.next() {
            Some(d @ '1'..='9') => {
                let n = d as usize - '0' as usize;
                if n >= caps.len() {
                    return Err(format!("back-reference \\{n} but the ERE has fewer groups"));
                }
                out.push_str(caps.get(n).map_or("", |m| m.as_str()));
            }
            Some(other) => out.push(other),
            None => return Err("replacement ends in a lone backslash".into()),
        }
    }
    out.push_str(&input[whole.end()..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naptr(order: u16, pref: u16, flags: &str, services: &str, regexp: &str) -> Naptr {
        Naptr {
            order,
            preference: pref,
            flags: flags.into(),
            services: services.into(),
            regexp: regexp.into(),
            replacement: ".".into(),
        }
    }

    #[test]
    fn numbers_from_tel_and_user_phone_uris() {
        let tel = Uri::parse("tel:+49-30-(123).456;phone-context=x").unwrap();
        assert_eq!(e164_of(&tel).as_deref(), Some("+4930123456"));
        let sip = Uri::parse("sip:+4930123456@operator-a.example;user=phone").unwrap();
        assert_eq!(e164_of(&sip).as_deref(), Some("+4930123456"));
        let plain = Uri::parse("sip:+4930123456@operator-a.example").unwrap();
        assert_eq!(
            e164_of(&plain),
            None,
            "no user=phone: a user name, not a number"
        );
        assert_eq!(e164_of(&Uri::parse("tel:030123456").unwrap()), None);
        assert_eq!(normalise("+1234567890123456"), None, "16 digits");
        assert_eq!(normalise("+49 30"), None, "space is not a visual separator");
    }

    #[test]
    fn enum_domain_reverses_digits() {
        assert_eq!(
            enum_domain("+4930123456", "e164.arpa"),
            "6.5.4.3.2.1.0.3.9.4.e164.arpa."
        );
        assert_eq!(
            enum_domain("+12", "e164.carrier.example."),
            "2.1.e164.carrier.example."
        );
    }

    #[test]
    fn regexp_back_references_and_delimiters() {
        let e = "+4930123456";
        assert_eq!(
            substitute("!^\\+(.*)$!sip:+\\1@b.example;user=phone!", e).unwrap(),
            "sip:+4930123456@b.example;user=phone"
        );
        assert_eq!(
            substitute("/^\\+49(30)(.*)$/sip:\\2@city\\1.example/", e).unwrap(),
            "sip:123456@city30.example"
        );
        // The delimiter escaped inside a part stands for itself.
        assert_eq!(
            substitute("#^\\+49(.*)$#sip:\\1\\#x@b.example#", e).unwrap(),
            "sip:30123456#x@b.example"
        );
        // Only the matched part is replaced.
        assert_eq!(substitute("!456$!999!", e).unwrap(), "+4930123999");
        assert_eq!(substitute("!^.*$!sip:a\\\\b@c!", e).unwrap(), "sip:a\\b@c");
        assert!(substitute("!^(.*)$!\\2!", e)
            .unwrap_err()
            .contains("back-reference"));
        assert!(substitute("!^(.*)$!x", e).is_err(), "two parts");
        assert!(substitute("1^(.*)$1x1", e).is_err(), "digit delimiter");
        assert!(substitute("!^+49$!x!", e).is_err(), "no match");
    }

    #[test]
    fn regexp_flag_i() {
        assert!(substitute("!^SIP:(.*)$!\\1!", "sip:x").is_err());
        assert_eq!(substitute("!^SIP:(.*)$!\\1!i", "sip:x").unwrap(), "x");
        assert!(substitute("!^x$!y!g", "x").unwrap_err().contains("flags"));
    }

    #[test]
    fn choice_by_order_then_preference_terminal_sip_only() {
        let e = "+4930123456";
        let set = vec![
            naptr(20, 10, "u", "E2U+sip", "!^.*$!sip:late@order20.example!"),
            naptr(10, 20, "u", "E2U+sip", "!^.*$!sip:pref20@order10.example!"),
            naptr(10, 10, "u", "E2U+mailto", "!^.*$!mailto:x@y.example!"),
            naptr(10, 5, "", "E2U+sip", "!^.*$!sip:nonterminal@x.example!"),
            naptr(10, 15, "U", "e2u+SIP", "!^.*$!sip:pref15@order10.example!"),
        ];
        let (steps, uri) = choose(&set, e);
        assert_eq!(uri.unwrap().to_string(), "sip:pref15@order10.example");
        let outcomes: Vec<_> = steps
            .iter()
            .map(|(n, o)| (n.order, n.preference, o.clone()))
            .collect();
        assert_eq!(outcomes[0], (10, 5, RuleOutcome::NonTerminal));
        assert_eq!(outcomes[1], (10, 10, RuleOutcome::OtherService));
        assert!(matches!(outcomes[2].2, RuleOutcome::Applied(_)));
        assert_eq!(outcomes[3].2, RuleOutcome::NotReached);
        assert_eq!(outcomes[4].2, RuleOutcome::NotReached);
    }

    proptest::proptest! {
        /// Whatever a NAPTR says, the rewrite returns (a result or an error), never panics.
        #[test]
        fn substitute_never_panics(expr in "\\PC{0,40}", input in "[+0-9]{0,16}") {
            let _ = substitute(&expr, &input);
        }

        #[test]
        fn delimited_expressions_never_panic(
            d in "[!/#|x]",
            ere in "[\\\\^$.*+?()\\[\\]{}0-9a-z!|/#]{0,20}",
            repl in "[\\\\0-9a-z:@.!/#]{0,20}",
            flags in "i?",
        ) {
            let _ = substitute(&format!("{d}{ere}{d}{repl}{d}{flags}"), "+4930123456");
        }
    }

    #[test]
    fn huge_expressions_are_refused() {
        let expr = "!^(a{1000}){1000}$!x!";
        assert!(substitute(expr, "+1").unwrap_err().contains("bad ERE"));
    }

    #[test]
    fn a_failing_rule_falls_through_to_the_next() {
        let set = vec![
            naptr(10, 10, "u", "E2U+sip", "!^\\+1(.*)$!sip:\\1@us.example!"),
            naptr(10, 20, "u", "E2U+sip", "!^.*$!tel:+1!"),
            naptr(10, 30, "u", "E2U+sip", "!^\\+(.*)$!sip:\\1@b.example!"),
        ];
        let (steps, uri) = choose(&set, "+4930");
        assert_eq!(uri.unwrap().to_string(), "sip:4930@b.example");
        assert!(matches!(steps[0].1, RuleOutcome::Failed(_)));
        assert!(
            matches!(steps[1].1, RuleOutcome::Failed(_)),
            "not a SIP URI"
        );
    }
}
