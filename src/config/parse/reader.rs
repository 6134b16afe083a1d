//! The spanned-TOML walker: the parse context that collects every error with its file, line,
//! column and field path, and [`Tab`], a table being read with typed, error-reporting getters.

use super::*;

pub(super) type Reader<'r> = &'r dyn Fn(&Path) -> std::io::Result<String>;

pub(super) struct Src {
    pub(super) file: PathBuf,
    pub(super) text: String,
}

/// A value with where it came from: source file index, byte span and field path.
#[derive(Debug, Clone)]
pub(super) struct Sp<T> {
    pub(super) v: T,
    pub(super) src: usize,
    pub(super) span: Range<usize>,
    pub(super) field: String,
}

impl<T> Sp<T> {
    pub(super) fn map<U>(self, f: impl FnOnce(T) -> U) -> Sp<U> {
        Sp {
            v: f(self.v),
            src: self.src,
            span: self.span,
            field: self.field,
        }
    }
}

pub(super) struct Ctx<'r> {
    pub(super) srcs: Vec<Src>,
    pub(super) errors: Vec<(usize, ConfigError)>,
    pub(super) read: Reader<'r>,
    /// Peer policy files already read, with the field that named them.
    pub(super) peer_files: HashMap<PathBuf, String>,
}

impl Ctx<'_> {
    pub(super) fn add_src(&mut self, file: &Path, text: &str) -> usize {
        self.srcs.push(Src {
            file: file.to_path_buf(),
            text: text.to_string(),
        });
        self.srcs.len() - 1
    }

    pub(super) fn err(
        &mut self,
        src: usize,
        span: Range<usize>,
        field: &str,
        kind: Kind,
        msg: impl Into<String>,
    ) {
        let s = &self.srcs[src];
        let (line, column) = line_col(&s.text, span.start);
        self.errors.push((
            src,
            ConfigError {
                file: s.file.clone(),
                line,
                column,
                field: field.to_string(),
                kind,
                message: msg.into(),
            },
        ));
    }

    pub(super) fn err_at<T>(&mut self, at: &Sp<T>, kind: Kind, msg: impl Into<String>) {
        self.err(at.src, at.span.clone(), &at.field.clone(), kind, msg);
    }

    pub(super) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub(super) fn into_errors(self) -> ConfigErrors {
        let mut errors = self.errors;
        errors.sort_by_key(|(src, e)| (*src, e.line, e.column));
        ConfigErrors(errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

pub(super) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A TOML table being read.
pub(super) struct Tab<'t, 'i> {
    pub(super) t: &'t DeTable<'i>,
    pub(super) span: Range<usize>,
    pub(super) src: usize,
    pub(super) path: String,
}

impl<'t, 'i> Tab<'t, 'i> {
    pub(super) fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.t
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    pub(super) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.t
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span())
    }

    pub(super) fn check_keys(&self, cx: &mut Ctx, allowed: &[&str]) {
        for (k, _) in self.t.iter() {
            let key: &str = k.get_ref().as_ref();
            if !allowed.contains(&key) {
                cx.err(
                    self.src,
                    k.span(),
                    &self.field(key),
                    Kind::UnknownKey,
                    format!("unknown key `{key}`; allowed: {}", allowed.join(", ")),
                );
            }
        }
    }

    pub(super) fn missing(&self, cx: &mut Ctx, key: &str) {
        cx.err(
            self.src,
            self.span.clone(),
            &self.field(key),
            Kind::MissingField,
            format!("missing required key `{key}`"),
        );
    }

    pub(super) fn sp<T>(&self, v: T, span: Range<usize>, field: String) -> Sp<T> {
        Sp {
            v,
            src: self.src,
            span,
            field,
        }
    }

    pub(super) fn wrong(
        &self,
        cx: &mut Ctx,
        v: &Spanned<DeValue<'_>>,
        field: &str,
        expected: &str,
    ) {
        cx.err(
            self.src,
            v.span(),
            field,
            Kind::WrongType,
            format!("expected {expected}, found {}", type_name(v.get_ref())),
        );
    }

    pub(super) fn str_value(
        &self,
        cx: &mut Ctx,
        v: &Spanned<DeValue<'_>>,
        field: String,
    ) -> Option<Sp<String>> {
        match v.get_ref() {
            DeValue::String(s) => {
                if s.trim().is_empty() {
                    cx.err(
                        self.src,
                        v.span(),
                        &field,
                        Kind::BadValue,
                        "must not be empty",
                    );
                    None
                } else {
                    Some(self.sp(s.to_string(), v.span(), field))
                }
            }
            _ => {
                self.wrong(cx, v, &field, "a string");
                None
            }
        }
    }

    pub(super) fn str(&self, cx: &mut Ctx, key: &str) -> Option<Sp<String>> {
        let v = self.get(key)?;
        self.str_value(cx, v, self.field(key))
    }

    pub(super) fn req_str(&self, cx: &mut Ctx, key: &str) -> Option<Sp<String>> {
        if self.get(key).is_none() {
            self.missing(cx, key);
        }
        self.str(cx, key)
    }

    /// A list of strings; `None` if absent or not an array. Bad elements are reported and skipped.
    pub(super) fn str_list(&self, cx: &mut Ctx, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        let v = self.get(key)?;
        let field = self.field(key);
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong(cx, v, &field, "an array of strings");
            return None;
        };
        let list = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.str_value(cx, item, format!("{field}[{i}]")))
            .collect();
        Some(self.sp(list, v.span(), field))
    }

    pub(super) fn req_list(&self, cx: &mut Ctx, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        if self.get(key).is_none() {
            self.missing(cx, key);
            return None;
        }
        let list = self.str_list(cx, key)?;
        if list.v.is_empty()
            && self
                .get(key)
                .is_some_and(|v| v.get_ref().as_array().is_some_and(|a| a.is_empty()))
        {
            cx.err_at(&list, Kind::BadValue, "must list at least one entry");
        }
        Some(list)
    }

    /// Like [`Tab::req_list`] but the key may be absent (then `None`); present, it must not be
    /// empty.
    pub(super) fn req_list_opt(&self, cx: &mut Ctx, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        self.get(key)?;
        self.req_list(cx, key)
    }

    pub(super) fn int(&self, cx: &mut Ctx, key: &str, min: u64, max: u64) -> Option<Sp<u64>> {
        let v = self.get(key)?;
        let field = self.field(key);
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong(cx, v, &field, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= 0 && (n as u64) >= min && (n as u64) <= max => {
                Some(self.sp(n as u64, v.span(), field))
            }
            _ => {
                let msg = if min == 1 && i.as_str() == "0" {
                    "must be greater than 0".to_string()
                } else {
                    format!("must be between {min} and {max}")
                };
                cx.err(self.src, v.span(), &field, Kind::BadValue, msg);
                None
            }
        }
    }

    pub(super) fn boolean(&self, cx: &mut Ctx, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong(cx, v, &self.field(key), "true or false");
                None
            }
        }
    }

    pub(super) fn table(&self, cx: &mut Ctx, key: &str) -> Option<Tab<'t, 'i>> {
        let v = self.get(key)?;
        let field = self.field(key);
        match v.get_ref() {
            DeValue::Table(t) => Some(Tab {
                t,
                span: v.span(),
                src: self.src,
                path: field,
            }),
            _ => {
                self.wrong(cx, v, &field, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[key]]`); elements get the path `key[i]`.
    pub(super) fn tables(&self, cx: &mut Ctx, key: &str) -> Option<Vec<Tab<'t, 'i>>> {
        let v = self.get(key)?;
        let field = self.field(key);
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong(cx, v, &field, "an array of tables");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(Tab {
                    t,
                    span: item.span(),
                    src: self.src,
                    path: format!("{field}[{i}]"),
                }),
                _ => self.wrong(cx, item, &format!("{field}[{i}]"), "a table"),
            }
        }
        Some(out)
    }
}

/// Parses a document, reporting all syntax errors; `None` if there were any.
pub(super) fn document<'i>(
    cx: &mut Ctx,
    src: usize,
    text: &'i str,
) -> Option<Spanned<DeTable<'i>>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Some(doc);
    }
    // The parser recovers and goes on, but later errors on the same line are mostly echoes of
    // the first: report one per line.
    let mut lines_seen = Vec::new();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let (line, _) = line_col(text, span.start);
        if !lines_seen.contains(&line) {
            lines_seen.push(line);
            cx.err(
                src,
                span,
                "(syntax)",
                Kind::Syntax,
                e.message().trim().to_string(),
            );
        }
    }
    None
}
