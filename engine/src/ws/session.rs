//! One WebSocket connection: waits for `hello`, joins the room, then relays the reader's frames to
//! the room actor and the room's frames to the reader. Validation that needs no room state
//! happens here, so bad input never reaches the actor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame as WsFrame};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::app::App;
use crate::chat::{AuthorId, Profile, RoomId};
use crate::client_ip::ClientKey;
use crate::metrics::{SendOutcome, METRICS};
use crate::protocol::inbound::{self, Inbound, Refusal};
use crate::protocol::{self, CloseCode, ErrorCode, Frame};
use crate::rate::TokenBucket;
use crate::room::{Arrival, Command, ConnId, JoinError, Joined, Kick, Line, LineIo};
use crate::spam::Newcomer;
use crate::write_deadline::WriteDeadline;

type Socket = WebSocketStream<WriteDeadline<LineIo>>;

/// PROTOCOL.md: `hello` within 10 s of the upgrade, or close 1008.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Server pings keep NATs open and find readers whose network vanished without a close.
const PING_EVERY: Duration = Duration::from_secs(30);
const ALREADY_JOINED: &str = "already joined; hello is sent once per connection";
const WATCH_NEEDS_GRANT: &str = "watching needs the owner's moderator grant";
const WATCHING: &str = "this connection only watches";
/// How long a close handshake may take before the connection is simply dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Input read and thrown away after our close frame, so the kernel never answers unread input
/// with a reset (which can destroy the close frame before the client reads it). Enough for the
/// rest of an oversized frame and a few more; a client sending more is cut off.
const CLOSE_DRAIN_BYTES: usize = 1024 * 1024;

enum Exit {
    /// The peer went away or the socket failed; nothing left to say.
    Gone,
    /// The peer sent a close frame: send the reply the library queued (1002 for a bad code), then end.
    PeerClosed,
    /// Close with this code and reason, after an optional last frame.
    Close(CloseCode, &'static str, Option<Frame>),
}

pub(super) struct Session {
    app: Arc<App>,
    room: RoomId,
    conn: ConnId,
    /// The client address the per-address limits count this connection under.
    client: ClientKey,
    ws: Socket,
    /// The connection's outbox, which the room writes to as well.
    line: Line,
    /// Flood guard over every frame the client sends, far above the send rate limit.
    frames: TokenBucket,
    last_heard: Instant,
    /// The reader, once its hello is accepted.
    author: Option<AuthorId>,
    /// What the link rule knows of the reader in this room.
    newcomer: Newcomer,
}

impl Session {
    pub(super) fn new(app: Arc<App>, room: RoomId, ws: Socket, line: Line, client: ClientKey) -> Session {
        let conn = app.next_conn_id();
        let flood_rate = (app.config.send_rate * 4.0).max(20.0);
        let flood_burst = app.config.send_burst.saturating_mul(4).max(100);
        Session {
            app,
            room,
            conn,
            client,
            ws,
            line,
            frames: TokenBucket::new(flood_rate, flood_burst),
            last_heard: Instant::now(),
            author: None,
            newcomer: Newcomer::new(),
        }
    }

    /// The connection from its first frame to its close. Every phase but the relay loop is boxed:
    /// they are short, and their state would otherwise be part of every idle connection's future.
    pub(super) async fn run(&mut self) {
        METRICS.connections.inc();
        tracing::debug!(room = %self.room, conn = self.conn, "connected");
        let hello = match Box::pin(self.await_hello()).await {
            Ok(joined) => Some(joined),
            Err(exit) => {
                Box::pin(self.end(exit)).await;
                None
            }
        };
        // Bound here rather than in the match above: a match keeps its whole scrutinee in the
        // future's state for as long as an arm awaits.
        let Some(mut joined) = hello else { return };
        let exit = self.relay(&mut joined).await;
        let _ = Box::pin(joined.room.send(Command::Leave { conn: self.conn })).await;
        Box::pin(self.end(exit)).await;
    }

    /// The close, as the connection ended.
    async fn end(&mut self, exit: Exit) {
        // Nothing of the room's may follow the close.
        self.line.close();
        match exit {
            Exit::Close(code, reason, frame) => self.close(code, reason, frame).await,
            Exit::PeerClosed => {
                let _ = tokio::time::timeout(CLOSE_WAIT, self.ws.flush()).await;
            }
            Exit::Gone => {}
        }
        tracing::debug!(room = %self.room, conn = self.conn, "disconnected");
        METRICS.connections.dec();
    }

