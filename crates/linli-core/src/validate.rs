//! Checks shared by every service's request parsing: required ids and names,
//! bounded free text, enum fields, expected versions. Each error names the
//! field, so callers see exactly what to fix.
use crate::{Error, Result};

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_TEXT_CHARS: usize = 500;

/// A required short text (a name, an address): trimmed, not empty, no control characters.
pub fn parse_name(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    check_text(field, v, MAX_NAME_CHARS)?;
    if v.contains(['\n', '\t']) {
        return Err(Error::invalid(
            field,
            "must be one line, without tabs or line breaks",
        ));
    }
    if v.chars().any(is_invisible_format) {
        return Err(Error::invalid(
            field,
            "must not contain invisible formatting characters (direction overrides, zero-width marks)",
        ));
    }
    Ok(v.to_owned())
}

/// Unicode format characters that change how a name displays without being seen:
/// they make lookalike names and scramble printed lists.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}')
}

/// Optional free text (a note, a reason), bounded in length. Line breaks as
/// HTML forms and other systems send them (`\r\n`, a lone `\r`) become `\n`,
/// and tabs are kept; other control characters are refused.
pub fn parse_text(field: &str, value: &str, max_chars: usize) -> Result<String> {
    let v = normalize_breaks(value.trim());
    check_text(field, &v, max_chars)?;
    Ok(v)
}

fn normalize_breaks(v: &str) -> String {
    if v.contains('\r') {
        v.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        v.to_owned()
    }
}

fn check_text(field: &str, v: &str, max_chars: usize) -> Result<()> {
    if v.chars().count() > max_chars {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::invalid(
            field,
            "must not contain control characters (line breaks and tabs are fine)",
        ));
    }
    Ok(())
}

/// A record id given in a request: required, and shaped like the ids this service makes.
pub fn parse_id(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::required(field));
    }
    if v.len() != 36 || !v.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::invalid(field, "is not a valid id"));
    }
    Ok(v.to_ascii_lowercase())
}

/// An optional id: empty means none.
pub fn parse_opt_id(field: &str, value: &str) -> Result<Option<String>> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        parse_id(field, value).map(Some)
    }
}

/// A version the caller read must still be current.
pub fn check_version(field: &str, expected: i64, actual: i64) -> Result<()> {
    if expected <= 0 {
        return Err(Error::invalid(
            field,
            "is required: pass the version you last read",
        ));
    }
    if expected != actual {
        return Err(Error::Aborted(format!(
            "the record is at version {actual}, not {expected}: it changed since you read it; read it again"
        )));
    }
    Ok(())
}

/// An enum field that must be set to a known value.
pub fn required_enum<T>(field: &str, n: i32, from: fn(i32) -> Option<T>) -> Result<T> {
    match n {
        0 => Err(Error::required(field)),
        n => from(n).ok_or_else(|| Error::invalid(field, format!("{n} is not a known value"))),
    }
}

/// An enum filter: 0 means any.
pub fn optional_enum<T>(field: &str, n: i32, from: fn(i32) -> Option<T>) -> Result<Option<T>> {
    match n {
        0 => Ok(None),
        n => from(n)
            .map(Some)
            .ok_or_else(|| Error::invalid(field, format!("{n} is not a known value"))),
    }
}

/// Declares an enum stored as text and sent as a proto enum. Each variant maps
/// to the proto enum's variant of the same name through exhaustive `match`es, so
/// a variant added to either side without the other fails to compile.
#[macro_export]
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident : $pb:path { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
            /// The proto enum number of the variant of the same name.
            pub fn to_proto(self) -> i32 {
                use $pb as Pb;
                match self { $($name::$variant => Pb::$variant as i32),+ }
            }
            /// `None` for 0 (unspecified) and numbers the proto does not define.
            pub fn from_proto(n: i32) -> Option<$name> {
                use $pb as Pb;
                match Pb::try_from(n).ok()? {
                    Pb::Unspecified => None,
                    $(Pb::$variant => Some($name::$variant)),+
                }
            }
        }
    };
}

/// Asserts that every variant of each `text_enum!` crosses the wire and back
/// unchanged, by number and by text.
#[macro_export]
macro_rules! assert_enums_round_trip {
    ($($name:ty),+ $(,)?) => {
        $(
            for v in <$name>::ALL {
                assert_eq!(<$name>::from_proto(v.to_proto()), Some(*v), "{v:?} by number");
                assert_eq!(<$name>::parse(v.as_str()), Some(*v), "{v:?} by text");
                assert_ne!(v.to_proto(), 0, "{v:?} maps to unspecified");
            }
            assert_eq!(<$name>::from_proto(0), None);
            assert_eq!(<$name>::from_proto(i32::MAX), None);
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_control_and_invisible_characters() {
        assert_eq!(parse_name("name", " 程桂兰 ").unwrap(), "程桂兰");
        for bad in [
            "程\0桂兰",
            "程\u{202E}兰桂",
            "程\u{200B}桂兰",
            "\u{FEFF}程桂兰",
        ] {
            let err = parse_name("name", bad).unwrap_err().to_string();
            assert!(err.starts_with("name:"), "{bad:?}: {err}");
        }
        assert!(parse_text("note", "第一行\n第二行", 100).is_ok());
        assert!(parse_text("note", "a\u{0}b", 100).is_err());
        assert!(parse_name("name", "程\n桂兰").is_err());
        assert!(parse_name("name", "程\t桂兰").is_err());
    }

    #[test]
    fn free_text_takes_line_breaks_as_forms_send_them() {
        assert_eq!(
            parse_text("description", "路灯不亮\r\n三号楼前\r四号楼后\t东侧", 100).unwrap(),
            "路灯不亮\n三号楼前\n四号楼后\t东侧"
        );
        let err = parse_text("description", "a\u{7}b", 100)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("description:"), "{err}");
    }
}
