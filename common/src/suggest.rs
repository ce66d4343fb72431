//! "Did you mean": the nearest known name to a typo, for the messages of
//! unknown fields, variants and hyperparameters.

/// The candidate nearest to `name`, if it is near enough to be the one
/// meant: a few edits away for its length (a `_` dropped, two letters
/// swapped), never an unrelated word.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` for [`closest`], or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates).map_or(String::new(), |c| format!(" (did you mean `{c}`?)"))
}

/// Improve serde's message for an unknown field or variant in `text`:
/// suggest the nearest expected name, and point at the line where the
/// unknown name is written. serde reports the end of the enclosing object
/// for fields inside an internally tagged enum (`trainer`), which can be a
/// line past the end of the file.
pub fn explain_unknown(text: &str, message: &str) -> String {
    let Some(rest) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|k| message.find(k).map(|i| &message[i + k.len()..]))
    else {
        return message.to_string();
    };
    let Some(end) = rest.find('`') else {
        return message.to_string();
    };
    let name = &rest[..end];
    let expected: Vec<&str> = rest[end..].split('`').skip(2).step_by(2).collect();
    let (body, _) = message.rsplit_once(" at line ").unwrap_or((message, ""));
    let mut out = format!("{body}{}", did_you_mean(name, expected));
    let quoted = format!("\"{name}\"");
    if let Some(pos) = text.find(&quoted) {
        let line = text[..pos].matches('\n').count() + 1;
        let column = pos - text[..pos].rfind('\n').map_or(0, |i| i + 1) + 1;
        out.push_str(&format!(" at line {line} column {column}"));
    } else if body.len() < message.len() {
        out.push_str(&message[body.len()..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_typos_are_suggested_and_unrelated_words_are_not() {
        let known = ["batch_size", "lr", "momentum", "nf", "weight_decay"];
        assert_eq!(closest("batchsize", known), Some("batch_size"));
        assert_eq!(closest("momentun", known), Some("momentum"));
        assert_eq!(closest("Momentum", known), Some("momentum"));
        assert_eq!(closest("dropout", known), None);
        assert_eq!(closest("x", known), None);
    }

    #[test]
    fn an_unknown_field_points_at_its_line_and_suggests_the_name() {
        let text = "{\n  \"trainer\": {\n    \"kind\": \"cnn\",\n    \"defaults\": {\"batchsize\": 8}\n  }\n}\n\n";
        let msg =
            "unknown field `batchsize`, expected one of `batch_size`, `lr` at line 7 column 1";
        assert_eq!(
            explain_unknown(text, msg),
            "unknown field `batchsize`, expected one of `batch_size`, `lr` (did you mean `batch_size`?) at line 4 column 18"
        );
        let msg = "unknown variant `tpee`, expected one of `grid`, `tpe` at line 1 column 9";
        assert_eq!(
            explain_unknown("{\"kind\": \"tpee\"}", msg),
            "unknown variant `tpee`, expected one of `grid`, `tpe` (did you mean `tpe`?) at line 1 column 10"
        );
        assert_eq!(
            explain_unknown("{}", "expected a number"),
            "expected a number"
        );
    }
}