    async fn await_hello(&mut self) -> Result<Joined, Exit> {
        let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
        let mut draining = self.app.draining();
        loop {
            let text = tokio::select! {
                incoming = self.ws.next() => self.text_of(incoming).await?,
                _ = sleep_until(deadline) => return Err(Exit::Close(CloseCode::Policy, "no hello within 10 s", None)),
                _ = drain_started(&mut draining) => return Err(self.reconnect_exit()),
            };
            let Some(text) = text else { continue };
            match inbound::check(&text) {
                Ok(Inbound::Hello { watch: Some(grant), .. }) if !crate::http::session::grant_valid(&self.app, &grant) => {
                    self.error(ErrorCode::Forbidden, WATCH_NEEDS_GRANT, None).await?
                }
                Ok(Inbound::Hello { anonymous_id, nickname, avatar, last_seq, watch }) => {
                    let profile = Profile { author_id: AuthorId::derive(&anonymous_id), nickname, avatar };
                    self.author = Some(profile.author_id.clone());
                    return self.hello(Arrival { profile, last_seq, watching: watch.is_some() }).await;
                }
                Ok(_) => self.error(ErrorCode::HelloRequired, "send hello first", None).await?,
                Err(refusal) if protocol::frame_type(&text).is_some_and(|t| t != "hello") => {
                    self.error(ErrorCode::HelloRequired, "send hello first", refusal.client_id.as_deref()).await?
                }
                // A refused hello may be sent again.
                Err(refusal) => self.refuse(refusal).await?,
            }
        }
    }

    /// Joins the room with a checked hello.
    async fn hello(&mut self, arrival: Arrival) -> Result<Joined, Exit> {
        match self.app.rooms.join(&self.room, self.conn, arrival, self.client, &self.line).await {
            Ok((joined, welcome)) => {
                tracing::debug!(room = %self.room, conn = self.conn, "joined");
                self.line.welcome(welcome);
                if let Err(exit) = self.flush().await {
                    // A member from now on: a reader who never takes its welcome must still leave.
                    let _ = joined.room.send(Command::Leave { conn: self.conn }).await;
                    return Err(exit);
                }
                Ok(joined)
            }
            Err(JoinError::Closed) => Err(self.reconnect_exit()),
            // Banned or unavailable: the error frame, then the close its code calls for.
            Err(refused) => {
                let code = ErrorCode::from(refused);
                METRICS.error(code);
                let frame = protocol::error(code, code.default_message(), None);
                Err(Exit::Close(code.close_code(), code.as_str(), Some(frame)))
            }
        }
    }

    async fn relay(&mut self, joined: &mut Joined) -> Exit {
        let line = self.line.clone();
        let mut draining = self.app.draining();
        let mut close_at: Option<tokio::time::Instant> = None;
        let mut next_ping = tokio::time::Instant::now() + PING_EVERY;
        loop {
            // One timer for both the keepalive ping and the drain deadline: every timer is
            // memory held by every idle connection.
            let tick = close_at.map_or(next_ping, |c| c.min(next_ping));
            tokio::select! {
                // Boxed: it may write an error frame, and that write's state (buffer, deadline
                // timer) should not be part of every idle connection's future.
                incoming = self.ws.next() => match Box::pin(self.text_of(incoming)).await {
                    Ok(Some(text)) => if let Err(exit) = Box::pin(self.on_reader_frame(&text, joined)).await { return exit },
                    Ok(None) => {}
                    Err(exit) => return exit,
                },
                () = line.wanted() => {
                    if let Some(kick) = line.last_word() {
                        return kicked(Some(kick));
                    }
                    tokio::select! {
                        result = Box::pin(self.flush()) => if let Err(exit) = result { return exit },
                        // A kick cuts a write short: a reader too slow to take it is one.
                        () = line.kicked() => return kicked(line.last_word()),
                    }
                    // The room stopped: what it queued is written, then the close.
                    if line.let_go() {
                        return kicked(None);
                    }
                },
                _ = drain_started(&mut draining), if close_at.is_none() => {
                    // Frames already queued go first (the hint is queued behind them), so the
                    // reader has every message committed before the drain and its resume starts
                    // after them, not before.
                    let after_ms = self.app.reconnect_after_ms();
                    if let Err(exit) = Box::pin(self.write(protocol::reconnect(after_ms))).await { return exit }
                    // Readers that ignore the hint are closed a little after it, so the pod drains.
                    close_at = Some(tokio::time::Instant::now() + Duration::from_millis(after_ms) + CLOSE_WAIT);
                }
                _ = sleep_until(tick) => {
                    if close_at.is_some_and(|c| c <= tokio::time::Instant::now()) {
                        return Exit::Close(CloseCode::GoingAway, "server restarting; reconnect", None);
                    }
                    if next_ping <= tokio::time::Instant::now() {
                        if self.last_heard.elapsed() > PING_EVERY * 3 {
                            return Exit::Gone;
                        }
                        if Box::pin(self.ws.send(WsMessage::Ping(Default::default()))).await.is_err() {
                            return Exit::Gone;
                        }
                        next_ping = tokio::time::Instant::now() + PING_EVERY;
                    }
                }
            }
        }
    }

