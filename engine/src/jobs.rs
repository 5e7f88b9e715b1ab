//! The one-off subcommands (`chat-engine export`, `chat-engine import`): move rooms between stores
//! in the JSON-lines format of `store::transfer`, e.g. from one pod's SQLite file to the Postgres
//! database several pods share.

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tokio::sync::mpsc;

use crate::chat::RoomId;
use crate::store::transfer::{parse_line, stream_room, ExportedMessage, Line, RoomState};
use crate::store::Store;

/// Rooms listed per store query when exporting every room.
const ROOMS_PAGE: usize = 100;

/// Writes `rooms` (every room when `None`) to `out`, each room's line then its messages.
pub async fn export(store: Arc<dyn Store>, rooms: Option<Vec<RoomId>>, out: &mut impl Write) -> anyhow::Result<usize> {
    let mut written = 0;
    match rooms {
        Some(rooms) => {
            for room in rooms {
                export_room(&store, room, out).await?;
                written += 1;
            }
        }
        None => {
            let mut after = None;
            loop {
                let page = store.rooms(None, after.clone(), ROOMS_PAGE).await.context("listing rooms")?;
                for summary in &page {
                    export_room(&store, summary.id.clone(), out).await?;
                    written += 1;
                }
                if page.len() < ROOMS_PAGE {
                    break;
                }
                after = page.last().map(|s| s.id.clone());
            }
        }
    }
    out.flush()?;
    Ok(written)
}

async fn export_room(store: &Arc<dyn Store>, room: RoomId, out: &mut impl Write) -> anyhow::Result<()> {
    let state = store.room_state(room.clone()).await.with_context(|| format!("reading room {room}"))?;
    let state = state.ok_or_else(|| anyhow!("no room {room} in this store"))?;
    let (tx, mut rx) = mpsc::channel(2);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move { stream_room(store.as_ref(), state, tx).await })
    };
    while let Some(chunk) = rx.recv().await {
        out.write_all(&chunk)?;
    }
    reader.await?.with_context(|| format!("reading the messages of room {room}"))?;
    Ok(())
}

/// What an import wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub rooms: usize,
    /// Messages written (those already stored under their seq are not counted).
    pub messages: u64,
}

/// Reads an export into the store, one transaction per room. A malformed line stops the import
/// with its line number; the room it belongs to is not written at all (rooms before it are).
pub async fn import(store: Arc<dyn Store>, input: impl BufRead) -> anyhow::Result<Imported> {
    let mut done = Imported::default();
    let mut current: Option<(RoomState, Vec<ExportedMessage>)> = None;
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("line {number}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line).map_err(|why| anyhow!("line {number}: {why}"))? {
            Line::Room(state) => {
                if let Some((state, messages)) = current.take() {
                    done.messages += write_room(&store, state, messages).await?;
                    done.rooms += 1;
                }
                current = Some((state, Vec::new()));
            }
            Line::Message(message) => {
                let Some((state, messages)) = current.as_mut() else {
                    bail!("line {number}: a message before any room line");
                };
                if message.message.room_id != state.id {
                    bail!("line {number}: a message of room {} under room {}", message.message.room_id, state.id);
                }
                messages.push(*message);
            }
        }
    }
    if let Some((state, messages)) = current.take() {
        done.messages += write_room(&store, state, messages).await?;
        done.rooms += 1;
    }
    Ok(done)
}

async fn write_room(store: &Arc<dyn Store>, state: RoomState, messages: Vec<ExportedMessage>) -> anyhow::Result<u64> {
    let room = state.id.clone();
    store.import_room(state, messages).await.with_context(|| format!("writing room {room}"))
}
