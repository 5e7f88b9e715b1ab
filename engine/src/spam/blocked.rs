//! The blocked words: a file of words and phrases (one per line, `#` starts a comment), kept in
//! normalised form behind a lock that sends only read (one `Arc` clone). A task reloads it when
//! the file's modification time changes (looked at every `CHECK_EVERY`) or on SIGHUP; a file that
//! cannot be read keeps the list in use and logs a warning. Nothing on a send's path touches the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::normalise::normalise;

/// How often the file's modification time is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A larger file is refused (the old list stays): the list is matched on every send.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The words in use, normalised, longest first (a longer phrase is the more telling match).
#[derive(Debug, Default)]
pub struct WordList {
    words: Vec<String>,
}

impl WordList {
    /// Parses the file's text: one entry per line, `#` to the end of a line is a comment, blank
    /// lines and entries that normalise to nothing are skipped.
    pub fn parse(text: &str) -> WordList {
        let mut words: Vec<String> =
            text.lines().map(|line| line.split('#').next().unwrap_or_default()).map(normalise).filter(|w| !w.is_empty()).collect();
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        words.dedup();
        WordList { words }
    }

    /// Whether normalised content holds one of the words.
    pub fn matches(&self, normalised: &str) -> bool {
        self.words.iter().any(|w| normalised.contains(w.as_str()))
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// The list every session reads; swapped whole on reload.
#[derive(Default)]
pub struct BlockedWords {
    current: RwLock<Arc<WordList>>,
}

impl BlockedWords {
    pub fn current(&self) -> Arc<WordList> {
        self.current.read().map(|l| l.clone()).unwrap_or_default()
    }

    fn replace(&self, list: WordList) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(list);
        }
    }

    /// Loads the file once (at start: an error is the caller's to report) and keeps it current.
    pub async fn load_and_watch(path: PathBuf) -> std::io::Result<Arc<BlockedWords>> {
        let (list, mtime) = read(&path).await?;
        tracing::info!(path = %path.display(), words = list.len(), "blocked words loaded");
        let blocked = Arc::new(BlockedWords::default());
        blocked.replace(list);
        tokio::spawn(watch(Arc::downgrade(&blocked), path, mtime));
        Ok(blocked)
    }
}

async fn read(path: &Path) -> std::io::Result<(WordList, Option<SystemTime>)> {
    let meta = tokio::fs::metadata(path).await?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let bytes = tokio::fs::read(path).await?;
    let text = String::from_utf8(bytes).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))?;
    Ok((WordList::parse(&text), meta.modified().ok()))
}

/// Reloads on SIGHUP and when the modification time changes, until the list is dropped.
async fn watch(blocked: std::sync::Weak<BlockedWords>, path: PathBuf, mut seen: Option<SystemTime>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).ok();
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = every.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let Some(blocked) = blocked.upgrade() else { return };
        let mtime = tokio::fs::metadata(&path).await.ok().and_then(|m| m.modified().ok());
        if !forced && (mtime.is_none() || mtime == seen) {
            continue;
        }
        match read(&path).await {
            Ok((list, mtime)) => {
                // In use before it is said to be: whoever reads the log may send at once.
                let words = list.len();
                blocked.replace(list);
                tracing::info!(path = %path.display(), words, "blocked words reloaded");
                seen = mtime;
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "blocked words file unreadable; keeping the previous list");
                seen = mtime;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_and_variants_are_handled() {
        let list = WordList::parse("# spam words\nCheap Pills  # a phrase\n\n  \n바보\n   # only a comment\n");
        assert_eq!(list.len(), 2);
        assert!(list.matches(&normalise("buy ＣＨＥＡＰ　ｐｉｌｌｓ now")));
        assert!(list.matches(&normalise("ch\u{200B}eap pi lls")));
        assert!(list.matches(&normalise("너 ㅂㅏㅂㅗ")));
        assert!(!list.matches(&normalise("cheap flights")));
    }
}