    /// Handles one text frame from a joined reader.
    async fn on_reader_frame(&mut self, text: &str, joined: &Joined) -> Result<(), Exit> {
        let conn = self.conn;
        let cmd = match inbound::check(text) {
            Ok(Inbound::Hello { .. }) => return self.error(ErrorCode::BadFrame, ALREADY_JOINED, None).await,
            Err(_) if protocol::frame_type(text).as_deref() == Some("hello") => {
                return self.error(ErrorCode::BadFrame, ALREADY_JOINED, None).await
            }
            Err(refusal) => {
                if refusal.code == ErrorCode::InvalidContent {
                    METRICS.send(SendOutcome::Invalid);
                }
                return self.refuse(refusal).await;
            }
            // The owner's live view only reads; it acts through the moderation routes.
            Ok(Inbound::Send { client_id, .. }) if joined.watching => {
                return self.error(ErrorCode::Forbidden, WATCHING, Some(&client_id)).await
            }
            Ok(Inbound::React { seq, .. } | Inbound::Edit { seq, .. }) if joined.watching => {
                METRICS.error(ErrorCode::Forbidden);
                return self.write(protocol::report_error(ErrorCode::Forbidden, WATCHING, seq, None)).await;
            }
            Ok(_) if joined.watching => return self.error(ErrorCode::Forbidden, WATCHING, None).await,
            Ok(Inbound::Send { client_id, content, reply_to }) => {
                let received = Instant::now();
                if let Some(author) = &self.author {
                    if let Err(reason) = self.app.spam.check(&self.room, author, &mut self.newcomer, &content).await {
                        METRICS.error(ErrorCode::Spam);
                        return self.write(protocol::spam(reason.as_str(), reason.message(), &client_id)).await;
                    }
                }
                Command::Send { conn, client_id, content, reply_to, received }
            }
            Ok(Inbound::React { seq, emoji, on }) => Command::React { conn, seq, emoji, on },
            // An edit puts new content in front of readers: the same spam rules as a send.
            Ok(Inbound::Edit { seq, content }) => {
                if let Some(author) = &self.author {
                    if let Err(reason) = self.app.spam.check(&self.room, author, &mut self.newcomer, &content).await {
                        METRICS.error(ErrorCode::Spam);
                        return self.write(protocol::edit_spam(reason.as_str(), reason.message(), seq)).await;
                    }
                }
                Command::Edit { conn, seq, content }
            }
            Ok(Inbound::Delete { seq }) => Command::Delete { conn, seq },
            Ok(Inbound::Report { seq }) => Command::Report { conn, seq },
            Ok(Inbound::Typing) => Command::Typing { conn },
            Ok(Inbound::Rename { nickname, avatar }) => Command::Rename { conn, nickname, avatar },
        };
        joined.room.send(cmd).await.map_err(|_| Exit::Close(CloseCode::Internal, "room stopped", None))
    }

    /// Reads the next data frame as text. `Ok(None)`: a control frame or a frame answered with an
    /// error; `Err`: the connection ends.
    async fn text_of(&mut self, incoming: Option<Result<WsMessage, WsError>>) -> Result<Option<Utf8Bytes>, Exit> {
        let message = match incoming {
            None => return Err(Exit::Gone),
            Some(Ok(message)) => message,
            Some(Err(err)) => return Err(read_failed(err)),
        };
        self.last_heard = Instant::now();
        if matches!(message, WsMessage::Text(_) | WsMessage::Binary(_)) && !self.frames.take(Instant::now()) {
            tracing::info!(room = %self.room, conn = self.conn, "flood closed");
            METRICS.flood();
            return Err(Exit::Close(CloseCode::Policy, "too many frames", None));
        }
        match message {
            WsMessage::Text(text) => Ok(Some(text)),
            WsMessage::Binary(_) => {
                self.error(ErrorCode::BadFrame, "frames are JSON text", None).await?;
                Ok(None)
            }
            WsMessage::Close(_) => Err(Exit::PeerClosed),
            _ => Ok(None),
        }
    }

