//! Names picked from a fixed list (input formats, time formats, rollup granularities): one
//! lookup with aliases, and one error that says what was given and what is accepted.

/// A name that is none of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use {expected}")]
pub struct UnknownName {
    /// What was being named (`format`, `time format`, `granularity`).
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// The accepted names, as a person reads them.
    pub expected: &'static str,
}

impl UnknownName {
    /// `given` is no `what`; `expected` lists the accepted names.
    pub fn new(what: &'static str, given: &str, expected: &'static str) -> Self {
        Self {
            what,
            given: given.to_owned(),
            expected,
        }
    }
}

/// The value whose alias `given` is, from `(alias, value)` pairs.
pub(crate) fn pick<T: Copy>(
    given: &str,
    aliases: &[(&str, T)],
    what: &'static str,
    expected: &'static str,
) -> Result<T, UnknownName> {
    aliases
        .iter()
        .find(|(alias, _)| *alias == given)
        .map(|(_, value)| *value)
        .ok_or_else(|| UnknownName {
            what,
            given: given.to_owned(),
            expected,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_pick_their_value_and_others_are_named_in_the_error() {
        let table = [("a", 1), ("alpha", 1), ("b", 2)];
        assert_eq!(pick("alpha", &table, "letter", "a or b"), Ok(1));
        assert_eq!(pick("b", &table, "letter", "a or b"), Ok(2));
        let err = pick("c", &table, "letter", "a or b").unwrap_err();
        assert_eq!(err.to_string(), "unknown letter \"c\": use a or b");
    }
}
