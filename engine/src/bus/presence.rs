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

/// The readers of the room on the other pods that are alive.
pub async fn others(conn: &mut MultiplexedConnection, room: &RoomId, pod: &str) -> Option<Vec<Present>> {
    let read = async {
        let pods: Vec<String> = redis::cmd("ZRANGEBYSCORE").arg(index_key(room)).arg(now_millis()).arg("+inf").query_async(conn).await?;
        let mut pipe = redis::pipe();
        for other in pods.iter().filter(|p| p.as_str() != pod) {
            pipe.cmd("HVALS").arg(pod_key(room, other));
        }
        let values: Vec<Vec<String>> = pipe.query_async(conn).await?;
        Ok::<_, redis::RedisError>(values.into_iter().flatten().filter_map(|v| serde_json::from_str(&v).ok()).collect())
    };
    tokio::time::timeout(DEADLINE, read).await.ok()?.ok()
}
