//! What the build step (`engine/build.rs`, which includes this file) leaves out of the widget's
//! text files before compressing them: comments, indentation and blank lines. The repository's
//! files explain themselves at length; readers' browsers need none of it, and it is a fifth of
//! what they would download.
//!
//! Line by line and conservative, not a JavaScript parser: every line break stays (so automatic
//! semicolon insertion reads the code as before), and a comment is dropped only where it cannot be
//! part of a string, template or regular expression. What this cannot tell safely (a template
//! literal or string running over lines) is refused with the line, so the build fails rather than
//! serve changed code.

/// A script: whole-line `//` and `/* */` comments, trailing `//` comments, indentation, blank lines.
pub fn js(source: &str) -> Result<String, String> {
    let mut out = String::with_capacity(source.len());
    let mut in_block = false;
    for (n, line) in source.lines().enumerate() {
        let t = line.trim();
        let at = || format!("line {}: {t}", n + 1);
        if in_block {
            if t.contains("*/") {
                if !t.ends_with("*/") {
                    return Err(format!("code after a block comment ends, {}", at()));
                }
                in_block = false;
            }
            continue;
        }
        if t.starts_with("/*") {
            match t.find("*/") {
                Some(end) if end + 2 == t.len() => {}
                Some(_) => return Err(format!("code after a block comment, {}", at())),
                None => in_block = true,
            }
            continue;
        }
        if t.is_empty() || t.starts_with("//") {
            continue;
        }
        let code = without_trailing_comment(t);
        if code.ends_with('\\') || !unescaped(code, b'`').is_multiple_of(2) {
            return Err(format!("a string or template literal runs over lines, {}", at()));
        }
        out.push_str(code);
        out.push('\n');
    }
    if in_block {
        return Err("a block comment never ends".into());
    }
    Ok(out)
}

/// `code;  // why` -> `code;`, only when the code before the comment has no slash (no regular
/// expression or division that could hold it) and closes every quote it opens.
fn without_trailing_comment(t: &str) -> &str {
    let Some(at) = t.find(" //").or_else(|| t.find("\t//")) else { return t };
    let before = &t[..at];
    let balanced = [b'"', b'\'', b'`'].iter().all(|&q| unescaped(before, q).is_multiple_of(2));
    if balanced && !before.contains('/') {
        before.trim_end()
    } else {
        t
    }
}

/// How many times `quote` occurs not preceded by a backslash.
fn unescaped(s: &str, quote: u8) -> usize {
    let b = s.as_bytes();
    (0..b.len()).filter(|&i| b[i] == quote && (i == 0 || b[i - 1] != b'\\')).count()
}

/// A style sheet: `/* */` comments (outside quoted strings), indentation, blank lines.
pub fn css(source: &str) -> Result<String, String> {
    let b = source.as_bytes();
    let mut kept = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut quote = None;
    while i < b.len() {
        match (quote, b[i]) {
            (None, b'/') if b.get(i + 1) == Some(&b'*') => {
                let end = source[i + 2..].find("*/").ok_or("a comment never ends")?;
                i += end + 4;
                continue;
            }
            (None, q @ (b'"' | b'\'')) => quote = Some(q),
            (Some(q), c) if c == q && b[i - 1] != b'\\' => quote = None,
            _ => {}
        }
        kept.push(b[i]);
        i += 1;
    }
    let kept = String::from_utf8(kept).map_err(|e| e.to_string())?;
    Ok(lines(&kept))
}

/// A page: `<!-- -->` comments, indentation, blank lines (whitespace between tags collapses to one
/// line break, which renders the same).
pub fn html(source: &str) -> Result<String, String> {
    let mut kept = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("<!--") {
        let end = rest[start..].find("-->").ok_or("a comment never ends")?;
        kept.push_str(&rest[..start]);
        rest = &rest[start + end + 3..];
    }
    kept.push_str(rest);
    Ok(lines(&kept))
}

fn lines(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).fold(String::with_capacity(text.len()), |mut out, l| {
        out.push_str(l);
        out.push('\n');
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_lose_comments_and_indentation_but_keep_their_code() {
        let source = r#"// The module.
import { a } from "./a.js";

/**
 * A doc comment.
 */
export function f(x) {
  /* one line */
  const url = "https://example.com/x";  // a URL is not a comment
  const re = /^https?:\/\/[^\s]+/;  // kept: a slash before it
  const s = "a // b";
  const t = `${x} // y`;
  return x + 1;  // why
}
"#;
        assert_eq!(
            js(source).unwrap(),
            r#"import { a } from "./a.js";
export function f(x) {
const url = "https://example.com/x";  // a URL is not a comment
const re = /^https?:\/\/[^\s]+/;  // kept: a slash before it
const s = "a // b";
const t = `${x} // y`;
return x + 1;
}
"#
        );
    }

    #[test]
    fn what_a_line_by_line_pass_cannot_handle_is_refused() {
        assert!(js("const t = `one\ntwo`;\n").is_err(), "a template literal over lines");
        assert!(js("const s = \"one\\\ntwo\";\n").is_err(), "a continued string");
        assert!(js("/* open\nconst x = 1;\n").is_err(), "an unfinished comment");
        assert!(js("/* a */ const x = 1;\n").is_err(), "code after a comment on its line");
    }

    #[test]
    fn style_sheets_and_pages_lose_comments_and_indentation() {
        assert_eq!(
            css("/* top */\n.a {\n  content: \"/* not a comment */\";  /* gone */\n}\n\n").unwrap(),
            ".a {\ncontent: \"/* not a comment */\";\n}\n"
        );
        assert_eq!(
            html("<!doctype html>\n<!-- note -->\n<body>\n  <p>x</p>\n</body>\n").unwrap(),
            "<!doctype html>\n<body>\n<p>x</p>\n</body>\n"
        );
    }
}
