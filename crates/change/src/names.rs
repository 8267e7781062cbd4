//! "Did you mean": the nearest of the names that exist to one that does not (a mistyped
//! topic, table or column), for the messages that say what is missing.

/// The name in `names` nearest to `name`, when one is near enough to be a typo: at most a
/// third of the longer name's characters (and at least two) differ.
pub fn nearest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .map(|n| (strsim::levenshtein(name, n), n))
        .filter(|(d, n)| *d > 0 && *d <= (name.chars().count().max(n.chars().count()) / 3).max(2))
        .min()
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn a_typo_finds_its_name_and_a_stranger_finds_none() {
        let topics = ["tf.public.mnist_test", "tf.public.mnist_train", "other"];
        assert_eq!(nearest("tf.public.mnist_trian", topics), Some("tf.public.mnist_train"));
        assert_eq!(nearest("public.loanz", ["public.loans", "public.mnist_train"]), Some("public.loans"));
        assert_eq!(nearest("weather", topics), None);
        // The name itself is not a suggestion.
        assert_eq!(nearest("other", topics), None);
    }
}

/// A setting's value that is not one of the names it takes (`--nulls sometimes`,
/// `binary.handling.mode=octal`): what was being read, what was given and what is taken.
/// The error of this workspace's `FromStr` impls of named choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {got:?}: expected {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub got: String,
    pub expected: &'static str,
}

impl UnknownName {
    pub fn new(what: &'static str, got: &str, expected: &'static str) -> UnknownName {
        UnknownName { what, got: got.to_string(), expected }
    }
}
