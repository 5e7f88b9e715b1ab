//! What counts as a link in a message: anything with `http://` or `https://`, anything starting
//! `www.`, and a bare domain (`example.com`, `shop.example.co.kr/x`) — a dotted name whose last
//! label is letters only, followed by a path (`/`), a port or query (`:`, `?`), or ending in one of
//! the common top-level domains below. So `node.js` or `e.g.` in a sentence are not links, while
//! `cheap-pills.shop` and `example.io/offer` are. Checked on the NFKC, lower-cased text, so
//! full-width letters do not hide a link; spaces around the dots (`example . com`) do.

use unicode_normalization::UnicodeNormalization;

/// Top-level domains a bare name counts as a link with, without a path after it.
const COMMON_TLDS: &[&str] = &[
    "com", "net", "org", "io", "co", "kr", "me", "info", "biz", "xyz", "top", "site", "online", "shop", "store", "app", "dev", "ly", "gg",
    "tk", "ru", "cn", "us", "uk", "de", "jp", "in", "link", "click", "club", "live", "vip", "win", "bet", "pro",
];

/// Whether `content` holds a link (see the module doc).
pub fn has_link(content: &str) -> bool {
    let text: String = content.nfkc().flat_map(char::to_lowercase).collect();
    if text.contains("http://") || text.contains("https://") {
        return true;
    }
    text.split(|c: char| c.is_whitespace() || "()[]{}<>\"'`,;!|“”‘’「」『』".contains(c)).any(is_link_token)
}

fn is_link_token(token: &str) -> bool {
    let token = token.trim_end_matches(['.', '?', ':']);
    if token.starts_with("www.") && token.len() > 4 {
        return true;
    }
    let (host, rest) = match token.find(['/', ':', '?', '#']) {
        Some(at) => token.split_at(at),
        None => (token, ""),
    };
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || !l.chars().all(|c| c.is_alphanumeric() || c == '-')) {
        return false;
    }
    let tld = labels[labels.len() - 1];
    if !(2..=24).contains(&tld.len()) || !tld.chars().all(|c| c.is_ascii_lowercase()) {
        return false;
    }
    let has_path = rest.len() > 1;
    has_path || COMMON_TLDS.contains(&tld)
}

#[cfg(test)]
mod tests {
    use super::has_link;

    #[test]
    fn links_of_every_kind_are_found() {
        for text in [
            "see https://example.com",
            "HTTP://EXAMPLE.COM",
            "ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ",
            "go to www.example",
            "cheap pills at pills-shop.xyz!",
            "example.io/offer now",
            "블로그.kr 방문",
            "(visit example.com)",
            "docs.rs/tokio",
            "shop.example.co.kr",
            "example.foo/path",
        ] {
            assert!(has_link(text), "{text}");
        }
    }

    #[test]
    fn ordinary_sentences_are_not_links() {
        for text in [
            "I use node.js and vue.js",
            "e.g. this, i.e. that",
            "version 1.2.3 is out",
            "mail me at me@example",
            "file.txt is attached",
            "end of sentence.Next one",
            "좋은 글 감사합니다. 다음 글도 기대할게요.",
            "3.14",
        ] {
            assert!(!has_link(text), "{text}");
        }
    }
}
