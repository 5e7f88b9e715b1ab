//! A member's outbox: the frames its room sends one connection, and the kick that may end it.
//!
//! The room and the connection's session share the socket. When nothing else is waiting for the
//! reader, the room's actor writes the frame straight into the socket's kernel buffer, with a
//! non-blocking write that never waits, and the session is not woken at all: a broadcast to a
//! thousand readers costs a thousand writes shared out in tasks of 256 (`actor.rs`) instead of a
//! thousand task wakeups. Otherwise (frames already waiting, a full socket, the welcome not
//! written yet) the session is woken to write it.
//!
//! Every byte, the room's frames and the session's own (errors, the welcome, pongs, the close),
//! goes out under the outbox's lock in the order it was queued, so nothing overtakes anything.
//! A queued frame shares the room's bytes; only its header is per connection. The queue holds no
//! buffer while it is empty, and at most `capacity` of the room's frames: a reader that falls
//! further behind is a slow consumer, closed by the room.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::Kick;
use crate::protocol::Frame;

/// Queued bytes gathered into one write, up to about this many.
const BATCH_BYTES: usize = 64 * 1024;
/// Pieces gathered into one write (two per frame: header and text).
const BATCH_PIECES: usize = 64;
/// Bytes the WebSocket library may leave queued (pongs, a close) before its writes wait.
const RAW_MAX: usize = 64 * 1024;

/// Why the room's frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `capacity` of the room's frames are waiting: the reader cannot keep up.
    Full,
    /// The session has gone, the socket failed, or the room already ended the outbox.
    Closed,
}

/// A new connection's outbox: the session's end. The room's end is made per membership.
/// `read` is what hyper read past the upgrade request: a slice of its whole read buffer, so it
/// is copied (nearly always it is empty) rather than kept.
pub fn line(socket: TcpStream, read: &[u8], capacity: usize) -> (Line, LineIo) {
    let shared = Arc::new(Shared::new(Some(socket), capacity));
    (Line(shared.clone()), LineIo { shared, prefix: Bytes::copy_from_slice(read) })
}

/// An outbox with no socket, whose frames a test reads back.
#[cfg(test)]
pub fn detached(capacity: usize) -> (Outbox, Line) {
    let line = Line(Arc::new(Shared::new(None, capacity)));
    (line.outbox(), line)
}

struct Shared {
    /// `None` only for a test's detached outbox.
    socket: Option<TcpStream>,
    state: Mutex<State>,
    /// Wakes the session: frames are waiting for it to write, or the room ended the outbox.
    changed: Notify,
}

struct State {
    queue: VecDeque<Chunk>,
    /// Bytes of the first chunk already written.
    head_sent: usize,
    /// The room's frames in `queue`.
    room_frames: usize,
    /// Bytes of the library's own writes in `queue`.
    raw_bytes: usize,
    capacity: usize,
    /// Until the welcome is queued: the room's frames wait behind it, whatever the socket.
    held: bool,
    /// The room's frames are refused.
    closed: bool,
    /// The kick the room ended the outbox with.
    last: Option<Box<Kick>>,
    /// The room's ends alive: none once welcomed means the room let the member go.
    outboxes: usize,
}

enum Chunk {
    /// A text frame: its header, then the frame's own bytes.
    Text { header: [u8; 10], header_len: u8, frame: Frame, from_room: bool },
    /// Bytes the WebSocket library wrote (a pong, a ping, a close).
    Raw(Vec<u8>),
}

impl Chunk {
    fn text(frame: Frame, from_room: bool) -> Chunk {
        let mut header = [0u8; 10];
        let mut cursor = io::Cursor::new(&mut header[..]);
        FrameHeader { is_final: true, opcode: OpCode::Data(Data::Text), ..FrameHeader::default() }
            .format(frame.len() as u64, &mut cursor)
            .expect("a text frame's header fits 10 bytes");
        let header_len = cursor.position() as u8;
        Chunk::Text { header, header_len, frame, from_room }
    }

    /// Its bytes, in at most two pieces.
    fn pieces(&self) -> [&[u8]; 2] {
        match self {
            Chunk::Text { header, header_len, frame, .. } => [&header[..usize::from(*header_len)], frame.as_bytes()],
            Chunk::Raw(bytes) => [bytes, &[]],
        }
    }