    async fn refuse(&mut self, refusal: Refusal) -> Result<(), Exit> {
        if let Some(seq) = refusal.seq {
            METRICS.error(refusal.code);
            return self.write(protocol::report_error(refusal.code, &refusal.message, seq, None)).await;
        }
        self.error(refusal.code, &refusal.message, refusal.client_id.as_deref()).await
    }

    async fn error(&mut self, code: ErrorCode, message: &str, client_id: Option<&str>) -> Result<(), Exit> {
        METRICS.error(code);
        self.write(protocol::error(code, message, client_id)).await
    }

    /// Writes one frame of the session's own.
    async fn write(&mut self, frame: Frame) -> Result<(), Exit> {
        self.line.queue(frame);
        self.flush().await
    }

    /// Writes everything queued on the connection: the session's own frames and the room's
    /// behind them (`room/outbox.rs`), and what tungstenite itself queued (a pong). Text frames
    /// go around tungstenite's write buffer on purpose: that buffer keeps its largest size for
    /// the life of the connection, and the outbox shares each frame's bytes instead of copying
    /// them. The whole write has a deadline: a reader that does not take a welcome in time is cut
    /// off, and so is one whose queue has not once been empty for that long (frames the room adds
    /// while it waits are part of the write).
    async fn flush(&mut self) -> Result<(), Exit> {
        match tokio::time::timeout(self.app.config.write_timeout, self.ws.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Exit::Gone),
            Err(_) => {
                tracing::info!(room = %self.room, conn = self.conn, "reader did not take its frames in time");
                METRICS.write_timeouts.inc();
                Err(Exit::Gone)
            }
        }
    }

    fn reconnect_exit(&self) -> Exit {
        Exit::Close(CloseCode::GoingAway, "server restarting; reconnect", Some(protocol::reconnect(self.app.reconnect_after_ms())))
    }

    /// Sends the close frame, ends our side of the TCP connection and reads what the client
    /// still sends until it closes too. The frame is written to the socket directly: after a
    /// protocol error the library's reader is out of step with the input and may refuse to write.
    /// Reading until the client's end (rather than until its close frame) keeps every byte it
    /// sent from sitting unread when the socket is dropped, which would make the kernel reset the
    /// connection and could destroy the close frame before the client reads it.
    async fn close(&mut self, code: CloseCode, reason: &'static str, frame: Option<Frame>) {
        let close = async {
            if let Some(frame) = frame {
                self.write(frame).await.ok()?;
            }
            let mut buf = Vec::with_capacity(4 + reason.len());
            WsFrame::close(Some(CloseFrame { code: WsCloseCode::from(code.code()), reason: reason.into() })).format(&mut buf).ok()?;
            let socket = self.ws.get_mut();
            socket.write_all(&buf).await.ok()?;
            socket.shutdown().await.ok()?;
            let mut scratch = [0u8; 4096];
            let mut drained = 0;
            while drained < CLOSE_DRAIN_BYTES {
                match socket.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
            Some(())
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, close).await;
    }
}

/// The close a read error calls for (RFC 6455 section 7.4.1): 1009 for a frame over the limit,
/// 1007 for text that is not UTF-8, 1002 for any other protocol violation (unmasked frame,
/// reserved bits, unknown opcode, bad close code...). A dropped connection has nobody to tell.
fn read_failed(err: WsError) -> Exit {
    match err {
        WsError::Capacity(_) => Exit::Close(CloseCode::TooBig, "frame larger than 16 KiB", None),
        WsError::Utf8(_) => Exit::Close(CloseCode::InvalidData, "text frame is not UTF-8", None),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Exit::Gone,
        WsError::Protocol(_) | WsError::AttackAttempt => Exit::Close(CloseCode::ProtocolError, "protocol error", None),
        _ => Exit::Gone,
    }
}

async fn drain_started(draining: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = draining.wait_for(|d| *d).await;
}

/// The room let go of the member: with a kick, or because it stopped.
fn kicked(kick: Option<Box<Kick>>) -> Exit {
    match kick {
        Some(kick) => Exit::Close(kick.code, kick.reason, kick.frame),
        None => Exit::Close(CloseCode::Internal, "room stopped", None),
    }
}
