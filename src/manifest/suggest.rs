//! Did-you-mean: the known name a mistyped one was probably meant to be.

/// The known name closest to `name`, if any is close enough to be a typo
/// (optimal string alignment: a swap of two letters, `mian`, is one edit).
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::osa_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