    fn len(&self) -> usize {
        self.pieces().iter().map(|p| p.len()).sum()
    }

    fn is_rooms(&self) -> bool {
        matches!(self, Chunk::Text { from_room: true, .. })
    }
}

impl Shared {
    fn new(socket: Option<TcpStream>, capacity: usize) -> Shared {
        let state = State {
            queue: VecDeque::new(),
            head_sent: 0,
            room_frames: 0,
            raw_bytes: 0,
            capacity: capacity.max(1),
            held: true,
            closed: false,
            last: None,
            outboxes: 0,
        };
        Shared { socket, state: Mutex::new(state), changed: Notify::new() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still guards a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what is queued until the socket takes no more. `Ok(true)`: something it may write
    /// is still queued (the socket is full); `Ok(false)`: nothing is, but the room's frames held
    /// for the welcome.
    fn write_out(&self, state: &mut State) -> io::Result<bool> {
        let Some(socket) = &self.socket else { return Ok(state.writable() > 0) };
        loop {
            let written = {
                let mut slices = [IoSlice::new(&[]); BATCH_PIECES];
                let (mut n, mut bytes, mut skip) = (0, 0, state.head_sent);
                for chunk in state.queue.iter().take(state.writable()) {
                    for piece in chunk.pieces() {
                        if skip >= piece.len() {
                            skip -= piece.len();
                            continue;
                        }
                        slices[n] = IoSlice::new(&piece[skip..]);
                        bytes += piece.len() - skip;
                        skip = 0;
                        n += 1;
                        if n == BATCH_PIECES {
                            break;
                        }
                    }
                    if n == BATCH_PIECES || bytes >= BATCH_BYTES {
                        break;
                    }
                }
                if n == 0 {
                    return Ok(false);
                }
                match socket.try_write_vectored(&slices[..n]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(written) => written,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                    Err(err) => return Err(err),
                }
            };
            state.advance(written);
        }
    }
}

impl State {
    /// How many chunks from the front may be written now: all of them, or while the welcome is
    /// awaited, those before the room's first frame.
    fn writable(&self) -> usize {
        if self.held {
            self.queue.iter().position(Chunk::is_rooms).unwrap_or(self.queue.len())
        } else {
            self.queue.len()
        }
    }

    fn push(&mut self, chunk: Chunk) {
        match &chunk {
            Chunk::Text { from_room: true, .. } => self.room_frames += 1,
            Chunk::Raw(bytes) => self.raw_bytes += bytes.len(),
            Chunk::Text { .. } => {}
        }
        // Until the welcome, the session's own bytes (and the welcome itself) go ahead of the
        // room's frames.
        if self.held && !chunk.is_rooms() {
            let at = self.writable();
            self.queue.insert(at, chunk);
        } else {
            self.queue.push_back(chunk);
        }
    }

    /// Drops what the socket took. The buffer goes with the last chunk: an idle reader holds
    /// none, and a busy one allocates once per batch it falls behind by.
    fn advance(&mut self, mut written: usize) {
        written += self.head_sent;
        while let Some(front) = self.queue.front() {
            let len = front.len();
            if written < len {
                break;
            }
            written -= len;
            self.forget_front();
        }
        self.head_sent = written;
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    fn forget_front(&mut self) {
        match self.queue.pop_front() {
            Some(Chunk::Text { from_room: true, .. }) => self.room_frames -= 1,
            Some(Chunk::Raw(bytes)) => self.raw_bytes -= bytes.len(),
            _ => {}
        }
    }
}

/// The room's end of a member's outbox.
pub struct Outbox(Arc<Shared>);

impl Outbox {
    /// Queues a frame. `Some`: nothing else was waiting, and the room is to write it out soon
    /// (`Unwritten::write`); `None`: whoever writes what was waiting writes this too, or the
    /// session was woken to (until the welcome, the room's frames wait for it).
    pub fn try_send(&self, frame: Frame) -> Result<Option<Unwritten>, Refused> {
        let mut state = self.0.state();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.room_frames >= state.capacity {
            return Err(Refused::Full);
        }
        let was_empty = state.queue.is_empty();
        state.push(Chunk::text(frame, true));
        if !was_empty {
            return Ok(None);
        }
        if state.held || self.0.socket.is_none() {
            drop(state);
            self.0.changed.notify_one();
            return Ok(None);
        }
        Ok(Some(Unwritten(self.0.clone())))
    }

    /// Ends the outbox with a kick: the room's frames still waiting are dropped (one the socket
    /// has started stays, so the stream stays whole), later ones are refused, and the session
    /// hears `kick` from `last_word`.
    pub fn close_with(&self, kick: Kick) {
        let mut state = self.0.state();
        if state.closed {
            return;
        }
        state.closed = true;
        state.last = Some(Box::new(kick));
        let keep = usize::from(state.head_sent > 0);
        let dropped: Vec<Chunk> = state.queue.drain(keep..).collect();
        state.queue.extend(dropped.into_iter().filter(|c| !c.is_rooms()));
        state.room_frames = state.queue.iter().filter(|c| c.is_rooms()).count();
        drop(state);
        self.0.changed.notify_one();
    }
}

/// An outbox the room queued a frame into while nothing else waited there.
pub struct Unwritten(Arc<Shared>);

impl Unwritten {
    /// Writes what the outbox holds until the socket takes no more; what it does not take wakes
    /// the session. A failed socket refuses the room's later frames, and the session learns of
    /// the failure from its own read or write.
    pub fn write(self) {
        let mut state = self.0.state();
        match self.0.write_out(&mut state) {
            Ok(false) => return,
            Ok(true) => {}
            Err(_) => state.closed = true,
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.outboxes -= 1;
        if state.outboxes == 0 {
            drop(state);
            self.0.changed.notify_one();
        }
    }
}

/// The session's end of its connection's outbox.
#[derive(Clone)]
pub struct Line(Arc<Shared>);

impl Line {
    /// The room's end, for a membership.
    pub fn outbox(&self) -> Outbox {
        self.0.state().outboxes += 1;
        Outbox(self.0.clone())
    }

    /// Queues the welcome ahead of every frame the room queued since the join, and lets the
    /// room's frames go after it.
    pub fn welcome(&self, welcome: Frame) {
        let mut state = self.0.state();
        state.push(Chunk::text(welcome, false));
        state.held = false;
    }

    /// Queues a frame of the session's own (an answer, an error); `LineIo`'s flush writes it.
    pub fn queue(&self, frame: Frame) {
        self.0.state().push(Chunk::text(frame, false));
    }

    /// Resolves once the room has queued frames for the session to write, ended the outbox, or
    /// let the member go. May also resolve for frames already written.
    pub async fn wanted(&self) {
        self.0.changed.notified().await;
    }

    /// Resolves once the room has ended the outbox with a kick.
    pub async fn kicked(&self) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.0.state().last.is_some() {
                return;
            }
            changed.await;
        }
    }

    /// Whether the room let the member go (it stopped) after its welcome.
    pub fn let_go(&self) -> bool {
        let state = self.0.state();
        state.outboxes == 0 && !state.held
    }

    /// The room's kick, once it ended the outbox with one; said once.
    pub fn last_word(&self) -> Option<Box<Kick>> {
        self.0.state().last.take()
    }

    /// Refuses the room's later frames: the session is ending the connection.
    pub fn close(&self) {
        self.0.state().closed = true;
    }

    /// The room's frames queued, and not yet written, in order (a detached outbox's, in tests).
    #[cfg(test)]
    pub fn try_recv(&self) -> Option<Frame> {
        let mut state = self.0.state();
        let at = state.queue.iter().position(Chunk::is_rooms)?;
        match state.queue.remove(at) {
            Some(Chunk::Text { frame, .. }) => {
                state.room_frames -= 1;
                Some(frame)
            }
            _ => None,
        }
    }
}

/// The connection as the WebSocket library reads and writes it: what hyper read past the
/// upgrade first, then the socket; writes go through the outbox's queue, in order with the room's.
pub struct LineIo {
    shared: Arc<Shared>,
    /// Bytes hyper read past the upgrade request.
    prefix: Bytes,
}

impl LineIo {
    fn socket(&self) -> io::Result<&TcpStream> {
        self.shared.socket.as_ref().ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl AsyncRead for LineIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // An emptied slice still holds the whole buffer it was cut from.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let socket = self.socket()?;
        loop {
            ready!(socket.poll_read_ready(cx))?;
            match socket.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for LineIo {
    /// Takes the whole buffer (so a frame is never split by a write that waits), unless the
    /// library's own bytes already queued are over their bound.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let socket = self.socket()?;
        loop {
            let mut state = self.shared.state();
            if !self.shared.write_out(&mut state)? {
                let written = match socket.try_write(buf) {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(err) => return Poll::Ready(Err(err)),
                };
                if written < buf.len() {
                    state.push(Chunk::Raw(buf[written..].to_vec()));
                }
                return Poll::Ready(Ok(buf.len()));
            }
            if state.raw_bytes < RAW_MAX {
                state.push(Chunk::Raw(buf.to_vec()));
                return Poll::Ready(Ok(buf.len()));
            }
            drop(state);
            ready!(socket.poll_write_ready(cx))?;
        }
    }

    /// Ready once everything queued that may go is written: the session's own bytes and the
    /// room's frames behind them.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = self.socket()?;
        loop {
            if !self.shared.write_out(&mut self.shared.state())? {
                return Poll::Ready(Ok(()));
            }
            ready!(socket.poll_write_ready(cx))?;
        }
    }

    /// Flushes, then ends our side of the TCP connection.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        socket2::SockRef::from(self.socket()?).shutdown(std::net::Shutdown::Write)?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::protocol::CloseCode;

    /// An outbox over a loopback connection, and the reader's end of it. The server's send buffer
    /// and the reader's receive buffer are small, so a reader that stops reading fills them soon.
    async fn connected(capacity: usize) -> (Line, LineIo, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        reader.set_recv_buffer_size(4096).unwrap();
        reader.set_nonblocking(true).unwrap();
        let reader = tokio::net::TcpSocket::from_std_stream(reader.into());
        let (reader, accepted) = tokio::join!(reader.connect(addr), listener.accept());
        let (server, _) = accepted.unwrap();
        socket2::SockRef::from(&server).set_send_buffer_size(4096).unwrap();
        let (line, io) = line(server, &[], capacity);
        (line, io, reader.unwrap())
    }

    fn frame(text: &str) -> Frame {
        Frame::from(text.to_string())
    }

    /// Reads `count` text frames off the reader's end, each checked whole.
    async fn read_texts(reader: &mut TcpStream, count: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for _ in 0..count {
            let mut head = [0u8; 2];
            reader.read_exact(&mut head).await.unwrap();
            assert_eq!(head[0], 0x81, "a final, unmasked text frame");
            let len = match head[1] {
                126 => usize::from(reader.read_u16().await.unwrap()),
                127 => usize::try_from(reader.read_u64().await.unwrap()).unwrap(),
                n => usize::from(n),
            };
            let mut text = vec![0u8; len];
            reader.read_exact(&mut text).await.unwrap();
            texts.push(String::from_utf8(text).unwrap());
        }
        texts
    }

    /// Sends a frame as the room does: queued, then written out if it is the room's to write.
    fn send(outbox: &Outbox, text: &str) -> Result<(), Refused> {
        if let Some(unwritten) = outbox.try_send(frame(text))? {
            unwritten.write();
        }
        Ok(())
    }

    fn welcomed(line: &Line) -> Outbox {
        let outbox = line.outbox();
        line.welcome(frame("welcome"));
        outbox
    }

    #[tokio::test]
    async fn an_idle_readers_frame_is_written_without_waking_its_session() {
        let (line, mut io, mut reader) = connected(8).await;
        let outbox = welcomed(&line);
        io.flush().await.unwrap();
        assert_eq!(read_texts(&mut reader, 1).await, ["welcome"]);
        while line.wanted().now_or_never().is_some() {}

        send(&outbox, "hello").unwrap();
        assert_eq!(read_texts(&mut reader, 1).await, ["hello"], "on the wire with nobody flushing");
        assert!(line.wanted().now_or_never().is_none(), "the session was not woken");

        let unwritten = outbox.try_send(frame("a")).unwrap().expect("the room's to write");
        assert!(outbox.try_send(frame("b")).unwrap().is_none(), "written with the one before it");
        unwritten.write();
        assert_eq!(read_texts(&mut reader, 2).await, ["a", "b"]);
        assert!(line.wanted().now_or_never().is_none(), "the session was not woken");
    }

    #[tokio::test]
    async fn the_welcome_goes_ahead_of_what_the_room_sent_since_the_join() {
        let (line, mut io, mut reader) = connected(8).await;
        let outbox = line.outbox();
        assert!(outbox.try_send(frame("one")).unwrap().is_none(), "held for the welcome");
        send(&outbox, "two").unwrap();
        // The session's own answer before the welcome (a refused hello, say) is not held back.
        io.write_all(b"\x81\x05early").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(read_texts(&mut reader, 1).await, ["early"]);
        line.welcome(frame("welcome"));
        send(&outbox, "three").unwrap();
        io.flush().await.unwrap();
        assert_eq!(read_texts(&mut reader, 4).await, ["welcome", "one", "two", "three"]);
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_gets_every_frame_whole_and_in_order_once_it_reads() {
        let (line, mut io, mut reader) = connected(64).await;
        let outbox = welcomed(&line);
        let body = "가".repeat(700);
        let mut sent = 0;
        // Written straight in until the socket is full, then queued.
        while line.0.state().queue.len() < 2 {
            send(&outbox, &format!("{sent} {body}")).unwrap();
            sent += 1;
        }
        line.queue(frame("own"));
        send(&outbox, &format!("{sent} {body}")).unwrap();
        sent += 1;
        let (flushed, texts) = tokio::join!(io.flush(), read_texts(&mut reader, sent + 2));
        flushed.unwrap();
        let rooms: Vec<_> =
            texts.iter().filter(|t| t.contains(&body)).map(|t| t.split(' ').next().unwrap().parse::<usize>().unwrap()).collect();
        assert_eq!(rooms, (0..sent).collect::<Vec<_>>(), "every frame of the room, in order");
        let own = texts.iter().position(|t| t == "own").unwrap();
        assert!(own > 0 && own < texts.len() - 1, "the session's frame where it was queued, not first or last");
    }

    #[tokio::test]
    async fn a_reader_past_its_capacity_is_refused_and_a_kick_keeps_the_stream_whole() {
        let (line, mut io, mut reader) = connected(4).await;
        let outbox = welcomed(&line);
        io.flush().await.unwrap();
        read_texts(&mut reader, 1).await;
        let body = "x".repeat(3000);
        let mut sent = 0;
        let refused = loop {
            match send(&outbox, &format!("{sent} {body}")) {
                Ok(()) => sent += 1,
                Err(refused) => break refused,
            }
        };
        assert_eq!(refused, Refused::Full);
        assert_eq!(line.0.state().room_frames, 4);
        let started = line.0.state().head_sent > 0;
        outbox.close_with(Kick { code: CloseCode::TryAgainLater, reason: "too slow", frame: None });
        assert_eq!(send(&outbox, "after"), Err(Refused::Closed));
        assert!(line.kicked().now_or_never().is_some());
        assert_eq!(line.last_word().unwrap().code, CloseCode::TryAgainLater);
        // What the socket took, and the frame it had started, arrive whole; the rest is dropped.
        let kept = sent - 4 + usize::from(started);
        line.queue(frame("bye"));
        let (flushed, texts) = tokio::join!(io.flush(), read_texts(&mut reader, kept + 1));
        flushed.unwrap();
        assert_eq!(texts.last().unwrap(), "bye");
        assert!(texts[..kept].iter().enumerate().all(|(i, t)| t.starts_with(&format!("{i} "))));
    }

    #[tokio::test]
    async fn the_session_hears_when_the_room_lets_it_go() {
        let (line, _io, _reader) = connected(4).await;
        let first = line.outbox();
        drop(first);
        assert!(!line.let_go(), "a join that was retried is not a room letting go");
        let outbox = welcomed(&line);
        assert!(!line.let_go());
        drop(outbox);
        assert!(line.wanted().now_or_never().is_some());
        assert!(line.let_go());
        assert!(line.last_word().is_none(), "no kick: the room stopped");
    }

    #[tokio::test]
    async fn the_room_is_refused_once_the_session_is_closing() {
        let (line, _io, _reader) = connected(4).await;
        let outbox = welcomed(&line);
        line.close();
        assert_eq!(send(&outbox, "late"), Err(Refused::Closed));
    }
}
