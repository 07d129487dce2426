//! The one check of interface names, for requests and for the config files that name
//! interfaces (the data plane's and the controller's), so that they all refuse the same names.

/// Longest interface name: IFNAMSIZ (16) less the NUL.
pub const IFNAME_MAX: usize = 15;

/// Why a string cannot name a network interface. The messages quote the name and read
/// after a field: `config vip.interface: "a/b" contains '/', which interface names cannot`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfnameError {
    #[error("must not be empty")]
    Empty,
    /// `.` or `..`.
    #[error("{0:?} is not a valid interface name")]
    Dots(String),
    #[error("{name:?} contains {c:?}, which interface names cannot")]
    BadChar { name: String, c: char },
    /// Longer than the limit asked for (at most [`IFNAME_MAX`]).
    #[error("{name:?} is {len} bytes; at most {max}")]
    TooLong {
        name: String,
        len: usize,
        max: usize,
    },
}

/// Checks `name` against the kernel's rules for interface names (`dev_valid_name`): 1 to
/// [`IFNAME_MAX`] bytes, not `.` or `..`, no `/`, `:` or whitespace. Also refused: `%` (a
/// pattern the kernel expands when it creates a link, so never part of an existing name) and
/// NUL (it would cut the name short in a request).
pub fn check_ifname(name: &str) -> Result<(), IfnameError> {
    check_ifname_len(name, IFNAME_MAX)
}

/// [`check_ifname`] with a lower length limit `max`, for names that get a suffix (a `max`
/// above [`IFNAME_MAX`] counts as `IFNAME_MAX`). The problems are looked for in the order of
/// the variants of [`IfnameError`].
pub fn check_ifname_len(name: &str, max: usize) -> Result<(), IfnameError> {
    if name.is_empty() {
        return Err(IfnameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(IfnameError::Dots(name.to_string()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | ':' | '%' | '\0') || c.is_whitespace())
    {
        return Err(IfnameError::BadChar {
            name: name.to_string(),
            c,
        });
    }
    let max = max.min(IFNAME_MAX);
    if name.len() > max {
        return Err(IfnameError::TooLong {
            name: name.to_string(),
            len: name.len(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_rules() {
        for good in [
            "eth0",
            "a",
            "ovl-10",
            "0123456789abcde",
            "vf0.100",
            "br_x",
            "é",
        ] {
            assert_eq!(check_ifname(good), Ok(()), "{good:?}");
        }
        let cases = [
            ("", "must not be empty"),
            (".", "\".\" is not a valid interface name"),
            ("..", "\"..\" is not a valid interface name"),
            ("a/b", "\"a/b\" contains '/', which interface names cannot"),
            (
                "eth0:1",
                "\"eth0:1\" contains ':', which interface names cannot",
            ),
            (
                "eth%d",
                "\"eth%d\" contains '%', which interface names cannot",
            ),
            ("a b", "\"a b\" contains ' ', which interface names cannot"),
            (
                "a\tb",
                "\"a\\tb\" contains '\\t', which interface names cannot",
            ),
            (
                "a\0b",
                "\"a\\0b\" contains '\\0', which interface names cannot",
            ),
            (
                "0123456789abcdef",
                "\"0123456789abcdef\" is 16 bytes; at most 15",
            ),
            // A bad character is named before the length.
            (
                "0123456789abcde/",
                "\"0123456789abcde/\" contains '/', which interface names cannot",
            ),
        ];
        for (name, message) in cases {
            let e = check_ifname(name).expect_err(name);
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn lower_limits_and_the_cap() {
        assert_eq!(check_ifname_len("ovl-abcdefgh", 12), Ok(()));
        assert_eq!(
            check_ifname_len("ovl-abcdefghi", 12)
                .unwrap_err()
                .to_string(),
            "\"ovl-abcdefghi\" is 13 bytes; at most 12"
        );
        assert_eq!(
            check_ifname_len("0123456789abcdef", 40),
            Err(IfnameError::TooLong {
                name: "0123456789abcdef".into(),
                len: 16,
                max: IFNAME_MAX
            })
        );
    }
}
