// Minimal baseline on Node's `ws`: the engine's JSON frames (hello → welcome with the latest 50
// from memory, send → ack + message to every member), rooms in a Map, no persistence, no checks
// beyond parsing. A broadcast is serialized and UTF-8 encoded once into a Buffer, and that same
// Buffer is handed to every member's socket (ws adds only its 2-4 byte header per socket).
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");
const { authorId, Room, listen } = require("./common");

const rooms = new Map(); // id -> { room, members: Set<ws> }
const server = http.createServer((req, res) => {
  res.statusCode = req.url === "/healthz" ? 200 : 404;
  res.end();
});
const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024, perMessageDeflate: false });

server.on("upgrade", (req, socket, head) => {
  const match = /^\/ws\/([A-Za-z0-9._-]{1,128})$/.exec(req.url);
  if (!match) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => session(ws, match[1]));
});

function session(ws, roomId) {
  let member = null;
  let entry = null;
  ws.on("message", (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return ws.send('{"type":"error","code":"bad_frame","message":"not JSON"}');
    }
    if (frame.type === "hello" && !member) {
      member = { authorId: authorId(frame.anonymousId), nickname: frame.nickname, avatar: frame.avatar };
      entry = rooms.get(roomId);
      if (!entry) rooms.set(roomId, (entry = { room: new Room(roomId), members: new Set() }));
      entry.members.add(ws);
      ws.send(JSON.stringify({ type: "welcome", you: member, history: entry.room.history, online: entry.members.size }));
    } else if (frame.type === "send" && member) {
      const message = entry.room.append(member, frame.clientId, frame.content, ++entry.room.seq);
      ws.send(JSON.stringify({ type: "ack", clientId: frame.clientId, seq: message.seq }));
      const bytes = Buffer.from(JSON.stringify({ type: "message", message }));
      for (const peer of entry.members) peer.send(bytes, { binary: false });
    }
  });
  // An empty room keeps its history (it is the only copy), as the engine keeps its store.
  ws.on("close", () => entry && entry.members.delete(ws));
}

listen(server);
