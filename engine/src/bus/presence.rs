//! Room-wide presence in Redis, so `online` counts readers on every pod. Each pod keeps a hash
//! of its readers in a room (`chat:presence:{room}:{pod}`, authorId → reader JSON) and a sorted
//! set indexes the pods of the room by expiry. Pods rewrite theirs on every change and on a
//! heartbeat; a crashed pod's readers vanish once its entry expires.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use crate::chat::{now_millis, AuthorId, Profile, RoomId};

/// A pod's entry lives this long without a heartbeat.
pub const TTL: Duration = Duration::from_secs(20);
/// How often a pod with readers in a room refreshes its entry (and re-reads the others').
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Presence is best effort: a slow Redis must not hold up the room.
const DEADLINE: Duration = Duration::from_millis(500);
/// The admin page's list of busy rooms may take longer; nothing waits on it but that page.
const ROOMS_DEADLINE: Duration = Duration::from_secs(2);

/// A reader as presence shows it, with the time it arrived (for the order of the capped list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Present {
    #[serde(rename = "authorId")]
    pub author_id: AuthorId,
    pub nickname: String,
    pub avatar: String,
    pub since: i64,
}

impl Present {
    pub fn profile(&self) -> Profile {
        Profile { author_id: self.author_id.clone(), nickname: self.nickname.clone(), avatar: self.avatar.clone() }
    }
}

fn index_key(room: &RoomId) -> String {
    format!("chat:presence:{room}")
}

fn pod_key(room: &RoomId, pod: &str) -> String {
    format!("chat:presence:{room}:{pod}")
}

/// Replaces this pod's readers of the room (none: removes its entry).
pub async fn write(conn: &mut MultiplexedConnection, room: &RoomId, pod: &str, readers: &[Present]) -> bool {
    let key = pod_key(room, pod);
    let index = index_key(room);
    let ttl_ms = TTL.as_millis() as i64;
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(&key).ignore();
    if readers.is_empty() {
        pipe.cmd("ZREM").arg(&index).arg(pod).ignore();
    } else {
        let mut hset = redis::cmd("HSET");
        hset.arg(&key);
        for reader in readers {
            hset.arg(reader.author_id.as_str()).arg(serde_json::to_string(reader).unwrap_or_default());
        }
        pipe.add_command(hset).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        pipe.cmd("ZADD").arg(&index).arg(now_millis() + ttl_ms).arg(pod).ignore();
        pipe.cmd("PEXPIRE").arg(&index).arg(ttl_ms).ignore();
    }
    matches!(tokio::time::timeout(DEADLINE, pipe.query_async::<()>(conn)).await, Ok(Ok(())))
}

/// Rooms with readers on any live pod, each with its readers (distinct authors) room-wide: what
/// the admin page shows as active on a deployment of several pods. At most `cap` rooms; `None`
/// when Redis does not answer in time.
pub async fn rooms(conn: &mut MultiplexedConnection, cap: usize) -> Option<Vec<(RoomId, usize)>> {
    let read = async {
        // Index keys are `chat:presence:{room}`; a pod's own key has one more `:` (room ids have none).
        let mut indexes = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg("chat:presence:*").arg("COUNT").arg(500).query_async(conn).await?;
            indexes.extend(keys.iter().filter_map(|k| RoomId::parse(k.strip_prefix("chat:presence:")?)));
            cursor = next;
            if cursor == 0 || indexes.len() >= cap {
                break;
            }
        }
        indexes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        indexes.dedup();
        indexes.truncate(cap);
        let counts = count_readers(conn, &indexes).await?;
        Ok::<_, redis::RedisError>(indexes.into_iter().zip(counts).filter(|(_, n)| *n > 0).collect())
    };
    tokio::time::timeout(ROOMS_DEADLINE, read).await.ok()?.ok()
}

/// Readers (distinct authors) room-wide in each of `rooms`, in order: the post lists' counts for
/// rooms not live on this pod. `None` when Redis does not answer in time.
pub async fn online(conn: &mut MultiplexedConnection, rooms: &[RoomId]) -> Option<Vec<usize>> {
    tokio::time::timeout(DEADLINE, count_readers(conn, rooms)).await.ok()?.ok()
}

/// Two round trips whatever the number of rooms: the live pods of each, then their readers.
async fn count_readers(conn: &mut MultiplexedConnection, rooms: &[RoomId]) -> redis::RedisResult<Vec<usize>> {
    let now = now_millis();
    let mut pipe = redis::pipe();
    for room in rooms {
        pipe.cmd("ZRANGEBYSCORE").arg(index_key(room)).arg(now).arg("+inf");
    }
    let pods: Vec<Vec<String>> = if rooms.is_empty() { Vec::new() } else { pipe.query_async(conn).await? };
    let mut pipe = redis::pipe();
    for (room, pods) in rooms.iter().zip(&pods) {
        for pod in pods {
            pipe.cmd("HKEYS").arg(pod_key(room, pod));
        }
    }
    let any = pods.iter().any(|p| !p.is_empty());
    let keys: Vec<Vec<String>> = if any { pipe.query_async(conn).await? } else { Vec::new() };
    let mut keys = keys.into_iter();
    Ok(pods
        .iter()
        .map(|pods| {
            let mut authors: Vec<String> = keys.by_ref().take(pods.len()).flatten().collect();
            authors.sort_unstable();
            authors.dedup();
            authors.len()
        })
        .collect())
}

/// The readers of the room on the other pods that are alive.
pub async fn others(conn: &mut MultiplexedConnection, room: &RoomId, pod: &str) -> Option<Vec<Present>> {
    let read = async {
        let pods: Vec<String> = redis::cmd("ZRANGEBYSCORE").arg(index_key(room)).arg(now_millis()).arg("+inf").query_async(conn).await?;
        let mut pipe = redis::pipe();
        for other in pods.iter().filter(|p| p.as_str() != pod) {
            pipe.cmd("HVALS").arg(pod_key(room, other));
        }
        // An empty pipeline waits for answers that never come: no other live pod is an answer
        // too (the last one crashed, and its readers must go).
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Vec<String>> = pipe.query_async(conn).await?;
        Ok::<_, redis::RedisError>(values.into_iter().flatten().filter_map(|v| serde_json::from_str(&v).ok()).collect())
    };
    tokio::time::timeout(DEADLINE, read).await.ok()?.ok()
}
